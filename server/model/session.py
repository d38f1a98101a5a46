"""One client connection as the hub sees it: who it is, what it may do, what to send it.

The hub never writes to a socket. It appends messages to a session's outbox and marks
the session ready (`Outbound`); the I/O shell takes the ready sessions' frames after each
unit of work (`Hub.outgoing`), so one frame's replies and pushes leave as one frame. A
burst larger than a frame is encoded as it grows (`Session.spill`), so a hundred thousand
pushes wait as bytes, not as dictionaries, until the shell takes them.

The shell may *hold* a session's output (`Outbound.hold`) while a reply in it waits for
storage or the log: the session then stays out of the ready set, with whatever is pushed
behind the reply, until the shell lets it go (`Outbound.release`).

Output that may be large and can wait (a subscription's initial state) is not put in the
outbox whole: it is a *stream*, an iterator of messages that the hub draws from only while
the shell says the connection keeps up (`Hub.pump`), so the server never holds a
copy of a whole realm per subscriber and a reader gets it at the pace it reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from hivectl.core.permissions import Permissions, ProviderPatterns
from hivectl.core.tokens import Claims
from hivectl.core.wire import encode
from server.model.ratelimit import RateLimiter

FRAME_MESSAGES = 500
"""Most messages in one outgoing frame. A burst the server makes (a gateway for 50,000
objects leaving) goes out as many frames a client can take, not as one frame of megabytes
that a client library refuses (`websockets` stops at 1 MiB by default)."""


class Outbound:
    """What the sessions of one hub have ready for the shell (one object shared by all)."""

    __slots__ = ("messages", "ready")

    def __init__(self) -> None:
        self.ready: dict[Session, None] = {}
        """Sessions with output for the shell to take (a dict used as a set). A session
        enters when its first message is pushed; one the shell holds has output but is not
        here, and messages pushed behind that output wait with it."""
        self.messages = 0
        """Messages encoded for sending since the hub started (``messagesOut``)."""

    def hold(self, session: Session) -> None:
        """Keep `session`'s queued output back (others still go) until `release`."""
        self.ready.pop(session, None)

    def release(self, session: Session) -> bool:
        """Let `session`'s output go with the next take; whether it has any."""
        if session.outbox or session.frames:
            self.ready[session] = None
            return True
        return False


class Session:
    __slots__ = (
        "authenticated",
        "claims",
        "closing",
        "conn_id",
        "frames",
        "handle",
        "is_provider",
        "limiter",
        "messages_in",
        "messages_out",
        "opened_at",
        "outbound",
        "outbox",
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
        outbound: Outbound | None,
        remote: str = "",
        opened_at: float = 0.0,
    ) -> None:
        self.conn_id = conn_id
        self.outbound = outbound
        """The hub's sessions ready to send; None for an HTTP request, whose replies the hub
        returns itself (`Hub.handle_http`) and never encodes."""
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
        self.frames: list[bytes] | None = None
        """Full frames encoded from the outbox, oldest first, for the shell to take."""
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
        """The shell's own object for this connection (the hub never looks at it)."""

    def push(self, message: dict[str, Any]) -> None:
        """Queue `message` for the shell; a full frame's worth is encoded at once."""
        outbox = self.outbox
        outbound = self.outbound
        if outbound is None:
            outbox.append(message)
            return
        if not outbox and not self.frames:
            outbound.ready[self] = None
        outbox.append(message)
        if len(outbox) >= FRAME_MESSAGES:
            self.spill()

    def spill(self) -> None:
        """Encode the outbox as one frame (at most `FRAME_MESSAGES`) behind those before it."""
        messages = self.outbox
        if not messages:
            return
        assert self.outbound is not None, "an HTTP request's replies are never encoded"
        self.outbox = []
        self.messages_out += len(messages)
        self.outbound.messages += len(messages)
        frame = encode(messages)
        if self.frames is None:
            self.frames = [frame]
        else:
            self.frames.append(frame)

    def take_frames(self) -> list[bytes]:
        """Everything queued, as frames, oldest first; the session has nothing left."""
        self.spill()
        frames = self.frames
        self.frames = None
        return frames or []

    @property
    def sub(self) -> str | None:
        return self.claims.sub if self.claims else None

    def __repr__(self) -> str:
        return f"Session({self.conn_id!r}, sub={self.sub!r})"
