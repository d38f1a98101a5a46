"""The cluster log: one JetStream stream that every node reads and applies in order.

How it keeps every node's state equal (design.md §3, §4):

* **One ordered log.** Every change is published to its entity's subject
  (`server.cluster.subjects`) in one stream. Each node reads the whole stream with an
  ordered consumer and applies each change when it arrives, so all nodes apply the same
  changes in the same order and compute the same presence transitions; each notifies
  only its own clients. A message whose sequence is not past the last applied one is
  skipped, so a consumer recreated after a reconnection never applies anything twice.
* **Compaction is the snapshot.** The stream keeps one message per subject, so the last
  message of a subject is its entity's state. A node that starts reads the last message
  of every subject, in stream order, then follows new messages from there: no gap, no
  double (the ordered consumer does both in one subscription). Start-up returns once
  the message that was last when it subscribed is applied.
* **Superseded messages.** Compaction also drops a message that a reader has not read
  yet when a newer one on its subject arrives: a starting node, or one resuming after a
  reconnection, may see an object before the realm life it belongs to (the realm's
  creation was replaced by a later update of that realm). Such objects are parked,
  keyed by the realm life (incarnation) they name, and adopted when that realm life is
  applied; the realm's deletion drops them. The node writing a realm's deletion purges
  the realm's older object messages, so later readers do not meet them at all.
* **Writes are compare-and-set.** A handler decides a change against the state this
  node has applied; publication carries the subject's last sequence this node knows
  (``Nats-Expected-Last-Subject-Sequence``). If another node wrote the entity meanwhile,
  JetStream refuses; the waiter (`settle`) waits until this node has applied that write,
  and the request is decided again. The publisher itself never waits for that, so one
  refused write does not hold back the others. A write is acknowledged once JetStream
  stored it and this node applied it, so a read after it sees it.
* **Leases and node loss.** Each node renews ``hive.lease.<node>`` every
  ``lease_interval``, beside the publish queue and whatever state it is in,
  compare-and-set against its own last renewal (the one stored last, not only the one
  applied last: a consumer that lags must not make a healthy node miss renewals), or
  against nothing when the lease holds no message (`renews_over`): on a stream
  re-created or re-seeded, a node renews before it has read the new life itself, since
  the nodes that read it first start every lease with it. A following node that has
  seen no renewal from another for ``lease_ttl - lease_interval``
  proposes `NodeLost`, fenced by the sequence of the last renewal it saw, so exactly one
  proposal lands whoever proposes, and none once the node renewed. Applying it drops
  that node's providers everywhere (reason ``node_lost``), within ``lease_ttl`` of the
  last renewal. A node leaving gracefully appends its own `NodeLost` after its
  providers' departures, so the others stop waiting for its lease at once. For the
  operator (`server.cluster.status`), each node also keeps when every lease was last
  renewed and which nodes missed theirs lately (`renewals`, `lost_nodes`).
* **Losing NATS.** Writes fail with 503 while NATS is away; clients stay connected and
  reads keep working on the last applied state. Nobody is declared lost for the
  silence of an outage: a node that cannot renew its own lease, or does not follow the
  stream (it does not hear the others' renewals), judges nobody, and every lease
  starts a fresh period once it follows again. The ordered consumer resumes
  after the last delivered sequence (after two missed heartbeats when the consumer was
  lost with a restarted server). The node then catches up with the stream and
  reconciles its providers with the log: it publishes every live local provider again
  and withdraws the ones that left meanwhile; if it was declared lost, it first takes a
  new incarnation, so its old providers stay dropped. A provider change that NATS
  refused at any time triggers the same reconciliation, retried until the log takes it:
  a departure lost to an outage would otherwise leave a ghost.
* **Stream lives.** A sequence means something only within one life of the stream
  (`server.cluster.recovery`): a node follows the stream's creation time and the epoch
  its seeder wrote on ``hive.epoch``. It checks both every ``check_interval``, and again
  before applying the first message of a consumer the client recreated (after a
  reconnection or missed heartbeats), so a consumer that resumed on another stream, or
  past a tail the stream lost, is never trusted; a write stored at a sequence this node
  already applied, or stored but not back in time, asks for a check at once. When the
  stream is gone, empty or
  reset, the node that applied the most re-seeds it and the others read it anew; until
  then writes get 503 and ``/readyz`` says not ready.
* **A write is acknowledged for its own message.** Every message carries an id
  (``Hive-Id``); a proposal is settled once this node applied the message with its id,
  or, if a later write of the same subject replaced it before it was delivered, once
  the stream's last message of that subject is one this node applied. A sequence number
  alone never settles a write: the same number may name a message of another life.
* **Every wait is bounded by a deadline, not by one cancellation.** A request of the
  NATS client may swallow a cancellation (`within`), so start-up runs in a task that is
  abandoned at its deadline, loops check their own deadline, and leaving cancels its
  tasks until they end (`stop_tasks`). A wait that gives up says so: start-up raises
  `LogUnavailable`, a read of a new life that takes too long is logged and started over.
* **Time.** A grace period ends by a `Tick` that any node appends when its engine's
  deadline has passed; duplicates are harmless, and every node applies the same ticks at
  the same place in the log.

Pub/sub messages are not state: they travel on core NATS, one subject per realm.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import nats
import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from hivectl.core.settings import ClusterSettings
from server.changes import (
    Change,
    LeaseRenewed,
    ObjectPut,
    ObjectRemoved,
    RealmPut,
    RealmRemoved,
    decode_change,
    encode_change,
)
from server.cluster import subjects
from server.cluster.recovery import (
    EPOCH_SUBJECT,
    Action,
    Candidate,
    Epoch,
    Position,
    StreamView,
    decide,
    decode_epoch,
    encode_epoch,
    purges_before_claim,
    seed_changes,
    should_claim,
    stale_changes,
)
from server.cluster.urls import server_url, shown_urls
from server.log import Applier
from server.presence import NodeLost, ProviderDown, ProviderUp, Tick
from server.records import RealmRecord
from server.revocations import Revocation, Revocations

log = logging.getLogger("hivectl.cluster")

T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071
STREAM_NOT_FOUND = 10059
UNAVAILABLE = 503
"""The status of JetStream refusals that waiting may cure (no leader yet, no resources)."""
HIVE_ID = "Hive-Id"
"""The header naming each message this cluster writes (`ClusterLog.settle` waits for it)."""
TOMBSTONE_TTL = 3600.0
"""Seconds a deletion marker stays: long enough for every node to apply it."""
PUBLISH_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0
"""Seconds a starting node tries to reach NATS before it gives up (`hivectl serve` exits 1)."""
READY_CHECK_TIMEOUT = 1.0
"""Seconds a start-up request to JetStream may take before it is tried again."""
CONSUMER_HEARTBEAT = 0.5
"""Seconds between the server's heartbeats on the log consumer. Two missed heartbeats
make the client recreate the consumer after the last delivered sequence: that is how
the log resumes after NATS restarted (the consumer was lost with it) or after the NATS
server holding the consumer went away, so this bounds how long events stop flowing."""
CATCH_UP_CHECK = 1.0
"""Seconds without progress after which a starting node asks the consumer whether the
snapshot is done (the message it waits for may have expired or been purged meanwhile)."""
RESYNC_TIMEOUT = 10.0
"""Seconds a node may take to read a new stream life before it starts over."""
RETRY_DELAY = 0.5
"""Seconds between attempts to reconcile providers with the log while it refuses writes."""
QUERY_WINDOW = 0.3
"""Seconds a node collects the other nodes' answers before deciding who re-seeds."""
SEED_BATCH = 256
"""Seed messages in flight at once."""
STOP_TIMEOUT = 2.0
"""Seconds a task of this log may take to end once cancelled (`stop_tasks`)."""
LOST_SHOWN = 600.0
"""Seconds a node declared lost stays in `lost_nodes` (``hivectl cluster status``), unless
it comes back under a new incarnation first."""

