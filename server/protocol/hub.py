"""The hub: realms, objects, presence and pub/sub for every session of one server.

The hub is sans-I/O, in the style of `websockets`' protocol objects: pushed in, pulled out.
The I/O shell hands it authentication frames, message frames, closes and the passing of
time, each with the current time, and the changes a cluster log applies; it never calls
the shell back. The shell pulls what the hub has to say: the frames ready for each
connection (`Hub.outgoing`, `Hub.take_frames`), when the hub next needs the time
(`Hub.next_deadline`, answered by `Hub.tick`), the connections to close
(`Hub.take_condemned`), what a request waits for (`Hub.take_pending`, `Hub.take_tickets`)
and what to store (`Hub.take_writes`). Nothing here awaits, so the whole state changes
atomically between two socket events.

Handlers decide, the log applies: a handler is handed what its route's checks found
(`server.protocol.checks`) and commits a `server.model.changes` change; only `Hub.apply`
changes state, in log order. Appending gives a ticket (`server.protocol.log_seam`). On one
node the log applies at once and the ticket is settled. In a cluster the change first
travels the JetStream log (`server.cluster.jetstream_log`): the handler's reply and the
rest of its frame wait (`Pending`, with the request's own tickets) until the change comes
back and is applied here; if the log refused it, the hub decides the request again
(`Hub.decide_again`).

The handlers live in `server.protocol.handlers`, one module per kind of message (realms, objects,
pub/sub, subscriptions, system); this module keeps what all of them rely on: the state,
the dispatch table, the log seam (`commit` and `apply`) and the sessions, from their
Bearer frames to their outboxes.

Rules the handlers keep (protocol.md):

* Messages of one frame are handled in array order; each request with a ``cid``
  gets exactly one reply; ``set`` gets none, and a failing message without ``cid``
  gets an error without ``cid``.
* Checks run in this order: rate limit (429, `server.model.ratelimit`), envelope (400),
  authenticated (401), realm exists (404 ``unknown realm <id>``), permission (403),
  object exists (404), conflict (409). A failure changes nothing. The hub makes the first
  three; each route declares the rest, and one function runs them in this order
  (`server.protocol.checks`: its table, and the routes that read their body or a
  subscription id earlier). Two refinements: an action only the server sends
  (``sys``/``aut`` as JSON) is a valid envelope, refused with 400 ``unknown action`` only
  after authentication; and ``sub`` ``upd``/``del`` name the session's own subscription
  by id, so they answer 404 ``unknown subscription`` and never look at ``rea`` (a
  realm-list subscription has no realm to check).
* The hub decides when a connection must go (too many rate-limited messages: 4029; a
  Bearer over ``max_connections_per_sub``: 1008) by setting `Session.closing`; from then
  on it ignores that connection's frames, and the shell closes it. A connection other
  than the one being handled (an operator's disconnect, a revoked token: 4003) is also
  put in `Hub.condemned`, which the shell drains after each unit of work.
* A token is checked against the revocations in force (`server.model.revocations`) on every
  Bearer frame and HTTP request, after the cache of verified tokens.
* Every presence transition the engine returns is published as
  ``connectionStatusChanged`` in its realm and recorded in the ledger.
* Every change to an object or realm (presence transitions included) is handed to
  `server.model.subscription_index`, which answers with the subscription pushes to make: one per
  change per subscription it touches. A new object's presence is settled before, so it
  arrives in ``cre`` already ``con``.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from hivectl import BUILD_DATE, __version__
from hivectl.core.patterns import IdPattern, compile_pattern
from hivectl.core.settings import Settings
from hivectl.core.tokens import (
    KeyRing,
    TokenError,
    VerifiedTokens,
    unverified_identity,
    verify_token,
)
from hivectl.core.wire import (
    CLOSE_KICKED,
    CLOSE_POLICY,
    CLOSE_RATE_LIMITED,
    PRESENCE_EVENT,
    Message,
    Request,
    WireError,
    authenticated,
    authentication_refused,
    decode_frame,
    decode_json,
    error,
    parse_request,
    presence_payload,
)
from server.model.changes import (
    Change,
    LeaseRenewed,
    ObjectPut,
    ObjectRemoved,
    RealmPut,
    RealmRemoved,
)
from server.model.presence import (
    Event,
    NodeLost,
    ObjectCreated,
    ObjectDeleted,
    PresenceEngine,
    ProviderDown,
    ProviderUp,
    RealmCreated,
    RealmDeleted,
    StatusChanged,
    Tick,
)
from server.model.pubsub_routes import PubSubRouter
from server.model.ratelimit import RateLimiter
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import Revocation, Revocations
from server.model.session import Outbound, Session
from server.model.subscription_index import ObjectSubscription, Push, SubscriptionIndex
from server.protocol.checks import ADMIN, Right, Route, Target, resolve
from server.protocol.deferred import ClusterView, Deferred, Peers
from server.protocol.handlers import admin, objects, pubsub, realms, subscriptions, system
from server.protocol.log_seam import LocalLog, Log, Ticket
from server.stores.storage import LoadedState
from server.stores.writes import (
    DeleteObject,
    DeleteRealm,
    DeleteRevocation,
    PutLedger,
    PutObject,
    PutRealm,
    PutRevocation,
    Write,
)

log = logging.getLogger("hivectl.server")

REVOKED = "token has been revoked"

TICK_RETRY = 0.5
"""Seconds before the hub proposes again a tick that has not come back yet (a cluster log
applies it only once it has travelled the log; one node applies it at once)."""

_AUTHENTICATION = {"typ": "sys", "act": "aut"}
"""A Bearer frame as a message, for the 429 that answers one over the rate limit."""

_STREAMING = {("rea", "sub"), ("rea", "uns"), ("sub", "cre"), ("sub", "upd"), ("sub", "del")}

Handler = Callable[["Hub", Session, Request, Target, float], Message | Deferred | None]
"""A request handler (`server.protocol.handlers`): it is given the hub, which it sees through
its module's narrow protocol (`server.protocol.context`), and what its route's checks found;
it returns the reply (None for ``set``, which gets none; `Deferred` for one that needs the
other nodes)."""

_OWN_SUBSCRIPTION = Route(subscription=True, exists=True)

_HANDLERS: dict[tuple[str, str], tuple[Route, Handler]] = {
    ("rea", "cre"): (
        Route(realm="id", lookup=False, right=Right("realm", "C"), conflict="new realm"),
        realms.create_realm,
    ),
    ("rea", "rea"): (Route(realm="id", right=Right("realm", "R")), realms.read_realm),
    ("rea", "lis"): (Route(), realms.list_realms),
    ("rea", "upd"): (Route(realm="id", right=Right("realm", "U")), realms.update_realm),
    ("rea", "del"): (Route(realm="id", right=Right("realm", "D")), realms.delete_realm),
    ("rea", "sub"): (
        Route(
            realm="id",
            body_before_permission=pubsub.subscription_channel,
            right=Right("any", "R"),
        ),
        pubsub.subscribe,
    ),
    ("rea", "uns"): (Route(realm="id", lookup=False), pubsub.unsubscribe),
    ("rea", "pub"): (
        Route(
            realm="id",
            object="dat.idp",
            body_before_permission=pubsub.publication_channel,
            right=Right("object", "U"),
        ),
        pubsub.publish,
    ),
    ("obj", "cre"): (
        Route(realm="rea", object="id", right=Right("object", objects.rights_to_create)),
        objects.create_object,
    ),
    ("obj", "upd"): (
        Route(realm="rea", object="id", right=Right("object", "U"), exists=True),
        objects.update_object,
    ),
    ("obj", "set"): (
        Route(realm="rea", object="id", right=Right("object", objects.rights_to_set), lean=True),
        objects.set_object,
    ),
    ("obj", "rea"): (
        Route(realm="rea", object="id", right=Right("object", "R"), exists=True),
        objects.read_object,
    ),
    ("obj", "lis"): (Route(realm="rea"), objects.list_objects),
    ("obj", "del"): (
        Route(realm="rea", object="id", right=Right("object", "D"), exists=True),
        objects.delete_object,
    ),
    ("sub", "cre"): (
        Route(
            subscription=True,
            kinds={
                "obj": Route(
                    realm="rea",
                    body_before_permission=subscriptions.object_options,
                    right=Right("any", "R"),
                    conflict="new subscription",
                ),
                "rea": Route(realm="rea", right=Right("realm", "R"), conflict="new subscription"),
                "sys": Route(conflict="new subscription"),
            },
        ),
        subscriptions.create_subscription,
    ),
    ("sub", "upd"): (_OWN_SUBSCRIPTION, subscriptions.update_subscription),
    ("sub", "del"): (_OWN_SUBSCRIPTION, subscriptions.delete_subscription),
    ("sys", "hbt"): (Route(), system.heartbeat),
    ("sys", "sta"): (Route(), system.stats),
    ("sys", "pre"): (
        Route(realm="rea", object="id?", right=Right("object", "R"), exists=True),
        system.presence_query,
    ),
    ("adm", "con"): (Route(right=ADMIN), admin.list_connections),
    ("adm", "dis"): (Route(right=ADMIN), admin.disconnect),
    ("adm", "rev"): (Route(right=ADMIN), admin.revoke),
    ("adm", "rvl"): (Route(right=ADMIN), admin.list_revocations),
    ("adm", "cst"): (Route(right=ADMIN), admin.cluster_status),
}
"""Every action clients may send: what its checks are (`server.protocol.checks`, which
also says why some routes read their body early) and the handler that acts once they
passed."""


@dataclass(slots=True)
class Pending:
    """A request whose changes are in the log but not applied yet (cluster mode), or
    whose reply needs the other nodes first.

    The shell waits for `tickets` (and a `Deferred` reply), then sends `reply` and hands
    `rest` back to the hub; if the log refused a change (another node wrote first), the
    hub decides `item` and `rest` again on the newer state (`Hub.decide_again`).
    """

    session: Session
    item: Any
    reply: Message | Deferred | None
    rest: list[Any]
    tickets: list[Ticket]


class Hub:
    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        *,
        node_id: str,
        started_at: float,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.node_id = node_id
        self.started_at = started_at
        self.log: Log = LocalLog(self)
        self.pending: Pending | None = None
        self.tickets: list[Ticket] = []
        """The unsettled tickets of the changes the current unit of work appended."""
        self.writes: list[Write] = []
        """What storage must be told, in order, since the shell last took it (`take_writes`)."""
        self.engine = PresenceEngine(grace=settings.presence.grace)
        self.realms: dict[str, RealmRecord] = {}
        self.sessions: dict[str, Session] = {}
        self.outbound = Outbound()
        """The sessions with frames ready for the shell (`Hub.outgoing`)."""
        self.streaming: dict[Session, None] = {}
        """Sessions with streams left to produce (`Session.streams`)."""
        self._later: list[tuple[float, int, ObjectSubscription]] = []
        """Initial states to stream once their time comes (`send_full`), as a heap."""
        self._later_order = 0
        self._tick_proposed: float | None = None
        """When this hub last appended a tick (`next_deadline`)."""
        self.pubsub = PubSubRouter()
        self.subscriptions = SubscriptionIndex(self.status)
        self.messages_in = 0
        self.presence_events = 0
        self.errors: Counter[int] = Counter()
        """Error replies by code, for /metrics (read at scrape time)."""
        self.nodes_lost = 0
        """Cluster nodes declared lost (their lease expired) since this node started."""
        self.auth_refused: Counter[str] = Counter()
        """Refused authentications by `TokenError.reason` (or ``too_many_connections``)."""
        self._commits = 0
        """Changes committed so far: a request that committed one and replies waits for sync."""
        self._connections_per_sub: dict[str, int] = {}
        self._rates = _compile_rates(settings)
        """``limits.rates``: the base message rate by ``sub`` pattern, first match wins."""
        self._verified = VerifiedTokens(settings.limits.max_connections)
        """Tokens verified before: one per connection the server may hold, so a whole fleet
        reconnecting after a network blip finds its tokens there."""
        self.revocations = Revocations()
        self.condemned: dict[Session, None] = {}
        """Sessions the hub closed while handling another's work: the shell closes them."""
        self.peers: Peers | None = None
        """The other nodes (cluster mode), for operations on every connection."""
        self.cluster: ClusterView | None = None
        """The cluster's status as this node sees it (cluster mode)."""
        self.queued: Callable[[Session], int] = lambda session: 0
        """Bytes waiting to be sent to a session: the shell knows, for the connection list."""

    def take_identity(self, node_id: str) -> None:
        """Continue as `node_id`: the cluster declared this node lost under its old id, so
        its providers register again under the new one (`server.cluster.jetstream_log`)."""
        self.node_id = node_id

    def reconfigure(self, settings: Settings, keys: KeyRing) -> None:
        """Run with new settings and keys from now on (a reload: `server.io.reload`).

        Tokens verified under the old keys are verified again at their next use (a key
        taken out of the ring must not keep working from the cache); live connections stay,
        and take the new message rates at once.
        """
        self.settings = settings
        self.keys = keys
        self._rates = _compile_rates(settings)
        self._verified = VerifiedTokens(settings.limits.max_connections)
        for session in self.sessions.values():
            if session.limiter is not None:
                rate, burst = self._rate_for(session.sub)
                session.limiter.rebase(rate, burst)
                session.limiter.provide(
                    self.engine.covered(session.conn_id), settings.limits.messages_per_object
                )

    # -- lifecycle -------------------------------------------------------------

    def load(self, state: LoadedState, now: float) -> None:
        """Adopt what storage kept; every object starts disconnected."""
        for realm in state.realms:
            self.realms[realm.id] = realm
            self.engine.apply(RealmCreated(realm.id, now))
            for object_id in realm.objects:
                self.engine.apply(ObjectCreated(realm.id, object_id, now))
        for realm_id, entries in state.ledgers.items():
            owner = self.realms.get(realm_id)
            for object_id, entry in entries.items():
                if owner is not None and object_id in owner.objects:
                    self.engine.load_ledger(realm_id, object_id, entry)
        for revocation in state.revocations:
            self.revocations.add(revocation)
        self.forget_revocations(now)

    def forget_revocations(self, now: float) -> None:
        """Drop the revocations whose tokens have all expired (`server.model.revocations`)."""
        for revocation in self.revocations.forget(now):
            self.writes.append(DeleteRevocation(revocation.key))

    def new_session(self, conn_id: str, remote: str = "", opened_at: float = 0.0) -> Session:
        session = Session(conn_id, self.outbound, remote, opened_at)
        limits = self.settings.limits
        session.limiter = RateLimiter(limits.messages_per_second, limits.burst)
        self.sessions[conn_id] = session
        return session

    def authenticate(self, session: Session, token: str, now: float) -> bool:
        """A ``Bearer`` frame: verify, then swap the claims in one step (or change nothing).

        A Bearer frame is a message like any other for the rate limit: verifying a
        signature costs more than most requests.
        """
        if session.closing is not None:
            return False
        limiter = session.limiter
        if limiter is not None and not limiter.allow(now):
            self._rate_limited(session, limiter, _AUTHENTICATION, now)
            return False
        if not self._accept_token(session, token, now):
            return False
        claims = session.claims
        assert claims is not None
        if claims.dpv:
            session.is_provider = True
            self.commit(
                ProviderUp(
                    session.conn_id, self.node_id, claims.sub, claims.jti, claims.dpv.entries, now
                )
            )
        elif session.is_provider:
            session.is_provider = False
            self.commit(ProviderDown(session.conn_id, "reauth", now))
        session.push(authenticated(__version__, BUILD_DATE))
        return True

    def _accept_token(self, session: Session, token: str, now: float) -> bool:
        auth = self.settings.auth
        try:
            claims = verify_token(
                token,
                self.keys,
                now=now,
                leeway=auth.leeway,
                require_permissions=auth.require_permissions,
                issuer=auth.issuer or None,
                audience=auth.audience or None,
                verified=self._verified,
                max_ttl=auth.max_token_ttl,
            )
            if self.revocations and self.revocations.revokes(claims.sub, claims.jti, claims.iat):
                raise TokenError(REVOKED, "revoked")
        except TokenError as exc:
            self.errors[401] += 1
            self._refused(session, token, exc.reason)
            session.push(authentication_refused(exc.text))
            return False
        if self.sessions.get(session.conn_id) is session and not self._admit(session, claims.sub):
            return False
        session.claims = claims
        session.permissions = claims.per
        session.providers = claims.dpv
        session.authenticated = True
        if session.limiter is not None:
            session.limiter.rebase(*self._rate_for(claims.sub))
        return True

    def _refused(self, session: Session, token: str, reason: str) -> None:
        self.auth_refused[reason] += 1
        sub, kid = unverified_identity(token)
        log.info(
            "authentication refused (%s) for %s from %s",
            reason,
            sub or "-",
            session.remote,
            extra={
                "event": "auth_refused",
                "reason": reason,
                "conn": session.conn_id,
                "remote": session.remote,
                "sub": sub,
                "kid": kid,
            },
        )

    def _rate_for(self, sub: str | None) -> tuple[float, float]:
        if sub is not None:
            for pattern, rate, burst in self._rates:
                if pattern.matches(sub):
                    return rate, burst
        limits = self.settings.limits
        return limits.messages_per_second, limits.burst

    def _admit(self, session: Session, sub: str | None) -> bool:
        """Count a connection under the ``sub`` it authenticates as; False over the limit.

        Connections count while authenticated, under the ``sub`` of their current claims,
        so a re-authentication as someone else moves the connection. A token without
        ``sub`` names nobody and is not limited. Over ``max_connections_per_sub`` the
        Bearer fails (401, a text that says why) and the connection is condemned with
        1008: the client is told, then closed rather than left holding a socket the
        limit exists to take back. HTTP requests are not connections and never count.
        """
        current = session.sub
        if sub == current:
            return True
        if sub is not None:
            limit = self.settings.limits.max_connections_per_sub
            count = self._connections_per_sub.get(sub, 0)
            if limit and count >= limit:
                self.errors[401] += 1
                self.auth_refused["too_many_connections"] += 1
                log.info(
                    "authentication refused (too many connections) for %s from %s",
                    sub,
                    session.remote,
                    extra={
                        "event": "auth_refused",
                        "reason": "too_many_connections",
                        "conn": session.conn_id,
                        "remote": session.remote,
                        "sub": sub,
                    },
                )
                text = f"too many connections for sub {sub} (limit {limit})"
                session.push(authentication_refused(text))
                session.closing = (CLOSE_POLICY, "too many connections for this sub")
                return False
            self._connections_per_sub[sub] = count + 1
        if current is not None:
            self._release(current)
        return True

    def _release(self, sub: str) -> None:
        remaining = self._connections_per_sub[sub] - 1
        if remaining:
            self._connections_per_sub[sub] = remaining
        else:
            del self._connections_per_sub[sub]

    def handle_http(self, token: str, body: bytes, now: float) -> tuple[int, Any, bool]:
        """A POST /api/v1 request: (HTTP status, JSON body, whether to await durability).

        The request gets a session of its own that is never registered: it provides no
        presence, holds no subscriptions and receives no pushes.
        """
        session = Session("http", None, "http")
        if not self._accept_token(session, token, now):
            return 401, {"err": session.outbox[0]["err"], "erc": 401}, False
        try:
            items = decode_json(body)
        except WireError as exc:
            return 400, [error(exc.code, exc.text)], False
        if not isinstance(items, list):
            return 400, [error(400, "body must be a JSON array of messages")], False
        limit = self.settings.limits.max_messages_per_frame
        if len(items) > limit:
            return 413, [error(413, f"too many messages in one request (limit {limit})")], False
        session.outbox.clear()
        accepted = []
        for item in items:
            if isinstance(item, dict) and (item.get("typ"), item.get("act")) in _STREAMING:
                session.push(
                    error(
                        400,
                        "subscriptions need a WebSocket connection",
                        cid=item.get("cid"),
                        typ=item.get("typ"),
                        act=item.get("act"),
                    )
                )
            else:
                accepted.append(item)
        needs_sync = self.handle_items(session, accepted, now)
        return 200, session.outbox, needs_sync

    def kick(self, session: Session, reason: str, text: str, now: float) -> None:
        """Close `session` for an operator (4003): its presence ends now with `reason`.

        The provider goes down at once (not when the socket is gone), so its objects are
        ``disconnected`` with reason ``kicked`` or ``revoked`` even if the peer is slow
        to answer the close; the shell closes the socket (`condemned`).
        """
        if session.closing is not None:
            return
        session.closing = (CLOSE_KICKED, text)
        self.condemned[session] = None
        log.info(
            "closing %s (sub %s): %s",
            session.conn_id,
            session.sub or "-",
            text,
            extra={"event": reason, "conn": session.conn_id, "sub": session.sub},
        )
        if session.is_provider:
            session.is_provider = False
            self.commit(ProviderDown(session.conn_id, reason, now))

    def take_condemned(self) -> list[Session]:
        condemned, self.condemned = list(self.condemned), {}
        return condemned

    def close_session(self, session: Session, reason: str, now: float) -> None:
        if self.sessions.pop(session.conn_id, None) is session and session.sub is not None:
            self._release(session.sub)
        self.outbound.ready.pop(session, None)
        self.streaming.pop(session, None)
        self.condemned.pop(session, None)
        session.outbox.clear()
        session.frames = None
        session.streams = None
        self.pubsub.drop_session(session)
        self.subscriptions.drop_session(session)
        if session.is_provider:
            session.is_provider = False
            self.commit(ProviderDown(session.conn_id, reason, now))

    def next_deadline(self) -> float | None:
        """When the shell should call `tick` next (None: nothing waits for time).

        The earliest of the presence engine's next grace deadline and the initial states
        waiting to be streamed (`send_full`). A grace deadline that a tick already
        proposed covers waits `TICK_RETRY` for that tick to come back from the log.
        """
        deadline = self.engine.next_deadline()
        proposed = self._tick_proposed
        if deadline is not None and proposed is not None and deadline <= proposed:
            deadline = proposed + TICK_RETRY
        if self._later and (deadline is None or self._later[0][0] < deadline):
            deadline = self._later[0][0]
        return deadline

    def tick(self, now: float) -> None:
        """Time passing: stream the initial states that are due, and end the grace periods
        that are over (a `Tick` through the log, unless one proposed is still on its way)."""
        later = self._later
        while later and later[0][0] <= now:
            _, _, subscription = heapq.heappop(later)
            self._stream_full(subscription, now)
        deadline = self.engine.next_deadline()
        if deadline is None or deadline > now:
            return
        proposed = self._tick_proposed
        if proposed is not None and deadline <= proposed and now < proposed + TICK_RETRY:
            return
        self._tick_proposed = now
        self.commit(Tick(now))

    def send_full(self, subscription: ObjectSubscription, at: float) -> None:
        """Stream `subscription`'s held set, from its ``ful`` push on, once `at` has come."""
        self._later_order += 1
        heapq.heappush(self._later, (at, self._later_order, subscription))

    def _stream_full(self, subscription: ObjectSubscription, now: float) -> None:
        session = subscription.session
        if self.sessions.get(session.conn_id) is not session:
            return  # the connection is gone
        if session.outbox or session.frames:
            # Its reply may still wait for durability (`Outbound.hold`): stay behind it.
            self.send_full(subscription, now + subscriptions.FULL_PUSH_DELAY)
            return
        self.stream(session, self.subscriptions.full(subscription))

    def outgoing(self) -> Iterator[tuple[Session, bytes]]:
        """The frames of every session with output ready, each session's in order."""
        ready = self.outbound.ready
        while ready:
            session, _ = ready.popitem()
            for frame in session.take_frames():
                yield session, frame

    def take_frames(self, session: Session) -> list[bytes]:
        """`session`'s output now (nothing if the shell holds it or it has none)."""
        ready = self.outbound.ready
        if session not in ready:
            return []
        del ready[session]
        return session.take_frames()

    @property
    def messages_out(self) -> int:
        return self.outbound.messages

    def stream(self, session: Session, messages: Iterator[Message]) -> None:
        """Send `messages` as `session`'s connection takes them, after what is queued."""
        if session.streams is None:
            session.streams = deque()
        session.streams.append(messages)
        self.streaming[session] = None

    def pump(self, can_take: Callable[[Session], bool]) -> bool:
        """Draw one message from the stream of each session that can take it now (the
        shell's flow control answers `can_take`).

        Returns whether any session can take more right away; the others are pumped again
        when their connection drains (the shell's part). A session whose replies are held
        (its outbox waits for durability) is skipped, so nothing overtakes them.
        """
        more = False
        for session in list(self.streaming):
            streams = session.streams
            if not streams or session.closing is not None:
                del self.streaming[session]
                session.streams = None
                continue
            if session.outbox or session.frames or not can_take(session):
                continue
            message = next(streams[0], None)
            if message is None:
                streams.popleft()
            else:
                session.push(message)
            if streams:
                more = more or can_take(session)
            else:
                del self.streaming[session]
                session.streams = None
        return more

    # -- frames ----------------------------------------------------------------

    def handle_frame(self, session: Session, data: str | bytes, now: float) -> bool:
        """Handle one frame; True when a write with a reply must be made durable first."""
        if session.closing is not None:
            return False
        try:
            items = decode_frame(data)
        except WireError as exc:
            self.errors[exc.code] += 1
            session.push(error(exc.code, exc.text))
            return False
        limit = self.settings.limits.max_messages_per_frame
        if len(items) > limit:
            self.errors[413] += 1
            session.push(error(413, f"too many messages in one frame (limit {limit})"))
            return False
        return self.handle_items(session, items, now)

    def handle_items(self, session: Session, items: list[Any], now: float) -> bool:
        needs_sync = False
        limiter = session.limiter
        if limiter is not None and session.is_provider:
            limiter.provide(
                self.engine.covered(session.conn_id), self.settings.limits.messages_per_object
            )
        for index, item in enumerate(items):
            self.messages_in += 1
            session.messages_in += 1
            if limiter is not None and not limiter.allow(now):
                self._rate_limited(session, limiter, item, now)
                if session.closing is not None:
                    break  # the rest of the frame goes unanswered: the connection is closing
                continue
            commits = self._commits
            self.tickets = []  # a unit of work that came before is not this request's
            parsed: Request | None = None
            try:
                request = parsed = parse_request(item)
                if not session.authenticated:
                    raise WireError(401, "not authenticated", cid=request.cid, typ=request.typ)
                entry = _HANDLERS.get((request.typ, request.act))
                if entry is None:  # a reply-only action, such as sys/aut sent as JSON
                    raise WireError(400, f'unknown action "{request.act}" for type {request.typ}')
                route, handler = entry
                target = resolve(route, request, session, self.realms)
                if isinstance(target, WireError):
                    raise target  # answered below, like a handler's refusal
                reply = handler(self, session, request, target, now)
            except WireError as exc:
                self.errors[exc.code] += 1
                act = item.get("act") if isinstance(item, dict) else None
                # Handlers raise without cid/typ: the reply still carries the request's.
                cid = exc.cid if exc.cid is not None or parsed is None else parsed.cid
                typ = exc.typ if exc.typ is not None or parsed is None else parsed.typ
                session.push(
                    error(
                        exc.code,
                        exc.text,
                        cid=cid,
                        typ=typ,
                        act=act if isinstance(act, str) else None,
                    )
                )
                continue
            except Exception:
                log.exception("internal error handling a message")
                self.errors[500] += 1
                cid = item.get("cid") if isinstance(item, dict) else None
                session.push(error(500, "internal error", cid=cid))
                continue
            if isinstance(reply, Deferred):
                # The other nodes are asked first (cluster mode): the rest of the frame waits.
                self.pending = Pending(
                    session, item, reply, items[index + 1 :], self.take_tickets()
                )
                return needs_sync
            answer = reply if request.cid is not None else None
            if self.tickets:
                # The change travels a cluster log first: the rest of the frame waits.
                self.pending = Pending(
                    session, item, answer, items[index + 1 :], self.take_tickets()
                )
                return needs_sync
            if answer is not None:
                session.push(answer)
                if self._commits != commits:
                    needs_sync = True
        return needs_sync

    def take_pending(self) -> Pending | None:
        """The request that waits for its change to be applied, with the rest of its frame."""
        pending, self.pending = self.pending, None
        return pending

    def take_writes(self) -> list[Write]:
        """What storage must be told since the last take, in order: the shell hands it over
        (`server.stores.writes.store`)."""
        writes, self.writes = self.writes, []
        return writes

    def take_tickets(self) -> list[Ticket]:
        """The unsettled tickets of what was appended since the last take: a ``Bearer``
        frame's provider registration waits for them; after other work nobody does."""
        tickets, self.tickets = self.tickets, []
        return tickets

    def decide_again(self, pending: Pending, now: float) -> None:
        """The log refused a change of `pending` (another writer stored the entity first,
        and this node has applied that write): handle the request and the rest of its
        frame again, on the state as it is now."""
        self.handle_items(pending.session, [pending.item, *pending.rest], now)

    def provider_sessions(self, now: float) -> list[ProviderUp]:
        """A `ProviderUp` for every live provider connection of this node."""
        return [
            ProviderUp(
                s.conn_id, self.node_id, s.claims.sub, s.claims.jti, s.claims.dpv.entries, now
            )
            for s in self.sessions.values()
            if s.is_provider and s.claims is not None
        ]

    def node_providers(self, node: str) -> list[str]:
        return self.engine.providers_of_node(node)

    def realm_incarnation(self, realm_id: str) -> str | None:
        """The life of the realm as applied here (None: no such realm), for the cluster log."""
        realm = self.realms.get(realm_id)
        return None if realm is None else realm.incarnation

    def status(self, realm_id: str, object_id: str) -> str:
        """An object's ``cst``: derived from presence, never written by clients."""
        return "con" if self.engine.is_connected(realm_id, object_id) else "dis"

    def stats(self, now: float) -> dict[str, Any]:
        sessions = self.sessions.values()
        return {
            "version": __version__,
            "node": self.node_id,
            "uptime": round(now - self.started_at, 3),
            "connections": len(self.sessions),
            "authenticatedConnections": sum(1 for s in sessions if s.authenticated),
            "providers": self.engine.providers,
            "subscriptions": sum(len(s.subscriptions) for s in sessions),
            "pubsubSubscriptions": self.pubsub.count,
            "realms": len(self.realms),
            "objects": sum(len(realm.objects) for realm in self.realms.values()),
            "connectedObjects": self.engine.connected_objects,
            "messagesIn": self.messages_in,
            "messagesOut": self.messages_out,
            "presenceEvents": self.presence_events,
            "sendQueueHighWater": max((s.queue_high_water for s in sessions), default=0),
        }

    def _rate_limited(
        self, session: Session, limiter: RateLimiter, item: object, now: float
    ) -> None:
        """Answer a message over the rate limit with 429; condemn a client that keeps on."""
        cid: object
        typ: str | None
        act: str | None
        try:
            request = parse_request(item)
            cid, typ, act = request.cid, request.typ, request.act
        except WireError as exc:
            cid, typ, act = exc.cid, exc.typ, None
        self.errors[429] += 1
        text = f"rate limited (limit {limiter.rate:g} messages per second)"
        session.push(error(429, text, cid=cid, typ=typ, act=act))
        if limiter.reject(now):
            session.closing = (CLOSE_RATE_LIMITED, "rate limited")
            log.warning(
                "closing %s: rate limited (limit %g messages per second, sub %s)",
                session.conn_id,
                limiter.rate,
                session.sub or "-",
                extra={
                    "event": "rate_limited",
                    "conn": session.conn_id,
                    "sub": session.sub,
                    "remote": session.remote,
                    "limit": limiter.rate,
                },
            )

    # -- the log: committing and applying changes ------------------------------

    def commit(self, change: Change) -> None:
        """Hand a decided change to the log; state changes only when it is applied."""
        self._commits += 1
        ticket = self.log.append(change)
        if not ticket.settled:
            self.tickets.append(ticket)

    def apply(self, change: Change) -> None:
        """Apply one change in log order: the only place where state changes."""
        match change:
            case ObjectPut():
                self._apply_object_put(change)
            case NodeLost():
                self.nodes_lost += 1
                self._presence(change)
            case ProviderUp() | ProviderDown() | Tick():
                self._presence(change)
            case RealmPut():
                self._apply_realm_put(change)
            case RealmRemoved():
                self._apply_realm_removed(change)
            case ObjectRemoved():
                self._apply_object_removed(change)
            case LeaseRenewed():
                pass
            case Revocation():
                self._apply_revocation(change)
            case _:
                assert_never(change)

    def _apply_revocation(self, revocation: Revocation) -> None:
        """Refuse the tokens from now on, and close this node's connections that use them."""
        current = self.revocations.add(revocation)
        self.writes.append(PutRevocation(current))
        log.info(
            "token revoked: %s",
            revocation.key.replace(":", " ", 1),
            extra={"event": "token_revoked", "jti": revocation.jti, "sub": revocation.sub},
        )
        for session in list(self.sessions.values()):
            claims = session.claims
            if claims is not None and self.revocations.revokes(claims.sub, claims.jti, claims.iat):
                self.kick(session, "revoked", "token revoked", revocation.at)

    def deliver_publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        """A pub/sub message reaches this node's subscribers."""
        if realm_id in self.realms:
            self.pubsub.publish(realm_id, event, object_id, payload)

    def _apply_realm_put(self, change: RealmPut) -> None:
        realm = self.realms.get(change.realm)
        if realm is not None and realm.incarnation != change.incarnation:
            self._apply_realm_removed(RealmRemoved(change.realm, change.at))
            realm = None
        if realm is None:
            realm = RealmRecord(
                change.realm, change.lab, dict(change.dat), incarnation=change.incarnation
            )
            self.realms[realm.id] = realm
            self.writes.append(PutRealm(realm))
            self._presence(RealmCreated(realm.id, change.at))
            self._send(self.subscriptions.realm_created(realm.id))
            return
        realm.lab = change.lab
        realm.dat = dict(change.dat)
        self.writes.append(PutRealm(realm))
        self._send(self.subscriptions.realm_updated(realm))

    def _apply_realm_removed(self, change: RealmRemoved) -> None:
        if self.realms.pop(change.realm, None) is None:
            return
        self.writes.append(DeleteRealm(change.realm))
        self.pubsub.drop_realm(change.realm, self.sessions.values())
        self._send(self.subscriptions.realm_deleted(change.realm))
        self._presence(RealmDeleted(change.realm, change.at))

    def _apply_object_put(self, change: ObjectPut) -> None:
        realm = self.realms.get(change.realm)
        if realm is None or realm.incarnation != change.realm_incarnation:
            return  # written to a realm life that has ended
        record = realm.objects.get(change.id)
        created = record is None
        previous = None if record is None else record.loc
        if record is None:
            record = realm.objects[change.id] = ObjectRecord(change.id)
        record.lab = change.lab
        record.loc = change.loc
        record.dat_json = change.dat
        record.tds = change.tds
        record.updated_at = change.at
        self.writes.append(PutObject(realm.id, record))
        # Presence first, so that a new object reaches subscriptions in `cre` already `con`.
        transitions = (
            self.engine.apply(ObjectCreated(realm.id, change.id, change.at)) if created else []
        )
        self._send(self.subscriptions.object_written(realm.id, record, previous))
        self._publish_transitions(transitions, notify_subscriptions=False)

    def _apply_object_removed(self, change: ObjectRemoved) -> None:
        realm = self.realms.get(change.realm)
        record = None if realm is None else realm.objects.pop(change.id, None)
        if realm is None or record is None:
            return
        self.writes.append(DeleteObject(realm.id, change.id))
        self._send(self.subscriptions.object_deleted(realm.id, record))
        self._presence(ObjectDeleted(realm.id, change.id, change.at))

    # -- helpers ---------------------------------------------------------------

    def _presence(self, event: Event) -> None:
        self._publish_transitions(self.engine.apply(event))

    def _publish_transitions(
        self, transitions: list[StatusChanged], *, notify_subscriptions: bool = True
    ) -> None:
        for change in transitions:
            self.presence_events += 1
            ledger = self.engine.ledger(change.realm, change.id)
            if ledger is not None:
                self.writes.append(PutLedger(change.realm, change.id, ledger))
            if notify_subscriptions:
                self._send(self.subscriptions.status_changed(change.realm, change.id))
            self.pubsub.publish(
                change.realm, PRESENCE_EVENT, change.id, presence_payload(change.status)
            )

    def _send(self, pushes: Sequence[Push]) -> None:
        for session, message in pushes:
            session.push(message)


def _compile_rates(settings: Settings) -> list[tuple[IdPattern, float, float]]:
    return [
        (compile_pattern(rate.sub), rate.messages_per_second, rate.burst)
        for rate in settings.limits.rates
    ]
