"""One client connection as the hub sees it: who it is, what it may do, what to send it.

The hub never writes to a socket. It appends messages to a session's outbox and marks
the session dirty; the I/O shell drains the outboxes after each unit of work
(`Hub.flush`), so one frame's replies and pushes leave as one frame.

Output that may be large and can wait (a subscription's initial state) is not put in the
outbox whole: it is a *stream*, an iterator of messages that the hub draws from only while
the shell says the connection keeps up (`Hub.pump`), so the server never holds a
copy of a whole realm per subscriber and a reader gets it at the pace it reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from hivectl.core.permissions import Permissions, ProviderPatterns
from hivectl.core.tokens import Claims
from server.model.ratelimit import RateLimiter

Deliver = Callable[[bytes], None]

FRAME_MESSAGES = 500
"""Most messages in one outgoing frame. A burst the server makes (a gateway for 50,000
objects leaving) goes out as many frames a client can take, not as one frame of megabytes
that a client library refuses (`websockets` stops at 1 MiB by default)."""


class Session:
    __slots__ = (
        "authenticated",
        "claims",
        "closing",
        "conn_id",
        "deliver",
        "dirty",
        "handle",
        "is_provider",
        "limiter",
        "messages_in",
        "messages_out",
        "opened_at",
        "outbox",
        "overflow",
        "permissions",
        "providers",
        "pubsub",
        "queue_high_water",
        "remote",
        "streams",
        "subscriptions",
    )

    def __init__(
        self,
        conn_id: str,
        deliver: Deliver,
        dirty: dict[Session, None],
        remote: str = "",
        opened_at: float = 0.0,
    ) -> None:
        self.conn_id = conn_id
        self.deliver = deliver
        self.dirty = dirty
        """The hub's set of sessions with something to send (shared by all sessions)."""
        self.remote = remote
        self.opened_at = opened_at
        self.messages_in = 0
        self.messages_out = 0
        """Messages handled and sent, for the operator's connection list."""
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
        self.streams: deque[Iterator[dict[str, Any]]] | None = None
        """Output produced as the connection drains, oldest first; None when there is none."""
        self.handle: Any = None
        """The shell's own object for this connection (what `Hub.pump` hands back to it)."""
        self.overflow: Callable[[Session], None] | None = None
        """Sends a full outbox as a frame at once (the hub's `Hub.flush_session`)."""

    def push(self, message: dict[str, Any]) -> None:
        """Queue `message` for the next flush; a full frame's worth goes out at once, unless
        the session's output is held, so a burst of a hundred thousand pushes is held as
        bytes in the transport, not as dictionaries."""
        outbox = self.outbox
        if not outbox:
            self.dirty[self] = None
        outbox.append(message)
        if len(outbox) >= FRAME_MESSAGES and self.overflow is not None and self in self.dirty:
            self.overflow(self)

    @property
    def sub(self) -> str | None:
        return self.claims.sub if self.claims else None

    def __repr__(self) -> str:
        return f"Session({self.conn_id!r}, sub={self.sub!r})"
