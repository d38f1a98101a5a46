"""Durable stores beside the protocol: the interface the hub needs, memory and SQLite."""
