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
  ``lease_interval``, beside the publish queue, compare-and-set against its own last
  renewal (the one stored last, not only the one applied last: a consumer that lags
  must not make a healthy node miss renewals). A
  node that has seen no renewal from another for ``lease_ttl - lease_interval``
  proposes `NodeLost`, fenced by the sequence of the last renewal it saw, so exactly one
  proposal lands whoever proposes, and none once the node renewed. Applying it drops
  that node's providers everywhere (reason ``node_lost``), within ``lease_ttl`` of the
  last renewal. A node leaving gracefully appends its own `NodeLost` after its
  providers' departures, so the others stop waiting for its lease at once.
* **Losing NATS.** Writes fail with 503 while NATS is away; clients stay connected and
  reads keep working on the last applied state. Nobody is declared lost for the
  silence of an outage: a node that cannot renew its own lease judges nobody, and
  every lease starts a fresh period once it can again. The ordered consumer resumes
  after the last delivered sequence (after two missed heartbeats when the consumer was
  lost with a restarted server). The node then catches up with the stream and
  reconciles its providers with the log: it publishes every live local provider again
  and withdraws the ones that left meanwhile; if it was declared lost, it first takes a
  new incarnation, so its old providers stay dropped. A provider change that NATS
  refused at any time triggers the same reconciliation, retried until the log takes it:
  a departure lost to an outage would otherwise leave a ghost.
* **Time.** A grace period ends by a `Tick` that any node appends when its engine's
  deadline has passed; duplicates are harmless, and every node applies the same ticks at
  the same place in the log.

Pub/sub messages are not state: they travel on core NATS, one subject per realm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from server.log import Applier
from server.presence import NodeLost, ProviderDown, ProviderUp, Tick

log = logging.getLogger("hivectl.cluster")

T = TypeVar("T")

WRONG_LAST_SEQUENCE = 10071
UNAVAILABLE = 503
"""The status of JetStream refusals that waiting may cure (no leader yet, no resources)."""
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
RETRY_DELAY = 0.5
"""Seconds between attempts to reconcile providers with the log while it refuses writes."""

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


class ClusterHost(Applier, Protocol):
    """What the log needs from the hub it feeds."""

    node_id: str

    def provider_sessions(self, now: float) -> list[ProviderUp]: ...

    def node_providers(self, node: str) -> list[str]: ...

    def realm_incarnation(self, realm_id: str) -> str | None: ...


