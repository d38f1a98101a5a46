"""What a request handler may see and do of the hub, written down as a protocol.

The handlers (`server.protocol.handlers`) are dispatched by the hub and need some of its
state and a few of its operations; they import this description rather than the hub, so
the hub can import them without a circle, and what a handler can reach is listed in one
place. The hub satisfies it as it is (structural typing), no adapter in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from hivectl.core.settings import Settings
from hivectl.core.wire import Message
from server.model.changes import Change
from server.model.presence import PresenceEngine
from server.model.pubsub_routes import PubSubRouter
from server.model.records import RealmRecord
from server.model.revocations import Revocations
from server.model.session import Session
from server.model.subscription_index import SubscriptionIndex
from server.protocol.deferred import ClusterView, Peers
from server.protocol.log_seam import Log

Schedule = Callable[[float, Callable[[], None]], None]
"""The shell's timer: run the callback after a delay (seconds), then flush."""


class HubContext(Protocol):
    """The hub as its handlers see it: state to read, changes to commit, output to make."""

    settings: Settings
    node_id: str
    log: Log
    engine: PresenceEngine
    realms: dict[str, RealmRecord]
    sessions: dict[str, Session]
    pubsub: PubSubRouter
    subscriptions: SubscriptionIndex
    revocations: Revocations
    peers: Peers | None
    cluster: ClusterView | None
    schedule: Schedule
    queued: Callable[[Session], int]

    def commit(self, change: Change) -> None:
        """Hand a decided change to the log; state changes only when it is applied."""

    def status(self, realm_id: str, object_id: str) -> str:
        """An object's ``cst`` from presence."""

    def stream(self, session: Session, messages: Iterator[Message]) -> None:
        """Send `messages` as `session`'s connection takes them."""

    def stats(self, now: float) -> dict[str, Any]:
        """This node's figures for ``sys``/``sta``."""

    def kick(self, session: Session, reason: str, text: str, now: float) -> None:
        """Close `session` for an operator; its presence ends now with `reason`."""

    def forget_revocations(self, now: float) -> None:
        """Drop the revocations whose tokens have all expired."""
