"""Request handlers, one module per kind of message, dispatched by `server.protocol.hub`.

A handler refuses by raising `WireError` and writes by committing a `server.model.changes`
change, which the hub applies in log order. The rules every handler keeps are in
`server.protocol.hub`; those of one kind of message, in its module.
"""
