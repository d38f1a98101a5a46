"""Pure state and events, the bottom layer: the presence engine, records, the changes a log
carries, sessions, the subscription index and pub/sub routes.

Nothing here does I/O or reads a clock (time is passed in); `ruff.toml` keeps it so.
"""