@dataclass
class _Proposal:
    change: Change
    subject: str
    expected: int | None
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


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
        self._queue: asyncio.Queue[_Proposal] = asyncio.Queue()
        self._unsettled: list[_Proposal] = []
        self._last_seq: dict[str, int] = {}
        self._leases: dict[str, tuple[int, float]] = {}
        """Other nodes' leases: node -> (sequence of the last renewal, when we saw it)."""
        self._own_lease: tuple[str, int] = ("", 0)
        """(node id, sequence) of this node's last renewal JetStream stored."""
        self._parked: dict[str, dict[str, ObjectPut]] = {}
        """Objects whose realm life is not applied here: realm -> object id -> last put."""
        self._applied = 0
        self._applied_changed = asyncio.Event()
        self._publisher_task: asyncio.Task[None] | None = None
        self._leases_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._registration: asyncio.Task[None] | None = None
        self._registration_wanted = False
        self.connected = False
        self._closing = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, read the current state, and follow the log; returns once caught up.

        Raises `LogUnavailable` when NATS or JetStream is not ready within
        `CONNECT_TIMEOUT` (a NATS cluster that starts with the nodes elects its leaders
        first), or refuses the stream (more replicas than servers...).
        """
        servers = [url.strip() for url in self._settings.nats_url.split(",") if url.strip()]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self._nc = await nats.connect(
                    servers=servers,
                    name=f"hivectl {self._host.node_id}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except TimeoutError:
            raise LogUnavailable(
                f"cannot reach NATS at {self._settings.nats_url} (tried for {CONNECT_TIMEOUT:g}s)"
            ) from None
        self.connected = True
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)
        # Quick attempts while JetStream gets ready: an unanswered one is retried, not awaited.
        js = self._nc.jetstream(timeout=READY_CHECK_TIMEOUT)
        stream = self._settings.stream
        problem = ["JetStream does not answer (is nats-server running with --jetstream?)"]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                info = await _when_ready(lambda: self._ensure_stream(js), problem)
                self._consumer = await _when_ready(
                    lambda: js.subscribe(
                        ">",
                        stream=stream,
                        cb=self._on_message,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                        idle_heartbeat=CONSUMER_HEARTBEAT,
                    ),
                    problem,
                )
            await self._nc.subscribe("hive.pub.>", cb=self._on_pubsub)
            await self._catch_up(int(info.state.last_seq))
        except TimeoutError:
            await self._nc.close()
            raise LogUnavailable(
                f"{problem[0]} at {self._settings.nats_url} (tried for {CONNECT_TIMEOUT:g}s)"
            ) from None
        except BaseException:
            await self._nc.close()
            raise
        self._publisher_task = asyncio.create_task(self._publisher(), name="hive-publisher")
        self._leases_task = asyncio.create_task(self._leases_loop(), name="hive-leases")
        await self._renew_lease()

    async def close(self) -> None:
        """Leave: publish what is queued (providers' departures), then this node's loss."""
        self._closing = True
        others = [self._leases_task, self._registration, *self._background]
        for task in others:
            if task is not None:
                task.cancel()
        if self._publisher_task is not None and self.connected:
            node = self._host.node_id
            self._queue.put_nowait(
                _Proposal(NodeLost(node, time.time()), *self._own_lease_target(node))
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await self._queue.join()
        for task in [self._publisher_task, *others]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    async def _ensure_stream(self, js: JetStreamContext) -> StreamInfo:
        """Create the stream if needed; its state says what catching up must reach."""
        name = self._settings.stream
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            return await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=list(subjects.STREAM_SUBJECTS),
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
        return info

    async def _catch_up(self, last: int) -> None:
        """Wait until the snapshot, everything up to sequence `last`, is applied.

        The message at `last` is the last of its subject, so the consumer delivers it,
        unless it expired or was purged meanwhile; then the consumer's count of pending
        messages tells when the snapshot is done.
        """
        assert self._consumer is not None
        while self._applied < last:
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
        """Wait until these proposals are stored and applied here.

        Raises `Conflict` when the stream refused one because another writer stored the
        entity first (once this node has applied that write, so deciding again sees it),
        `LogUnavailable` when NATS could not take it.
        """
        highest = 0
        for proposal in proposals:
            try:
                highest = max(highest, await proposal.done)
            except Conflict as conflict:
                with contextlib.suppress(TimeoutError):
                    await self.wait_applied(conflict.current)
                raise
        await self.wait_applied(highest)

    async def wait_applied(self, sequence: int) -> None:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            while self._applied < sequence:
                await self._progress(PUBLISH_TIMEOUT)

    def _propose(self, change: Change) -> _Proposal:
        proposal = _Proposal(change, *self._target(change))
        self._queue.put_nowait(proposal)
        return proposal

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
                sequence = await self._publish(proposal.change, proposal.subject, proposal.expected)
                proposal.done.set_result(sequence)
            except (Conflict, LogUnavailable) as exc:
                self._fail(proposal, exc)
            except Exception as exc:
                log.exception("publishing to the cluster log failed")
                self._fail(proposal, LogUnavailable(str(exc)))
            finally:
                self._queue.task_done()

    def _fail(self, proposal: _Proposal, exc: Exception) -> None:
        proposal.done.set_exception(exc)
        # Nobody waits for closes and ticks: mark the exception retrieved so that asyncio
        # does not report it when the future is collected.
        proposal.done.exception()
        log.debug("proposal to %s failed: %s", proposal.subject, exc)
        lost_provider_change = isinstance(proposal.change, ProviderUp | ProviderDown)
        if isinstance(exc, LogUnavailable) and lost_provider_change:
            self._request_registration()

    async def _publish(
        self,
        change: Change,
        subject: str,
        expected: int | None,
        wait: float = PUBLISH_TIMEOUT,
    ) -> int:
        """Store one change, waiting `wait` seconds at most for JetStream; its sequence."""
        if self._js is None or not self.connected:
            raise LogUnavailable("the cluster log is unavailable")
        headers: dict[str, str] = {}
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        ttl = TOMBSTONE_TTL if _is_tombstone(change) else None
        try:
            ack = await self._js.publish(
                subject,
                encode_change(change),
                timeout=wait,
                stream=self._settings.stream,
                headers=headers or None,
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
        if isinstance(change, RealmRemoved):
            self._spawn(self._purge(subjects.realm_objects_filter(change.realm), sequence))
        return sequence

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

    async def _on_message(self, message: Msg) -> None:
        sequence = int(message.metadata.sequence.stream)
        if sequence <= self._applied:
            return  # delivered again by a consumer recreated after a reconnection
        try:
            change = decode_change(message.data)
        except ValueError:
            log.warning("skipping a message that is not a change on %s", message.subject)
            self._advance(message.subject, sequence)
            return
        self._apply(message.subject, sequence, change)
        self._on_applied()

    def _apply(self, subject: str, sequence: int, change: Change) -> None:
        self._advance(subject, sequence)
        match change:
            case LeaseRenewed():
                if change.node != self._host.node_id:
                    self._leases[change.node] = (sequence, time.monotonic())
            case NodeLost():
                self._leases.pop(change.node, None)
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

    def _advance(self, subject: str, sequence: int) -> None:
        self._last_seq[subject] = sequence
        self._applied = max(self._applied, sequence)
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
            if healthy:
                self._propose_lost_nodes(time.monotonic())

    async def _renew_lease(self) -> bool:
        """Renew this node's lease, beside the publish queue: a slow write must not delay it.

        True when the renewal is stored.

        A refusal means either that the lease was taken (the `NodeLost` that took it
        arrives through the log, and applying it gives this node a new identity), or that
        an earlier renewal was stored but its acknowledgement lost while this node's
        consumer lags behind: the stream's last message on the lease tells which, and in
        the second case the renewal is made again at once, or the other nodes would soon
        declare a healthy node lost.
        """
        node = self._host.node_id
        change = LeaseRenewed(node, time.time())
        subject, expected = self._target(change)
        timeout = self._settings.lease_interval
        try:
            try:
                stored = await self._publish(change, subject, expected, timeout)
            except Conflict as conflict:
                if not await self._is_own_renewal(subject, node, conflict.current):
                    return False
                stored = await self._publish(change, subject, conflict.current, timeout)
        except (Conflict, LogUnavailable):
            return False
        if self._host.node_id == node:
            self._own_lease = (node, stored)
        return True

    async def _is_own_renewal(self, subject: str, node: str, sequence: int) -> bool:
        """Whether the message at `sequence`, last on `subject`, is a renewal by `node`."""
        assert self._js is not None
        try:
            message = await self._js.get_last_msg(self._settings.stream, subject)
            change = decode_change(message.data or b"")
        except Exception:
            return False
        return message.seq == sequence and isinstance(change, LeaseRenewed) and change.node == node

    def _propose_lost_nodes(self, now: float) -> None:
        deadline = self._settings.lease_ttl - self._settings.lease_interval
        for node, (sequence, seen) in list(self._leases.items()):
            if now - seen > deadline:
                self._leases[node] = (sequence, now)  # propose once per period
                self._spawn(self._declare_lost(node))

    async def _declare_lost(self, node: str) -> None:
        """Propose `NodeLost`, fenced by the lease sequence; the winner purges its providers."""
        proposal = self._propose(NodeLost(node, time.time()))
        try:
            sequence = await proposal.done
        except (Conflict, LogUnavailable):
            return  # renewed meanwhile, or another node declared it first
        log.warning("node %s missed its lease: declared it lost", node)
        await self._purge(subjects.node_providers_filter(node), sequence)

    def _fresh_leases(self) -> None:
        """Start a new period for every lease: silence this node could not hear proves nothing."""
        now = time.monotonic()
        self._leases = {node: (sequence, now) for node, (sequence, _) in self._leases.items()}

    def _reincarnate(self) -> None:
        """This node was declared lost: take a new identity and re-register providers."""
        base = self._host.node_id.split("#", 1)[0]
        self._host.node_id = f"{base}#{secrets.token_hex(3)}"
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
            if not await self._reconcile_providers():
                self._registration_wanted = True
                await asyncio.sleep(RETRY_DELAY)

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
        if isinstance(exc, _TRANSIENT_ERRORS):
            log.debug("NATS: %r", exc)
        else:
            log.error("NATS: %r", exc)

    async def _on_disconnected(self) -> None:
        self.connected = False
        if not self._closing:
            log.warning("lost the connection to NATS: writes are refused until it is back")

    async def _on_reconnected(self) -> None:
        self.connected = True
        log.info("reconnected to NATS")
        self._spawn(self._resync())

    async def _resync(self) -> None:
        """Apply what others wrote meanwhile, then reconcile this node's providers.

        Catching up first lets a node that was declared lost learn it (and take a new
        identity) before it publishes its providers again.
        """
        assert self._js is not None
        while True:
            if not self.connected:
                return  # lost again: the next reconnection starts over
            try:
                info = await self._js.stream_info(self._settings.stream)
                break
            except Exception:
                await asyncio.sleep(RETRY_DELAY)  # JetStream still recovering
        last = int(info.state.last_seq)
        if last < self._applied:
            log.error(
                "stream %s ends at %d, before what this node applied (%d): it was reset "
                "or lost data; restart every node",
                self._settings.stream,
                last,
                self._applied,
            )
        with contextlib.suppress(TimeoutError):
            await self.wait_applied(last)
        self._fresh_leases()
        self._request_registration()

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
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        await asyncio.sleep(RETRY_DELAY)


def _current_sequence(description: str) -> int:
    """The subject's last sequence, from JetStream's "wrong last sequence: N" error."""
    match = re.search(r"(\d+)", description)
    return int(match.group(1)) if match else 0


def _is_tombstone(change: Change) -> bool:
    return isinstance(change, RealmRemoved | ObjectRemoved | ProviderDown)
