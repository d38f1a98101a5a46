"""The I/O shell on top: transport, HTTP, the app that owns the event loop, the runner.

Everything that awaits, binds a socket or reads the clock for the layers below lives here.
"""
