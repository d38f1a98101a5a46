"""Request handlers, one module per kind of message, dispatched by `server.protocol.hub`.

A handler is called once its route's checks passed (`server.protocol.checks`), with what
they found; it only acts. It refuses what the checks do not cover (the rest of its body,
its quotas) by raising `WireError`, and writes by committing a `server.model.changes`
change, which the hub applies in log order. Each module reaches the hub through its own
protocol (`server.protocol.context`). The rules every handler keeps are in
`server.protocol.hub`; those of one kind of message, in its module.
"""
