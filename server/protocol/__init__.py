"""The sans-I/O protocol: the hub, its request handlers, the log seam and deferred replies.

Messages in, replies and changes out, time passed in; no socket, no event loop, no store:
what storage must be told leaves as values (`server.stores.writes`) the shell drains.
"""
