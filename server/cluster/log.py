"""The cluster log: one JetStream stream that every node reads and applies in order.

How it keeps every node's state equal (design.md §3, §4):

* **One ordered log.** Every change is published to its entity's subject
  (`server.cluster.subjects`) in one stream. Each node reads the whole stream with an
  ordered consumer and applies each change when it arrives, so all nodes apply the same
  changes in the same order and compute the same presence transitions; each notifies
  only its own clients.
* **Compaction is the snapshot.** The stream keeps one message per subject, so the last
  message of a subject is its entity's state. A node that starts reads the last message
  of every subject, in stream order, then follows new messages from there: no gap, no
  double (the ordered consumer does both in one subscription). While catching up it
  applies realms before everything else, because a realm's last message may come after
  the messages of objects written into it; objects name the realm life (incarnation)
  they belong to, so objects of a deleted realm stay out.
* **Writes are compare-and-set.** A handler decides a change against the state this
  node has applied; publication carries the subject's last sequence this node knows
  (``Nats-Expected-Last-Subject-Sequence``). If another node wrote the entity meanwhile,
  JetStream refuses, this node waits until it has applied that write, and the request
  is decided again. A write is acknowledged once JetStream stored it and this node
  applied it, so a read after it (in the same frame or later) sees it.
* **Leases and node loss.** Each node renews ``hive.lease.<node>`` every
  ``lease_interval`` (compare-and-set too: a node whose lease was taken from it learns
  so). A node that has seen no renewal from another for ``lease_ttl - lease_interval``
  proposes `NodeLost`, fenced by the lease's sequence, so exactly one proposal lands
  whoever proposes. Applying it drops that node's providers everywhere (reason
  ``node_lost``), within ``lease_ttl`` of the last renewal.
* **Losing NATS.** Writes fail with 503 while NATS is away; clients stay connected and
  reads keep working on the last applied state. On reconnection the ordered consumer
  resumes after the last applied sequence, and the node re-registers its live
  providers (and withdraws the ones that left meanwhile); if it was declared lost, it
  first takes a new incarnation, so its old providers stay dropped.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
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

WRONG_LAST_SEQUENCE = 10071
TOMBSTONE_TTL = 3600.0
"""Seconds a deletion marker stays: long enough for every node to apply it."""
PUBLISH_TIMEOUT = 5.0


class LogUnavailable(Exception):
    """The stream cannot take a write now (NATS unreachable or not answering)."""


class Conflict(Exception):
    """Another node wrote the entity after this node decided: decide again."""


class ClusterHost(Applier, Protocol):
    """What the log needs from the hub it feeds."""

    node_id: str

    def provider_sessions(self, now: float) -> list[ProviderUp]: ...

    def node_providers(self, node: str) -> list[str]: ...


def _new_future() -> asyncio.Future[int]:
    return asyncio.get_running_loop().create_future()


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
        self._queue: asyncio.Queue[_Proposal] = asyncio.Queue()
        self._unsettled: list[_Proposal] = []
        self._last_seq: dict[str, int] = {}
        self._leases: dict[str, tuple[int, float]] = {}
        """Other nodes' leases: node -> (sequence of the last renewal, when we saw it)."""
        self._applied = 0
        self._applied_changed = asyncio.Event()
        self._catching_up: list[tuple[str, int, Change]] | None = []
        self._caught_up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_publishes: set[asyncio.Task[None]] = set()
        self.connected = False
        self._closing = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, read the current state, and follow the log; returns once caught up."""
        servers = [url.strip() for url in self._settings.nats_url.split(",") if url.strip()]
        self._nc = await nats.connect(
            servers=servers,
            name=f"hivectl {self._host.node_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self.connected = True
        self._js = self._nc.jetstream(timeout=PUBLISH_TIMEOUT)
        last = await self._ensure_stream()
        await self._nc.subscribe("hive.pub.>", cb=self._on_pubsub)
        await self._js.subscribe(
            ">",
            stream=self._settings.stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        )
        if last == 0:
            self._finish_catch_up()
        await self._caught_up.wait()
        self._tasks = [
            asyncio.create_task(self._publisher(), name="hive-publisher"),
            asyncio.create_task(self._leases_loop(), name="hive-leases"),
        ]
        await self._renew_lease()

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    async def _ensure_stream(self) -> int:
        """Create the stream if needed; its last sequence (what catching up must reach)."""
        assert self._js is not None
        name = self._settings.stream
        try:
            info = await self._js.stream_info(name)
        except NotFoundError:
            info = await self._js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=list(subjects.STREAM_SUBJECTS),
                    max_msgs_per_subject=1,
                    storage=StorageType.FILE,
                    num_replicas=self._settings.replicas,
                    allow_msg_ttl=True,
                )
            )
        return int(info.state.last_seq)

    # -- the Log protocol (called by the hub, synchronously) --------------------

    def append(self, change: Change) -> None:
        subject, expected = self._target(change)
        proposal = _Proposal(change, subject, expected)
        self._unsettled.append(proposal)
        self._queue.put_nowait(proposal)

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        if self._nc is None or not self.connected:
            raise LogUnavailable("the cluster log is unavailable")
        data = orjson.dumps({"rea": realm_id, "eve": event, "idp": object_id, "dat": payload})
        task = asyncio.get_running_loop().create_task(
            self._nc.publish(subjects.pubsub_subject(realm_id), data)
        )
        self._pending_publishes.add(task)
        task.add_done_callback(self._pending_publishes.discard)

    def waiting(self) -> bool:
        """Whether changes were appended that nobody has taken to wait for yet."""
        return bool(self._unsettled)

    def take_unsettled(self) -> list[_Proposal]:
        """The proposals appended since the last call (the caller may wait for them)."""
        taken, self._unsettled = self._unsettled, []
        return taken

    async def settle(self, proposals: list[_Proposal]) -> None:
        """Wait until these proposals are stored and applied here.

        Raises `Conflict` when the stream refused one because another node wrote first
        (after this node has caught up with that write), `LogUnavailable` when NATS
        could not take it.
        """
        highest = 0
        for proposal in proposals:
            highest = max(highest, await proposal.done)
        await self.wait_applied(highest)

    async def wait_applied(self, sequence: int) -> None:
        while self._applied < sequence:
            self._applied_changed.clear()
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._applied_changed.wait()

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
                subject = subjects.lease_subject(change.node)
            case Tick():
                return subjects.TICK, None
        return subject, self._last_seq.get(subject, 0)

    # -- publishing --------------------------------------------------------------

    async def _publisher(self) -> None:
        """Publish proposals one at a time, in append order."""
        while True:
            proposal = await self._queue.get()
            try:
                proposal.done.set_result(await self._publish(proposal))
            except (Conflict, LogUnavailable) as exc:
                proposal.done.set_exception(exc)
            except Exception as exc:
                log.exception("publishing to the cluster log failed")
                proposal.done.set_exception(LogUnavailable(str(exc)))
            if proposal.done.exception() is not None:
                log.debug("proposal to %s failed", proposal.subject)

    async def _publish(self, proposal: _Proposal) -> int:
        if self._js is None or not self.connected:
            raise LogUnavailable("the cluster log is unavailable")
        headers: dict[str, str] = {}
        if proposal.expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(proposal.expected)
        ttl = TOMBSTONE_TTL if _is_tombstone(proposal.change) else None
        try:
            ack = await self._js.publish(
                proposal.subject,
                encode_change(proposal.change),
                stream=self._settings.stream,
                headers=headers or None,
                msg_ttl=ttl,
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                await self._catch_up_with(proposal.subject, exc.description or "")
                raise Conflict(proposal.subject) from None
            raise LogUnavailable(str(exc)) from None
        except Exception as exc:
            raise LogUnavailable(f"the cluster log is unavailable: {exc}") from None
        return int(ack.seq)

    async def _catch_up_with(self, subject: str, description: str) -> None:
        """After a refused write, wait until this node has applied what refused it."""
        match = re.search(r"(\d+)", description)
        current = int(match.group(1)) if match else 0
        if current < self._last_seq.get(subject, 0):
            self._last_seq[subject] = current  # the message expired or was purged
            return
        with contextlib.suppress(TimeoutError):
            await self.wait_applied(current)

    # -- applying ----------------------------------------------------------------

    async def _on_message(self, message: Msg) -> None:
        metadata = message.metadata
        sequence = int(metadata.sequence.stream)
        try:
            change = decode_change(message.data)
        except ValueError:
            log.warning("skipping a message that is not a change on %s", message.subject)
            self._advance(message.subject, sequence)
            return
        if self._catching_up is not None:
            self._catching_up.append((message.subject, sequence, change))
            if metadata.num_pending == 0:
                self._finish_catch_up()
            return
        self._apply(message.subject, sequence, change)
        self._on_applied()

    def _finish_catch_up(self) -> None:
        """Apply the snapshot: realms first (their last message may follow their objects')."""
        backlog, self._catching_up = self._catching_up or [], None
        realms = [entry for entry in backlog if isinstance(entry[2], RealmPut | RealmRemoved)]
        others = [entry for entry in backlog if not isinstance(entry[2], RealmPut | RealmRemoved)]
        for subject, sequence, change in realms + others:
            self._apply(subject, sequence, change)
        self._caught_up.set()

    def _apply(self, subject: str, sequence: int, change: Change) -> None:
        self._advance(subject, sequence)
        match change:
            case LeaseRenewed():
                if change.node != self._host.node_id:
                    self._leases[change.node] = (sequence, time.monotonic())
            case NodeLost():
                self._leases.pop(change.node, None)
                self._host.apply(change)
                if change.node == self._host.node_id:
                    self._reincarnate()
            case _:
                self._host.apply(change)

    def _advance(self, subject: str, sequence: int) -> None:
        self._last_seq[subject] = sequence
        self._applied = max(self._applied, sequence)
        self._applied_changed.set()

    # -- leases and node loss ----------------------------------------------------

    async def _leases_loop(self) -> None:
        interval = self._settings.lease_interval
        check_every = interval / 4
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(check_every)
            now = time.monotonic()
            if now - renewed >= interval:
                renewed = now
                await self._renew_lease()
            self._propose_lost_nodes(now)

    async def _renew_lease(self) -> None:
        node = self._host.node_id
        proposal = _Proposal(LeaseRenewed(node, time.time()), *self._target(LeaseRenewed(node, 0)))
        self._queue.put_nowait(proposal)
        with contextlib.suppress(Conflict, LogUnavailable):
            # A refused renewal means the lease was taken: the NodeLost that took it
            # arrives through the log, and applying it re-registers this node.
            await proposal.done

    def _propose_lost_nodes(self, now: float) -> None:
        deadline = self._settings.lease_ttl - self._settings.lease_interval
        for node, (sequence, seen) in list(self._leases.items()):
            if now - seen > deadline:
                self._leases[node] = (sequence, now)  # propose once per period
                task = asyncio.get_running_loop().create_task(self._declare_lost(node))
                self._pending_publishes.add(task)
                task.add_done_callback(self._pending_publishes.discard)

    async def _declare_lost(self, node: str) -> None:
        """Propose `NodeLost`, fenced by the lease sequence; the winner purges its providers."""
        self.append(NodeLost(node, time.time()))
        try:
            await self.settle(self.take_unsettled())
        except (Conflict, LogUnavailable, TimeoutError):
            return  # renewed meanwhile, or another node declared it first
        log.warning("node %s missed its lease: declared it lost", node)
        assert self._js is not None
        with contextlib.suppress(Exception):
            await self._js.purge_stream(
                self._settings.stream, subject=f"hive.prov.{subjects.token(node)}.>"
            )

    def _reincarnate(self) -> None:
        """This node was declared lost: take a new identity and re-register providers."""
        base = self._host.node_id.split("#", 1)[0]
        self._host.node_id = f"{base}#{secrets.token_hex(3)}"
        log.warning("declared lost by the cluster; continuing as %s", self._host.node_id)
        self._register_providers()

    def _register_providers(self) -> None:
        """Publish every live local provider again, and withdraw the ones that left."""
        live = self._host.provider_sessions(time.time())
        for event in live:
            self.append(event)
        live_conns = {event.conn for event in live}
        for conn in self._host.node_providers(self._host.node_id):
            if conn not in live_conns:
                self.append(ProviderDown(conn, "closed", time.time()))
        self.take_unsettled()

    # -- NATS connection events --------------------------------------------------

    async def _on_disconnected(self) -> None:
        self.connected = False
        if not self._closing:
            log.warning("lost the connection to NATS: writes are refused until it is back")

    async def _on_reconnected(self) -> None:
        self.connected = True
        log.info("reconnected to NATS")
        self._register_providers()

    async def _on_pubsub(self, message: Msg) -> None:
        try:
            body = orjson.loads(message.data)
            self._host.deliver_publish(body["rea"], body["eve"], body["idp"], body["dat"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("skipping a malformed pub/sub message")
            return
        self._on_applied()

    @property
    def applied(self) -> int:
        return self._applied


def _is_tombstone(change: Change) -> bool:
    return isinstance(change, RealmRemoved | ObjectRemoved | ProviderDown)
