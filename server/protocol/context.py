"""What each kind of request handler may see and do of the hub, written down as protocols.

The handlers (`server.protocol.handlers`) are dispatched by the hub and need some of its
state and a few of its operations; they import these descriptions rather than the hub, so
the hub can import them without a circle, and what a handler can reach is listed in one
place. Each handler module gets only what its requests use: a realm handler cannot reach
the sessions, an object handler not even the realms (its checks found the realm for it,
`server.protocol.checks`). The hub satisfies every one as it is (structural typing, which
mypy checks where the hub's dispatch table pairs a handler with the hub), no adapter in
between. State is read-only here: handlers change the hub by committing changes, or
through the objects they are handed (the routers and indexes own their own state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hivectl.core.settings import Settings
from server.model.changes import Change
from server.model.presence import PresenceEngine
from server.model.pubsub_routes import PubSubRouter
from server.model.records import RealmRecord
from server.model.revocations import Revocations
from server.model.session import Session
from server.model.subscription_index import ObjectSubscription, SubscriptionIndex
from server.protocol.deferred import ClusterView, Peers
from server.protocol.log_seam import Log


class Commits(Protocol):
    def commit(self, change: Change) -> None:
        """Hand a decided change to the log; state changes only when it is applied."""


class RealmsContext(Commits, Protocol):
    """`server.protocol.handlers.realms`: lists the realms, writes them."""

    @property
    def realms(self) -> Mapping[str, RealmRecord]: ...


class ObjectsContext(Commits, Protocol):
    """`server.protocol.handlers.objects`: writes objects, reads their presence."""

    def status(self, realm_id: str, object_id: str) -> str:
        """An object's ``cst`` from presence."""


class PubSubContext(Protocol):
    """`server.protocol.handlers.pubsub`: this node's pub/sub routes, and the log, which
    carries a publication to every node."""

    @property
    def settings(self) -> Settings: ...

    @property
    def pubsub(self) -> PubSubRouter: ...

    @property
    def log(self) -> Log: ...


class SubscriptionsContext(Protocol):
    """`server.protocol.handlers.subscriptions`: the subscription index, and the hub's way
    of sending a subscription's held set after its reply."""

    @property
    def settings(self) -> Settings: ...

    @property
    def subscriptions(self) -> SubscriptionIndex: ...

    def send_full(self, subscription: ObjectSubscription, at: float) -> None:
        """Stream `subscription`'s held set once `at` has come."""


class SystemContext(Protocol):
    """`server.protocol.handlers.system`: presence and this node's figures."""

    @property
    def engine(self) -> PresenceEngine: ...

    def stats(self, now: float) -> dict[str, Any]:
        """This node's figures for ``sys``/``sta``."""


class AdminContext(Commits, Protocol):
    """`server.protocol.handlers.admin`: every connection of this node, the other nodes,
    and the revocations."""

    @property
    def settings(self) -> Settings: ...

    @property
    def node_id(self) -> str: ...

    @property
    def sessions(self) -> Mapping[str, Session]: ...

    @property
    def revocations(self) -> Revocations: ...

    @property
    def peers(self) -> Peers | None: ...

    @property
    def cluster(self) -> ClusterView | None: ...

    @property
    def queued(self) -> Callable[[Session], int]: ...

    def kick(self, session: Session, reason: str, text: str, now: float) -> None:
        """Close `session` for an operator; its presence ends now with `reason`."""

    def forget_revocations(self, now: float) -> None:
        """Drop the revocations whose tokens have all expired."""
