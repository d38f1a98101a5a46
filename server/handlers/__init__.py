"""Request handlers, one module per kind of message, dispatched by `server.hub`.

A handler refuses by raising `WireError` and writes by committing a `server.changes`
change, which the hub applies in log order. The rules every handler keeps are in
`server.hub`; those of one kind of message, in its module.
"""