_TRANSIENT_ERRORS = (
    OSError,
    TimeoutError,
    nats.errors.UnexpectedEOF,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
)
"""Errors the NATS client reports on every failed attempt during an outage."""


class LogUnavailable(ConnectionError):
    """The stream cannot take a write now (NATS unreachable or not answering).

    A `ConnectionError`, so that a node that cannot reach NATS at start fails the way a
    server that cannot bind its port does (`hivectl serve` exits 1 and says why).
    """


class Conflict(Exception):
    """Another writer stored the entity after this node decided: decide again."""

    def __init__(self, subject: str, current: int) -> None:
        super().__init__(subject)
        self.current = current
        """The subject's last sequence in the stream: apply up to it before deciding again."""


class LogState(enum.Enum):
    """Where a node stands with the stream; writes are taken only while FOLLOWING."""

    STARTING = "starting"
    FOLLOWING = "following"
    DISCONNECTED = "disconnected"
    UNAVAILABLE = "unavailable"
    RECREATING = "recreating"
    WAITING = "waiting_for_seed"
    SEEDING = "seeding"
    RESYNCING = "resyncing"
    CLOSED = "closed"


class ClusterHost(Applier, Protocol):
    """What the log needs from the hub it feeds."""

    node_id: str
    realms: dict[str, RealmRecord]
    revocations: Revocations

    def provider_sessions(self, now: float) -> list[ProviderUp]: ...

    def node_providers(self, node: str) -> list[str]: ...

    def realm_incarnation(self, realm_id: str) -> str | None: ...


@dataclass
class _Proposal:
    change: Change
    subject: str
    expected: int | None
    id: str = ""
    life: int = 0
    """The stream life (`ClusterLog._life`) the proposal was made in."""
    seq: int = 0
    """The sequence JetStream stored it at (0 until then)."""
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    applied: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """Resolved when this node applies the proposal's own message."""


