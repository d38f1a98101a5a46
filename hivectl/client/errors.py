"""Exceptions of the client, shaped after the protocol's error replies."""

from __future__ import annotations


class HivekitError(Exception):
    """The server answered ``res:"err"``: ``code`` is its ``erc``, ``text`` its ``err``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{text} ({code})")
        self.code = code
        self.text = text


class AuthenticationError(HivekitError):
    """The server refused the token."""


class ConnectionLost(HivekitError):
    """The socket is gone; the request may or may not have been applied."""

    def __init__(self, text: str) -> None:
        super().__init__(0, text)
