"""One client connection as the hub sees it: who it is, what it may do, what to send it.

The hub never writes to a socket. It appends messages to a session's outbox and marks
the session dirty; the I/O shell drains the outboxes after each unit of work
(`Hub.flush`), so one frame's replies and pushes leave as one frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hivectl.core.permissions import Permissions, ProviderPatterns
from hivectl.core.tokens import Claims
from server.ratelimit import RateLimiter

Deliver = Callable[[bytes], None]


class Session:
    __slots__ = (
        "authenticated",
        "claims",
        "closing",
        "conn_id",
        "deliver",
        "dirty",
        "is_provider",
        "limiter",
        "outbox",
        "permissions",
        "providers",
        "pubsub",
        "queue_high_water",
        "remote",
        "subscriptions",
    )

    def __init__(
        self, conn_id: str, deliver: Deliver, dirty: dict[Session, None], remote: str = ""
    ) -> None:
        self.conn_id = conn_id
        self.deliver = deliver
        self.dirty = dirty
        """The hub's set of sessions with something to send (shared by all sessions)."""
        self.remote = remote
        self.authenticated = False
        self.claims: Claims | None = None
        self.permissions = Permissions.nothing()
        self.providers = ProviderPatterns.empty()
        self.is_provider = False
        self.outbox: list[dict[str, Any]] = []
        self.pubsub: dict[tuple[str, str, str], None] = {}
        """Pub/sub subscriptions as (realm, event, id pattern), a dict used as a set: an empty
        one takes 64 bytes, an empty set 216, and most sessions have none."""
        self.subscriptions: dict[str, Any] = {}
        """Object and realm subscriptions by the client's subscription id."""
        self.queue_high_water = 0
        self.limiter: RateLimiter | None = None
        """Message rate limit; None for HTTP requests, which are not connections."""
        self.closing: tuple[int, str] | None = None
        """(close code, reason) once the connection is condemned: its frames are ignored
        from then on, and the I/O shell closes it after what is already queued."""

    def push(self, message: dict[str, Any]) -> None:
        if not self.outbox:
            self.dirty[self] = None
        self.outbox.append(message)

    @property
    def sub(self) -> str | None:
        return self.claims.sub if self.claims else None

    def __repr__(self) -> str:
        return f"Session({self.conn_id!r}, sub={self.sub!r})"
