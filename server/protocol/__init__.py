"""The sans-I/O protocol: the hub, its request handlers, the log seam and deferred replies.

Messages in, replies and changes out, time passed in; no socket, no event loop, no store
of its own (it speaks to one through `server.stores.storage`'s interface).
"""