class ClusterLog:
    def __init__(
        self,
        host: ClusterHost,
        settings: ClusterSettings,
        *,
        on_applied: Callable[[], None],
    ) -> None:
        self._host = host
        self._settings = settings
        self._on_applied = on_applied
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._consumer: JetStreamContext.PushSubscription | None = None
        self._consumer_name: str | None = None
        """The consumer whose messages were checked to belong to the followed life."""
        self._queue: asyncio.Queue[_Proposal] = asyncio.Queue()
        self._unsettled: list[_Proposal] = []
        self._awaiting: dict[str, dict[str, _Proposal]] = {}
        """Published proposals whose message is not applied yet: subject -> id -> proposal."""
        self._ids = itertools.count(1)
        self._boot = secrets.token_hex(4)
        self._last_seq: dict[str, int] = {}
        self._last_ids: dict[str, str | None] = {}
        """The id of the message applied last on each subject."""
        self._leases: dict[str, tuple[int, float]] = {}
        """Other nodes' leases: node -> (sequence of the last renewal, when we saw it)."""
        self._own_lease: tuple[str, int] = ("", 0)
        """(node id, sequence) of this node's last renewal JetStream stored."""
        self._own_renewed: float | None = None
        """When JetStream last stored this node's renewal (`time.monotonic`)."""
        self._renewals: dict[str, tuple[float, str | None]] = {}
        """Other nodes' last renewals: node -> (when applied here, the writing process).
        Unlike the times in `_leases`, never restarted (by a proposal or an outage): what
        the operator is shown, and how a node that left is told from one declared lost."""
        self._lost: dict[str, float] = {}
        """Nodes other nodes declared lost, since `LOST_SHOWN` ago: node -> `NodeLost.at`."""
        self._parked: dict[str, dict[str, ObjectPut]] = {}
        """Objects whose realm life is not applied here: realm -> object id -> last put."""
        self._applied = 0
        self._stream_last = 0
        """The stream's last sequence at the latest check (`lag`)."""
        self._applied_id: str | None = None
        self._applied_changed = asyncio.Event()
        self._life = 0
        """Counts the stream lives this node followed; a consumer serves only its own."""
        self._followed: tuple[str | None, str | None] = (None, None)
        """(stream creation time, epoch id) of the life this node follows."""
        self._seen: tuple[set[str], set[tuple[str, str]]] | None = None
        """Realms and objects read while reading a new life (None: not reading one)."""
        self._state = LogState.STARTING
        self._followed_once = False
        """Whether this node followed the stream yet: what happens before is a start-up."""
        self._incomplete: tuple[str, float] | None = None
        """(epoch id or "", when first seen) while the stream has no complete epoch."""
        self._claim_since: float | None = None
        """When this node first found that someone must re-seed the stream."""
        self._held: str | None = None
        """The epoch this node last read whole: the state it holds comes from it."""
        self._last_error = ""
        self._check_wanted = asyncio.Event()
        self._publisher_task: asyncio.Task[None] | None = None
        self._leases_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._registration: asyncio.Task[None] | None = None
        self._registration_wanted = False
        self._writable_again = asyncio.Event()
        """Set when the node follows the stream again: a waiting registration goes at once."""
        self.connected = False
        self._closing = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, find or rebuild the stream life to follow, read it, and follow it.

        Returns once caught up. Raises `LogUnavailable` when NATS or JetStream is not
        ready within `CONNECT_TIMEOUT` (a NATS cluster that starts with the nodes elects
        its leaders first), or refuses the stream (more replicas than servers...).
        """
        servers = [url.strip() for url in self._settings.nats_url.split(",") if url.strip()]
        shown = f"{shown_urls(self._settings.nats_url)} (tried for {CONNECT_TIMEOUT:g}s)"
        try:
            self._nc = await within(
                CONNECT_TIMEOUT,
                nats.connect(
                    servers=servers,
                    name=f"hivectl {self._host.node_id}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    drain_timeout=int(PUBLISH_TIMEOUT),
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
            )
        except TimeoutError:
            raise LogUnavailable(f"cannot reach NATS at {shown}") from None
        self.connected = True
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)
        # Quick attempts while JetStream gets ready: an unanswered one is retried, not awaited.
        js = self._nc.jetstream(timeout=READY_CHECK_TIMEOUT)
        problem = ["JetStream does not answer (is nats-server running with --jetstream?)"]
        try:
            await self._nc.subscribe(self._query_subject, cb=self._on_query)
            await within(CONNECT_TIMEOUT, self._find_life(js, problem))
            await self._nc.subscribe("hive.pub.>", cb=self._on_pubsub)
        except TimeoutError:
            await self._nc.close()
            raise LogUnavailable(f"{problem[0]} at {shown}") from None
        except BaseException:
            await self._nc.close()
            raise
        self._publisher_task = asyncio.create_task(self._publisher(), name="hive-publisher")
        self._leases_task = asyncio.create_task(self._leases_loop(), name="hive-leases")
        self._watch_task = asyncio.create_task(self._watch(), name="hive-watch")
        await self._renew_lease()

    async def _find_life(self, js: JetStreamContext, problem: list[str]) -> None:
        """Make sure the stream exists, and check it until this node follows a life."""
        await _when_ready(lambda: self._ensure_stream(js), problem)
        await _when_ready(lambda: self._check(js), problem)
        while not self._following():
            await self._check_requested(self._settings.check_interval)
            await _when_ready(lambda: self._check(js), problem)

    async def close(self) -> None:
        """Leave: publish what is queued (providers' departures), then this node's loss."""
        self._closing = True
        others = [self._leases_task, self._watch_task, self._registration, *self._background]
        for task in others:
            if task is not None:
                task.cancel()
        if self._publisher_task is not None and self.writable:
            node = self._host.node_id
            subject, expected = self._own_lease_target(node)
            self._enqueue(NodeLost(node, time.time()), subject, expected)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await self._queue.join()
        await stop_tasks([task for task in [self._publisher_task, *others] if task is not None])
        self._state = LogState.CLOSED
        if self._nc is not None:
            # Bounded by the client's drain timeout (`start`), then it closes. A client
            # that cannot drain (NATS away: it is reconnecting) is closed at once.
            try:
                await self._nc.drain()
            except Exception:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    @property
    def state(self) -> LogState:
        return self._state

    def _following(self) -> bool:
        return self._state is LogState.FOLLOWING

    @property
    def writable(self) -> bool:
        """Whether this node takes writes now: connected, and following a complete life."""
        return self.connected and self._state is LogState.FOLLOWING

    async def _ensure_stream(self, js: JetStreamContext) -> StreamInfo:
        """Create the stream if needed, and let an older one take the epoch subject."""
        name = self._settings.stream
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            return await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[*subjects.STREAM_SUBJECTS, EPOCH_SUBJECT],
                    max_msgs_per_subject=1,
                    storage=StorageType.FILE,
                    num_replicas=self._settings.replicas,
                    allow_msg_ttl=True,
                )
            )
        replicas = info.config.num_replicas
        if replicas != self._settings.replicas:
            log.warning(
                "stream %s keeps %s replicas, not the %d of cluster.replicas: an existing "
                "stream keeps its own (change it with `nats stream edit`)",
                name,
                replicas,
                self._settings.replicas,
            )
        stream_subjects = list(info.config.subjects or [])
        missing = [
            subject
            for subject in (*subjects.STREAM_SUBJECTS, EPOCH_SUBJECT)
            if subject not in stream_subjects
        ]
        if missing:
            # A stream an older version created: it lacks the subjects added since.
            info = await js.update_stream(info.config, subjects=[*stream_subjects, *missing])
        return info

    async def _catch_up(self, last: int, deadline: float) -> None:
        """Wait until the snapshot, everything up to sequence `last`, is applied.

        The message at `last` is the last of its subject, so the consumer delivers it,
        unless it expired or was purged meanwhile; then the consumer's count of pending
        messages tells when the snapshot is done. `TimeoutError` once past `deadline`
        (`time.monotonic`), checked here rather than by a cancellation, which a NATS
        request may swallow (`within`).
        """
        assert self._consumer is not None
        life = self._life
        while self._applied < last:
            if life != self._life or self._followed[1] is None:
                raise _Abandoned  # the consumer turned out to read something else
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the snapshot up to sequence {last} was not read within "
                    f"{RESYNC_TIMEOUT:g}s (applied {self._applied})"
                )
            if await self._progress(CATCH_UP_CHECK):
                continue
            try:
                info = await self._consumer.consumer_info()
            except Exception:
                continue  # asked again after the next quiet period
            delivered = info.delivered.stream_seq if info.delivered is not None else None
            if not info.num_pending and self._applied >= (delivered or 0):
                return

    async def _progress(self, within: float) -> bool:
        """Wait for the next applied message; False when none came within `within` seconds."""
        self._applied_changed.clear()
        try:
            async with asyncio.timeout(within):
                await self._applied_changed.wait()
        except TimeoutError:
            return False
        return True

    # -- following the right stream life ------------------------------------------

    async def _watch(self) -> None:
        """Check the stream every ``check_interval``, and at once when something hints."""
        while True:
            await self._check_requested(self._settings.check_interval)
            if not self.connected or self._js is None:
                continue
            try:
                await self._check(self._js)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._following():
                    self._enter(
                        LogState.UNAVAILABLE,
                        f"does not answer ({type(exc).__name__}: {exc}), a replicated stream "
                        "may be electing a leader: writes get 503 until it answers",
                    )
                else:
                    self._report(exc)

    async def _check_requested(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._check_wanted.wait()
        self._check_wanted.clear()

    def _request_check(self) -> None:
        self._check_wanted.set()

    async def _view(self, js: JetStreamContext, applied: int) -> StreamView | None:
        """What the stream is now, `applied` being the sequence this node applied last
        before asking (taken before, so that a message applied meanwhile does not look
        like one the stream lacks); None when the stream does not exist."""
        stream = self._settings.stream
        try:
            info = await js.stream_info(stream)
            epoch, epoch_seq = None, 0
            with contextlib.suppress(_MessageMissing):
                message = await _message(js.get_last_msg(stream, EPOCH_SUBJECT))
                epoch, epoch_seq = decode_epoch(message.data or b""), int(message.seq or 0)
            last = self._stream_last = int(info.state.last_seq)
            at_applied = None
            if 0 < applied <= last:
                with contextlib.suppress(_MessageMissing):
                    message = await _message(js.get_msg(stream, seq=applied))
                    at_applied = (message.headers or {}).get(HIVE_ID)
        except NotFoundError as exc:
            if exc.err_code in (STREAM_NOT_FOUND, None):
                return None
            raise
        return StreamView(str(info.created), last, epoch, epoch_seq, at_applied)

    @property
    def lag(self) -> int:
        """Messages the stream held at the latest check that this node has not applied."""
        return max(0, self._stream_last - self._applied)

    def _position(self) -> Position:
        created, epoch = self._followed
        return Position(created, epoch, self._applied, self._applied_id, self._held)

    def _decide(self, view: StreamView | None, position: Position) -> Action:
        now = time.monotonic()
        if view is None or (view.epoch is not None and view.epoch.complete):
            self._incomplete = None
        else:
            marker = view.epoch.id if view.epoch is not None else ""
            if self._incomplete is None or self._incomplete[0] != marker:
                self._incomplete = (marker, now)
        since = self._incomplete[1] if self._incomplete is not None else now
        action = decide(
            view,
            position,
            self._host.node_id,
            incomplete_for=now - since,
            reseed_timeout=self._settings.reseed_timeout,
        )
        if action is not Action.CLAIM:
            self._claim_since = None
        elif self._claim_since is None:
            self._claim_since = now
        return action

    async def _check(self, js: JetStreamContext) -> None:
        """Look at the stream and do what `recovery.decide` says."""
        position = self._position()
        view = await self._view(js, position.applied)
        action = self._decide(view, position)
        if view is None or action is Action.CREATE:
            self._enter(
                LogState.RECREATING,
                "does not exist: creating it; writes get 503 until it is re-seeded",
            )
            await self._ensure_stream(js)
            self._request_check()
        elif action is Action.FOLLOW:
            if self._state is not LogState.FOLLOWING:
                await self._resume(view)
        elif action is Action.RESYNC:
            await self._follow(view, js)
        elif action is Action.WAIT:
            assert view.epoch is not None
            self._enter(
                LogState.WAITING,
                f"node {view.epoch.node} is re-seeding it (epoch {view.epoch.id}): "
                "waiting for it; writes get 503 meanwhile",
            )
        else:
            await self._claim(view, js)

    async def _resume(self, view: StreamView) -> None:
        """Back on the life this node follows (after a reconnection): catch up, re-register."""
        with contextlib.suppress(TimeoutError):
            await self.wait_applied(view.last_seq)
        self._fresh_leases()
        self._enter(LogState.FOLLOWING, f"following it again at sequence {self._applied}")
        self._request_registration()
        self._writable_again.set()

    async def _claim(self, view: StreamView, js: JetStreamContext) -> None:
        """Re-seed the stream if this node is the one to (`recovery.should_claim`)."""
        position = self._position()
        reason = _claim_reason(view, position)
        me = self._candidate()
        others = await self._candidates()
        expected = sorted(self._leases)
        since = self._claim_since if self._claim_since is not None else time.monotonic()
        waited = time.monotonic() - since
        timeout = self._settings.reseed_timeout
        if not should_claim(me, others, expected=expected, waited=waited, reseed_timeout=timeout):
            answered = {other.node for other in others}
            silent = [node for node in expected if node not in answered]
            self._enter(
                LogState.WAITING,
                f"{reason}: waiting up to {timeout:g}s for nodes {', '.join(silent)} to "
                "answer who holds the most; writes get 503 meanwhile"
                if silent
                else f"{reason}: another node holds more and re-seeds it; writes get 503 meanwhile",
            )
            return
        holds = me.holds
        epoch = Epoch(secrets.token_hex(6), self._host.node_id, complete=False, seeded=holds)
        self._enter(
            LogState.SEEDING,
            f"{reason}: re-seeding it from this node's state (epoch {epoch.id}); "
            "writes get 503 until done"
            if holds
            else f"{reason}: this node holds nothing, so it takes the stream as it is "
            f"(epoch {epoch.id})",
        )
        try:
            claimed = await self._publish_epoch(epoch, view.epoch_seq)
        except Conflict:
            self._request_check()  # another node claimed first: follow it
            return
        if purges_before_claim(view, position):
            await js.purge_stream(self._settings.stream, seq=claimed)
        if holds:
            await self._seed()
        try:
            complete = Epoch(epoch.id, epoch.node, complete=True, seeded=holds)
            await self._publish_epoch(complete, claimed)
        except Conflict:
            self._request_check()  # taken over: this node's seeding took too long
            return
        seeded = await self._view(js, 0)
        if seeded is not None:
            await self._follow(seeded, js)

    async def _seed(self) -> None:
        """Write this node's state create-only: what the stream already holds wins."""
        now = time.time()
        changes = seed_changes(
            list(self._host.realms.values()), self._host.provider_sessions(now), now
        )
        changes.extend(self._host.revocations)
        for start in range(0, len(changes), SEED_BATCH):
            batch = changes[start : start + SEED_BATCH]
            await asyncio.gather(*(self._seed_one(change) for change in batch))

    async def _seed_one(self, change: Change) -> None:
        subject, expected = self._target(change)
        with contextlib.suppress(Conflict):
            await self._publish(change, subject, 0 if expected is not None else None, internal=True)

    async def _publish_epoch(self, epoch: Epoch, expected: int) -> int:
        assert self._js is not None
        try:
            ack = await self._js.publish(
                EPOCH_SUBJECT,
                encode_epoch(epoch),
                timeout=PUBLISH_TIMEOUT,
                stream=self._settings.stream,
                headers={
                    "Nats-Expected-Last-Subject-Sequence": str(expected),
                    HIVE_ID: self._new_id(),
                },
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise Conflict(EPOCH_SUBJECT, _current_sequence(exc.description or "")) from None
            raise
        return int(ack.seq)

    async def _follow(self, view: StreamView, js: JetStreamContext) -> None:
        """Read `view`'s life from its snapshot, drop what it lacks, then follow it.

        Writes waiting for a message of the previous life fail (503): they may never
        come back. The leases of nodes not seen renewing in this life start from zero, so
        a node that does not come back is declared lost and its providers dropped.
        """
        assert view.epoch is not None
        epoch = view.epoch
        self._enter(
            LogState.RESYNCING,
            f"reading epoch {epoch.id} (seeded by {epoch.node}) from its snapshot"
            if self._followed[1] is None or epoch.node == self._host.node_id
            else f"epoch {epoch.id} (seeded by {epoch.node}) is not the one this node "
            f"followed ({self._followed[1]}): reading it anew; writes get 503 until done",
        )
        await self._drop_consumer()
        self._life += 1
        self._fail_awaiting(LogUnavailable("the stream changed before this write was applied"))
        self._applied, self._applied_id = 0, None
        self._last_seq, self._last_ids, self._parked = {}, {}, {}
        self._own_lease = ("", 0)
        now = time.monotonic()
        self._leases = {node: (0, now) for node in self._leases}
        self._followed = (view.created, epoch.id)
        self._seen = (set(), set())
        try:
            self._consumer = await js.subscribe(
                ">",
                stream=self._settings.stream,
                cb=functools.partial(self._on_message, self._life),
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                idle_heartbeat=CONSUMER_HEARTBEAT,
            )
            await self._catch_up(view.last_seq, time.monotonic() + RESYNC_TIMEOUT)
        except _Abandoned:
            self._seen = None
            self._request_check()
            return
        except BaseException:
            self._followed = (None, None)  # read it again from the start next time
            self._seen = None
            raise
        seen_realms, seen_objects = self._seen
        self._seen = None
        self._held = epoch.id
        stale = stale_changes(
            list(self._host.realms.values()), seen_realms, seen_objects, time.time()
        )
        for change in stale:
            self._host.apply(change)
        if stale:
            self._on_applied()
        self._enter(
            LogState.FOLLOWING,
            f"following epoch {epoch.id} (seeded by {epoch.node}) from sequence "
            f"{self._applied}; registering this node's providers again",
        )
        self._request_registration()
        self._writable_again.set()
        self._spawn(self._renew_lease())

    async def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._consumer_name = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.unsubscribe()

    async def _verify_consumer(self, life: int) -> bool:
        """Whether a recreated consumer still reads the life this node follows."""
        if self._js is None:
            return False
        position = self._position()
        deadline = time.monotonic() + RESYNC_TIMEOUT
        while True:
            try:
                view = await self._view(self._js, position.applied)
                break
            except Exception as exc:
                # JetStream is still recovering: messages wait meanwhile, none is lost.
                if life != self._life or self._closing:
                    return False
                if time.monotonic() >= deadline:
                    # Not trusted, so not lost either: the caller reads the stream anew.
                    log.warning(
                        "stream %s on %s: cannot check the recreated consumer against the "
                        "stream within %gs (%s: %s); reading the stream anew",
                        self._settings.stream,
                        self._server(),
                        RESYNC_TIMEOUT,
                        type(exc).__name__,
                        exc,
                    )
                    return False
                await asyncio.sleep(RETRY_DELAY)
        if life != self._life:
            return False
        return self._decide(view, position) is Action.FOLLOW

    def _enter(self, state: LogState, doing: str) -> None:
        """Change state, and say so once: what the node sees and what it does about it."""
        if state is self._state:
            return
        self._state = state
        self._last_error = ""
        level = logging.INFO if not self._followed_once else logging.WARNING
        if state is LogState.FOLLOWING:
            self._followed_once, level = True, logging.INFO
        log.log(level, "stream %s on %s: %s", self._settings.stream, self._server(), doing)

    def _report(self, exc: BaseException) -> None:
        """Log a failure once per state: the next check retries it anyway."""
        text = f"{type(exc).__name__}: {exc}"
        if self._state is LogState.DISCONNECTED:
            log.debug("checking the stream failed while disconnected: %s", text)
        elif text != self._last_error:
            self._last_error = text
            log.warning(
                "stream %s on %s: checking it failed (%s); %s, trying again",
                self._settings.stream,
                self._server(),
                text,
                self._state.value.replace("_", " "),
            )

    def _server(self) -> str:
        url = self._nc.connected_url if self._nc is not None else None
        return server_url(url) if url is not None else shown_urls(self._settings.nats_url)

    # -- choosing who re-seeds -----------------------------------------------------

    @property
    def _query_subject(self) -> str:
        return f"hive.ctl.{self._settings.stream}.candidates"

    def _candidate(self) -> Candidate:
        return Candidate(self._host.node_id, self._applied, self._held is not None)

    async def _on_query(self, message: Msg) -> None:
        if not message.reply or self._nc is None:
            return
        me = self._candidate()
        body = {"node": me.node, "applied": me.applied, "holds": me.holds}
        with contextlib.suppress(Exception):
            await self._nc.publish(message.reply, orjson.dumps(body))

    async def _candidates(self) -> list[Candidate]:
        """The other nodes that answer within `QUERY_WINDOW` (core NATS, not the stream)."""
        assert self._nc is not None
        answers: list[Candidate] = []

        async def collect(message: Msg) -> None:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                body = orjson.loads(message.data)
                answers.append(Candidate(str(body["node"]), int(body["applied"]), body["holds"]))

        inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(inbox, cb=collect)
        try:
            await self._nc.publish(self._query_subject, b"", reply=inbox)
            await asyncio.sleep(QUERY_WINDOW)
        finally:
            await subscription.unsubscribe()
        return [answer for answer in answers if answer.node != self._host.node_id]

    # -- the Log protocol (called by the hub, synchronously) --------------------

    def append(self, change: Change) -> None:
        self._unsettled.append(self._propose(change))

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        if self._nc is None or not self.connected:
            raise LogUnavailable("the cluster log is unavailable")
        data = orjson.dumps({"rea": realm_id, "eve": event, "idp": object_id, "dat": payload})
        self._spawn(self._nc.publish(subjects.pubsub_subject(realm_id), data))

    def waiting(self) -> bool:
        """Whether changes were appended that nobody has taken to wait for yet."""
        return bool(self._unsettled)

    def take_unsettled(self) -> list[_Proposal]:
        """The proposals appended since the last call (the caller may wait for them)."""
        taken, self._unsettled = self._unsettled, []
        return taken

    async def settle(self, proposals: list[_Proposal]) -> None:
        """Wait until these proposals are stored and their own messages applied here.

        Raises `Conflict` when the stream refused one because another writer stored the
        entity first (once this node has applied that write, so deciding again sees it),
        `LogUnavailable` when NATS could not take it or the stream changed before this
        node applied it, `TimeoutError` when it was not applied in time.
        """
        for proposal in proposals:
            try:
                await proposal.done
            except Conflict as conflict:
                with contextlib.suppress(TimeoutError):
                    await self.wait_applied(conflict.current)
                raise
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        try:
            for proposal in proposals:
                await self._applied_here(proposal, deadline)
        except TimeoutError:
            self._request_check()  # stored but not back: is the consumer on another stream?
            raise

    async def _applied_here(self, proposal: _Proposal, deadline: float) -> None:
        """Return once this node applied the proposal's message (or what replaced it).

        `TimeoutError` once past `deadline` (`time.monotonic`), checked at every turn: a
        cancellation may be swallowed by the NATS request in `_replaced` (`within`).
        """
        while not proposal.applied.done():
            if proposal.life != self._life:
                raise LogUnavailable("the stream changed before this write was applied")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the write to {proposal.subject} was not applied in time")
            if self._last_seq.get(proposal.subject, 0) > proposal.seq and await self._replaced(
                proposal
            ):
                return
            if not proposal.applied.done():
                await self._progress(remaining)
        proposal.applied.result()

    async def _replaced(self, proposal: _Proposal) -> bool:
        """Whether a later write replaced the proposal's message in the stream, and this
        node applied that write: the stream's last message on the subject is the one this
        node applied last there (same sequence, same id), so it is of this node's life."""
        if self._js is None:
            return False
        subject = proposal.subject
        try:
            message = await self._js.get_last_msg(self._settings.stream, subject)
        except Exception:
            return False
        if proposal.life != self._life:
            return False
        return message.seq == self._last_seq.get(subject) and (message.headers or {}).get(
            HIVE_ID
        ) == self._last_ids.get(subject)

    async def wait_applied(self, sequence: int) -> None:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            while self._applied < sequence:
                await self._progress(PUBLISH_TIMEOUT)

    def _propose(self, change: Change) -> _Proposal:
        return self._enqueue(change, *self._target(change))

    def _enqueue(self, change: Change, subject: str, expected: int | None) -> _Proposal:
        proposal = _Proposal(change, subject, expected, self._new_id(), self._life)
        self._queue.put_nowait(proposal)
        return proposal

    def _new_id(self) -> str:
        return f"{self._boot}.{next(self._ids)}"

    def _target(self, change: Change) -> tuple[str, int | None]:
        """The subject a change goes to, and the last sequence expected there (None: any)."""
        match change:
            case RealmPut() | RealmRemoved():
                subject = subjects.realm_subject(change.realm)
            case ObjectPut() | ObjectRemoved():
                subject = subjects.object_subject(change.realm, change.id)
            case ProviderUp():
                return subjects.provider_subject(change.node, change.conn), None
            case ProviderDown():
                return subjects.provider_subject(self._host.node_id, change.conn), None
            case NodeLost():
                subject = subjects.lease_subject(change.node)
                seq = self._leases.get(change.node, (0, 0.0))[0]
                return subject, seq
            case LeaseRenewed():
                return self._own_lease_target(change.node)
            case Tick():
                return subjects.TICK, None
            case Revocation():
                return subjects.revocation_subject(change.key), None
        return subject, self._last_seq.get(subject, 0)

    def _own_lease_target(self, node: str) -> tuple[str, int]:
        """This node's lease subject and the sequence of its last renewal.

        The later of the last stored and the last applied renewal: a lagging consumer
        must not make a renewal fail, and a renewal whose acknowledgement was lost is
        known once applied. A `NodeLost` on this lease cannot be among them: applying it
        gives this node a new id, hence a new lease subject.
        """
        subject = subjects.lease_subject(node)
        owner, stored = self._own_lease
        applied = self._last_seq.get(subject, 0)
        return subject, max(applied, stored) if owner == node else applied

    # -- publishing --------------------------------------------------------------

    async def _publisher(self) -> None:
        """Publish proposals one at a time, in append order."""
        while True:
            proposal = await self._queue.get()
            try:
                if proposal.life != self._life:
                    raise LogUnavailable("the stream changed before this write was published")
                waiting = self._awaiting.setdefault(proposal.subject, {})
                waiting[proposal.id] = proposal
                sequence = await self._publish(
                    proposal.change, proposal.subject, proposal.expected, proposal_id=proposal.id
                )
                proposal.seq = sequence
                proposal.done.set_result(sequence)
            except (Conflict, LogUnavailable) as exc:
                self._fail(proposal, exc)
            except Exception as exc:
                log.exception("publishing to the cluster log failed")
                self._fail(proposal, LogUnavailable(str(exc)))
            finally:
                self._queue.task_done()

    def _fail(self, proposal: _Proposal, exc: Exception) -> None:
        self._forget(proposal)
        for future in (proposal.done, proposal.applied):
            if not future.done():
                future.set_exception(exc)
                # Nobody waits for closes and ticks: mark the exception retrieved so that
                # asyncio does not report it when the future is collected.
                future.exception()
        log.debug("proposal to %s failed: %s", proposal.subject, exc)
        lost_provider_change = isinstance(proposal.change, ProviderUp | ProviderDown)
        if isinstance(exc, LogUnavailable) and lost_provider_change:
            self._request_registration()

    def _forget(self, proposal: _Proposal) -> None:
        waiting = self._awaiting.get(proposal.subject)
        if waiting is not None:
            waiting.pop(proposal.id, None)
            if not waiting:
                del self._awaiting[proposal.subject]

    def _fail_awaiting(self, exc: Exception) -> None:
        awaiting, self._awaiting = self._awaiting, {}
        for waiting in awaiting.values():
            for proposal in waiting.values():
                if not proposal.applied.done():
                    proposal.applied.set_exception(exc)
                    proposal.applied.exception()

    async def _publish(
        self,
        change: Change,
        subject: str,
        expected: int | None,
        wait: float = PUBLISH_TIMEOUT,
        *,
        proposal_id: str | None = None,
        internal: bool = False,
    ) -> int:
        """Store one change, waiting `wait` seconds at most for JetStream; its sequence.

        Only a node following a complete stream life writes, except for its own seeding
        (`internal`).
        """
        if self._js is None or not self.connected:
            raise LogUnavailable("the cluster log is unavailable")
        if not internal and self._state is not LogState.FOLLOWING:
            raise LogUnavailable(f"the cluster log is {self._state.value.replace('_', ' ')}")
        headers = {HIVE_ID: proposal_id or self._new_id()}
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        ttl = _ttl(change, time.time())
        try:
            ack = await self._js.publish(
                subject,
                encode_change(change),
                timeout=wait,
                stream=self._settings.stream,
                headers=headers,
                msg_ttl=ttl,
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                current = _current_sequence(exc.description or "")
                known = self._last_seq.get(subject, 0)
                if current == 0 and known == expected:
                    # The subject is empty (its message expired or was purged) and nothing
                    # was applied on it since: expect it empty. A lower but non-zero
                    # `current` is no such sign, only an answer older than what this node
                    # has applied since; taking it would refuse every later attempt.
                    self._last_seq[subject] = 0
                raise Conflict(subject, current) from None
            raise LogUnavailable(str(exc)) from None
        except Exception as exc:
            raise LogUnavailable(f"the cluster log is unavailable: {exc}") from None
        sequence = int(ack.seq)
        if sequence <= self._applied and not self._applied_this(
            subject, sequence, headers[HIVE_ID]
        ):
            # A new message numbered at or below what this node applied, and not this very
            # message read back before its acknowledgement: the stream is not the life this
            # node follows any more (or it lost its tail). The message itself is not
            # applied here, so nobody is told it is.
            self._request_check()
        if isinstance(change, RealmRemoved):
            self._spawn(self._purge(subjects.realm_objects_filter(change.realm), sequence))
        return sequence

    def _applied_this(self, subject: str, sequence: int, message_id: str) -> bool:
        """Whether this node's consumer already applied the message stored as `sequence`
        (it often does before JetStream's acknowledgement arrives)."""
        return self._last_seq.get(subject) == sequence and self._last_ids.get(subject) == message_id

    async def _purge(self, subject_filter: str, before: int) -> None:
        """Drop the messages on `subject_filter` older than sequence `before`.

        Used for what a deletion or a node loss made dead: nodes that start later do not
        read it. Best effort: a reader that still meets such a message ignores it.
        """
        assert self._js is not None
        try:
            await self._js.purge_stream(self._settings.stream, seq=before, subject=subject_filter)
        except Exception as exc:
            log.warning("could not purge %s: %s", subject_filter, exc)

    # -- applying ----------------------------------------------------------------

    async def _on_message(self, life: int, message: Msg) -> None:
        if life != self._life:
            return  # a consumer of a life this node no longer follows
        consumer = message.metadata.consumer
        if consumer != self._consumer_name:
            # A consumer the client created after a reconnection or missed heartbeats: it
            # resumed after the last delivered sequence, which is right only if the stream
            # is still the one this node follows and still holds what it applied.
            if not await self._verify_consumer(life):
                if life == self._life:
                    self._followed = (None, None)  # read the stream anew: nothing skipped
                    self._request_check()
                return
            self._consumer_name = consumer
        sequence = int(message.metadata.sequence.stream)
        if sequence <= self._applied:
            return  # delivered again by a consumer recreated after a reconnection
        message_id = (message.headers or {}).get(HIVE_ID)
        if message.subject == EPOCH_SUBJECT:
            self._on_epoch(decode_epoch(message.data))
            self._advance(message.subject, sequence, message_id)
            return
        try:
            change = decode_change(message.data)
        except ValueError:
            log.warning("skipping a message that is not a change on %s", message.subject)
            self._advance(message.subject, sequence, message_id)
            return
        self._apply(message.subject, sequence, message_id, change)
        self._on_applied()

    def _on_epoch(self, epoch: Epoch | None) -> None:
        """An epoch in the stream: a node re-seeds it (or completed doing so)."""
        if epoch is None or epoch.id == self._followed[1] or epoch.node == self._host.node_id:
            return
        if self._state is LogState.FOLLOWING:
            self._enter(
                LogState.WAITING,
                f"node {epoch.node} started epoch {epoch.id}: waiting for it; "
                "writes get 503 meanwhile",
            )
        self._request_check()

    def _apply(self, subject: str, sequence: int, message_id: str | None, change: Change) -> None:
        self._advance(subject, sequence, message_id)
        if self._seen is not None:
            match change:
                case RealmPut() | RealmRemoved():
                    self._seen[0].add(change.realm)
                case ObjectPut() | ObjectRemoved():
                    self._seen[1].add((change.realm, change.id))
                case _:
                    pass
            if self._holds_already(change):
                return  # read again from a new life: subscribers saw it the first time
        match change:
            case LeaseRenewed():
                if change.node != self._host.node_id:
                    self._leases[change.node] = (sequence, time.monotonic())
                    self._note_renewal(change.node, message_id)
            case NodeLost():
                self._leases.pop(change.node, None)
                self._note_loss(change, message_id)
                self._host.apply(change)
                if change.node == self._host.node_id and not self._closing:
                    self._reincarnate()
            case ObjectPut() if (
                self._host.realm_incarnation(change.realm) != change.realm_incarnation
            ):
                self._parked.setdefault(change.realm, {})[change.id] = change
            case ObjectRemoved():
                parked = self._parked.get(change.realm)
                if parked is not None:
                    parked.pop(change.id, None)
                self._host.apply(change)
            case RealmPut():
                self._host.apply(change)
                self._adopt(change)
            case RealmRemoved():
                self._parked.pop(change.realm, None)
                self._host.apply(change)
            case _:
                self._host.apply(change)

    def _holds_already(self, change: Change) -> bool:
        """Whether applying this realm or object would change nothing here."""
        match change:
            case RealmPut():
                realm = self._host.realms.get(change.realm)
                return realm is not None and (realm.incarnation, realm.lab, realm.dat) == (
                    change.incarnation,
                    change.lab,
                    change.dat,
                )
            case ObjectPut():
                realm = self._host.realms.get(change.realm)
                record = None if realm is None else realm.objects.get(change.id)
                return (
                    realm is not None
                    and record is not None
                    and realm.incarnation == change.realm_incarnation
                    and (record.lab, record.loc, record.dat_json, record.tds, record.updated_at)
                    == (change.lab, change.loc, change.dat, change.tds, change.at)
                )
            case _:
                return False

    def _adopt(self, realm: RealmPut) -> None:
        """Apply the parked objects of the realm life just applied."""
        parked = self._parked.get(realm.realm)
        if parked is None:
            return
        for put in [put for put in parked.values() if put.realm_incarnation == realm.incarnation]:
            del parked[put.id]
            self._host.apply(put)
        if not parked:
            del self._parked[realm.realm]

    def _advance(self, subject: str, sequence: int, message_id: str | None) -> None:
        self._last_seq[subject] = sequence
        self._last_ids[subject] = message_id
        self._applied = max(self._applied, sequence)
        self._applied_id = message_id
        waiting = self._awaiting.get(subject)
        if waiting is not None:
            own = waiting.pop(message_id, None) if message_id is not None else None
            if own is not None and not own.applied.done():
                own.applied.set_result(None)
            # Proposals stored before this message were replaced by it: a settle still
            # waiting for one checks that itself (`_replaced`); nobody else needs them.
            for stale in [p for p in waiting.values() if 0 < p.seq < sequence]:
                del waiting[stale.id]
            if not waiting:
                del self._awaiting[subject]
        self._applied_changed.set()

    # -- leases and node loss ----------------------------------------------------

    async def _leases_loop(self) -> None:
        interval = self._settings.lease_interval
        check_every = interval / 4
        renewed_at = time.monotonic()
        healthy = True
        while True:
            await asyncio.sleep(check_every)
            if time.monotonic() - renewed_at >= interval:
                renewed_at = time.monotonic()
                healthy = await self._renew_lease()
                if not healthy:
                    # The log refuses this node's own renewal: the others' silence says
                    # nothing (NATS is away, or its stream has no leader yet), so their
                    # leases start a fresh period once this node can write again.
                    self._fresh_leases()
            if healthy and self._following():
                # Only a node that follows the stream hears the others' renewals; one
                # coming back to it gives every lease a fresh period (`_resume`, `_follow`).
                self._propose_lost_nodes(time.monotonic())

    async def _renew_lease(self) -> bool:
        """Renew this node's lease, beside the publish queue: a slow write must not delay it.

        True when the renewal is stored. It is renewed in whatever state the node is,
        so that the others hear it is alive while it recovers.

        A refusal means that the stream's last message on the lease is not the renewal
        this node expected: the lease was taken (the `NodeLost` that took it arrives
        through the log, and applying it gives this node a new identity), an earlier
        renewal was stored but its acknowledgement lost while this node's consumer lags
        behind, or the stream was re-created or re-seeded and holds nothing there yet.
        The stream's last message on the lease tells which (`renews_over`); in the last
        two cases the renewal is made again at once over it. A node must not wait until
        it reads a new stream life itself: the nodes that read it first start its lease
        with it and would declare a healthy node lost if that took longer than
        ``lease_ttl`` (its check waiting out a request lost with the old connection).
        """
        node = self._host.node_id
        change = LeaseRenewed(node, time.time())
        subject, expected = self._target(change)
        timeout = self._settings.lease_interval
        try:
            try:
                stored = await self._publish(change, subject, expected, timeout, internal=True)
            except Conflict as conflict:
                if not await self._may_renew_over(subject, node, conflict.current):
                    return False
                stored = await self._publish(
                    change, subject, conflict.current, timeout, internal=True
                )
        except (Conflict, LogUnavailable):
            return False
        if self._host.node_id == node:
            self._own_lease = (node, stored)
            self._own_renewed = time.monotonic()
        return True

    async def _may_renew_over(self, subject: str, node: str, sequence: int) -> bool:
        """Whether `node` may renew over the stream's last message on its lease `subject`,
        which JetStream said is at `sequence` (0: none)."""
        assert self._js is not None
        try:
            message = await _message(self._js.get_last_msg(self._settings.stream, subject))
            last, at = decode_change(message.data or b""), int(message.seq or 0)
        except _MessageMissing:
            last, at = None, 0
        except Exception:
            return False
        return at == sequence and renews_over(last, node)

    def _propose_lost_nodes(self, now: float) -> None:
        for node, (sequence, seen) in list(self._leases.items()):
            if now - seen > self.lease_deadline:
                self._leases[node] = (sequence, now)  # propose once per period
                self._spawn(self._declare_lost(node))

    async def _declare_lost(self, node: str) -> None:
        """Propose `NodeLost`, fenced by the lease sequence; the winner purges its providers."""
        proposal = self._propose(NodeLost(node, time.time()))
        try:
            sequence = await proposal.done
        except (Conflict, LogUnavailable):
            return  # renewed meanwhile, or another node declared it first
        log.warning(
            "node %s missed its lease: declared it lost",
            node,
            extra={"event": "node_lost", "node": node, "stream": self._settings.stream},
        )
        await self._purge(subjects.node_providers_filter(node), sequence)

    def _note_renewal(self, node: str, message_id: str | None) -> None:
        """Remember who renewed `node`'s lease, and when; its lost incarnations are back."""
        self._renewals[node] = (time.monotonic(), _writer(message_id))
        if self._lost:
            base = node.split("#", 1)[0]
            self._lost = {
                lost: at for lost, at in self._lost.items() if not lost.startswith(f"{base}#")
            }

    def _note_loss(self, change: NodeLost, message_id: str | None) -> None:
        """Remember a node that others declared lost; a node that left wrote its own loss.

        Both the leaving node's `NodeLost` and its renewals carry its process's message
        ids (`_new_id`); a `NodeLost` written by another process means the node missed its
        lease. A loss read before any renewal of that node (at start-up) is not kept.
        """
        renewal = self._renewals.pop(change.node, None)
        if renewal is None or renewal[1] == _writer(message_id):
            return
        self._lost = {node: at for node, at in self._lost.items() if change.at - at < LOST_SHOWN}
        self._lost[change.node] = change.at

    def _fresh_leases(self) -> None:
        """Start a new period for every lease: silence this node could not hear proves nothing."""
        now = time.monotonic()
        self._leases = {node: (sequence, now) for node, (sequence, _) in self._leases.items()}

    def _reincarnate(self) -> None:
        """This node was declared lost: take a new identity and re-register providers."""
        base = self._host.node_id.split("#", 1)[0]
        self._host.node_id = f"{base}#{secrets.token_hex(3)}"
        self._own_renewed = None
        log.warning("declared lost by the cluster; continuing as %s", self._host.node_id)
        self._request_registration()

    # -- reconciling this node's providers with the log -------------------------

    def _request_registration(self) -> None:
        """Reconcile this node's providers with the log soon, retrying until it is done."""
        if self._closing:
            return
        self._registration_wanted = True
        if self._registration is None or self._registration.done():
            self._registration = asyncio.get_running_loop().create_task(
                self._register_providers(), name="hive-register"
            )

    async def _register_providers(self) -> None:
        while self._registration_wanted:
            self._registration_wanted = False
            self._writable_again.clear()
            if not await self._reconcile_providers():
                self._registration_wanted = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_DELAY):
                        await self._writable_again.wait()

    async def _reconcile_providers(self) -> bool:
        """Publish every live local provider again, withdraw the ones that left; True if stored.

        Both are idempotent: a provider published again with the same patterns moves
        nothing, and withdrawing one already gone is a no-op.
        """
        if not self.connected:
            return False
        now = time.time()
        live = self._host.provider_sessions(now)
        live_conns = {event.conn for event in live}
        departed = [
            ProviderDown(conn, "closed", now)
            for conn in self._host.node_providers(self._host.node_id)
            if conn not in live_conns
        ]
        changes: list[Change] = [*live, *departed]
        proposals = [self._propose(change) for change in changes]
        try:
            await self.settle(proposals)
        except (Conflict, LogUnavailable, TimeoutError):
            return False
        return True

    # -- NATS connection events --------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, NotFoundError):
            # The client could not recreate the log consumer: the stream is gone. Said
            # once by the check it triggers, not on every attempt.
            log.debug("NATS: %r", exc)
            self._request_check()
        elif isinstance(exc, _TRANSIENT_ERRORS):
            log.debug("NATS: %r", exc)
        else:
            text = repr(exc)
            if text != self._last_error:
                self._last_error = text
                log.error(
                    "stream %s on %s: NATS reports %s; %s",
                    self._settings.stream,
                    self._server(),
                    text,
                    self._state.value.replace("_", " "),
                )

    async def _on_disconnected(self) -> None:
        self.connected = False
        if not self._closing:
            self._enter(
                LogState.DISCONNECTED,
                "lost the connection to NATS: writes get 503 and reads use the last "
                "applied state until it is back",
            )

    async def _on_reconnected(self) -> None:
        """Check the stream at once: the check catches up, or recovers, then re-registers.

        Catching up first lets a node that was declared lost learn it (and take a new
        identity) before it publishes its providers again.
        """
        self.connected = True
        log.debug("reconnected to NATS at %s", self._server())
        self._request_check()

    async def _on_pubsub(self, message: Msg) -> None:
        try:
            body = orjson.loads(message.data)
            self._host.deliver_publish(body["rea"], body["eve"], body["idp"], body["dat"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("skipping a malformed pub/sub message")
            return
        self._on_applied()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def nats(self) -> NatsClient | None:
        """The NATS connection, shared with `server.cluster.peers`."""
        return self._nc

    @property
    def stream(self) -> str:
        return self._settings.stream

    def live_nodes(self) -> list[str]:
        """The other nodes whose lease this node follows: alive, as far as it knows."""
        return sorted(self._leases)

    @property
    def lease_deadline(self) -> float:
        """Seconds without a renewal after which the cluster declares a node lost."""
        return self._settings.lease_ttl - self._settings.lease_interval

    def renewals(self) -> dict[str, float]:
        """When each lease this node follows, its own included, was last renewed
        (`time.monotonic`; its own: when JetStream stored it), for ``cluster status``."""
        renewed = {node: at for node, (at, _) in self._renewals.items()}
        if self._own_renewed is not None:
            renewed[self._host.node_id] = self._own_renewed
        return renewed

    def lost_nodes(self, now: float) -> dict[str, float]:
        """The nodes declared lost in the last `LOST_SHOWN` seconds before `now`
        (`time.time`), with when, that have not come back under a new incarnation."""
        return {node: at for node, at in self._lost.items() if now - at < LOST_SHOWN}

    def applied_on(self, subject: str) -> int:
        """The sequence of the last message applied on `subject` in the followed life."""
        return self._last_seq.get(subject, 0)


async def within(seconds: float, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` for `seconds` at most; `TimeoutError` after that, once `work` ended.

    Not `asyncio.timeout`: that cancels once, and a request of the NATS client may
    swallow the cancellation (on Python 3.11, `asyncio.wait_for` returns a reply that
    arrived just before it was cancelled), so a loop inside `work` would go on for
    ever. Here the deadline holds whatever `work` does with a cancellation.
    """
    task = asyncio.get_running_loop().create_task(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        await stop_tasks([task])
        raise
    if not done:
        await stop_tasks([task])
        raise TimeoutError(f"not done within {seconds:g}s")
    return task.result()


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` until they end, for `STOP_TIMEOUT` at most.

    Cancelled again and again, not once: a task looping on NATS requests may swallow a
    cancellation (see `within`). One that still runs after the timeout is left behind,
    and said.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_TIMEOUT
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.1, deadline - loop.time()))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())
    if pending:
        log.warning(
            "tasks %s did not end within %gs of being cancelled: left running",
            ", ".join(sorted(task.get_name() for task in pending)),
            STOP_TIMEOUT,
        )


async def _when_ready(operation: Callable[[], Awaitable[T]], problem: list[str]) -> T:
    """Run a JetStream request again until JetStream is ready for it (the caller bounds it).

    `problem` keeps the last reason to wait, for the message when the caller gives up.
    A refusal that waiting cannot change (a bad stream configuration) raises at once.
    """
    while True:
        try:
            return await operation()
        except APIError as exc:
            if exc.code != UNAVAILABLE:
                raise LogUnavailable(f"JetStream refused the stream: {exc.description}") from None
            problem[0] = f"JetStream is not ready ({exc.description})"
        except (nats.errors.NoRespondersError, *_TRANSIENT_ERRORS):
            pass  # NATS restarting or reconnecting meanwhile
        await asyncio.sleep(RETRY_DELAY)


def _writer(message_id: str | None) -> str | None:
    """The process that wrote a message: the prefix of its id (`ClusterLog._new_id`)."""
    return None if message_id is None else message_id.rpartition(".")[0]


def _current_sequence(description: str) -> int:
    """The subject's last sequence, from JetStream's "wrong last sequence: N" error."""
    match = re.search(r"(\d+)", description)
    return int(match.group(1)) if match else 0


def renews_over(last: Change | None, node: str) -> bool:
    """Whether `node` may renew its lease over `last`, the lease subject's last message
    (None: the subject holds none).

    Over its own renewal, or over nothing: a stream re-created or re-seeded holds no
    message on the lease yet, and cannot hold the lease's loss either, since a
    `NodeLost` stays the last message of its subject. Never over a `NodeLost`: the node
    was declared lost and takes a new identity (`ClusterLog._reincarnate`).
    """
    return last is None or (isinstance(last, LeaseRenewed) and last.node == node)


def _is_tombstone(change: Change) -> bool:
    return isinstance(change, RealmRemoved | ObjectRemoved | ProviderDown)


def _ttl(change: Change, now: float) -> float | None:
    """How long the stream keeps a message: tombstones an hour, a revocation until every
    token it covers has expired (at least a second, JetStream's smallest TTL)."""
    if isinstance(change, Revocation):
        return None if change.expires is None else max(1.0, math.ceil(change.expires - now))
    return TOMBSTONE_TTL if _is_tombstone(change) else None


class _Abandoned(Exception):
    """Reading a stream life stopped: its consumer turned out to read another one."""


class _MessageMissing(Exception):
    """The stream holds no message there (the stream itself exists)."""


async def _message(request: Awaitable[Any]) -> Any:
    """A message asked of the stream, or `_MessageMissing` when there is none."""
    try:
        return await request
    except NotFoundError as exc:
        if exc.err_code == STREAM_NOT_FOUND:
            raise
        raise _MessageMissing from None


def _claim_reason(view: StreamView, position: Position) -> str:
    """Why the stream needs a seeder, for the log line that says so."""
    epoch, applied = view.epoch, position.applied
    if epoch is None:
        return "holds no epoch (it is new, or was emptied)"
    if not epoch.complete:
        return f"re-seeding by node {epoch.node} did not finish"
    if epoch.id != position.epoch:
        return f"node {epoch.node} started it anew holding nothing (epoch {epoch.id})"
    if view.last_seq < applied:
        return f"ends at {view.last_seq}, before what this node applied ({applied})"
    return f"holds another message at {applied} than the one this node applied"
