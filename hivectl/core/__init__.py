"""The pure, synchronous core shared by the server, the client and the CLI.

Nothing here opens a socket, reads a clock or imports anything else of ours.
"""
