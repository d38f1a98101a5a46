"""The simulator's asyncio driver: runs a `Plan` against a server and measures it.

One task per planned connection walks through its sessions; one admin connection creates the
realm, then doubles as the built-in watcher (subscribed to ``connectionStatusChanged`` on
``riders/*``) whose events the `PresenceLedger` matches against what the riders did. The
rider objects are created before (and with ``cleanup`` deleted after) by a few setup
connections, in frames of many messages, each connection paced under the server's rate
limit (`hivectl.sim.budget`), with progress reported as it goes. Everything is built on
`hivectl.client`, like any user's code.

Choices that make the numbers honest:

* **Open model.** Each connection's updates are due on a wall-clock grid (its phase plus
  multiples of the interval, spread over its riders for a gateway). A due update is sent as
  its own task -- the sender never waits for the previous reply, so a slow server does not
  slow the senders. An update sent more than `LATE_AFTER_S` after it was due (a busy event
  loop) counts as *late*; one more than a whole interval overdue is *missed* (counted, not
  sent: a newer position for the same rider is due anyway).
* **Update round trip** is an ``upd`` request's acknowledgement, measured from when the
  update was *due*, not when it left, so sender lag shows in the percentiles instead of
  hiding (coordinated omission). The server acknowledges after its storage has the write.
* **Gateways send in frames.** A gateway's updates due since its last frame leave together,
  as ``upd`` requests in frames under the server's per-frame limits (`frames_of`), paced
  to what the server allows a connection providing that many objects; updates that wait
  for the pacer count as late, and those that fall a whole interval behind as missed, as
  any sender lag does.
* **Connect** is TCP + WebSocket handshake, **auth** is ``Bearer`` sent -> reply; both
  from `hivectl.client.connection.DialTimings`. **Presence** latency runs from the
  ``Bearer`` frame (the earliest the server can know) or from the start of the close, to the
  watcher's receipt -- all in this one process, on one monotonic clock.
* Objects are created before the riders connect: creating an object publishes nothing, so
  every connect and disconnect afterwards is a clean transition to measure.
* Connects are bounded by a semaphore (``concurrency``) and spread over the ramp-up. A failed
  connect is counted by reason and retried, and a connection the server drops is counted
  (by close code) and reconnected, both after the client's jittered backoff
  (`hivectl.client.backoff`, from `RETRY_S` up to `MAX_RETRY_S`, reset only by a
  connection that held): a server that refuses or drops a fleet is not redialled by all
  of it every second.
* Stopping (the duration is over, or `Simulation.interrupt`) closes every connection
  cleanly, then waits up to ``drain_s`` for outstanding presence events.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from hivectl.client import AuthenticationError, HivekitClient, HivekitError, Realm
from hivectl.client.backoff import Backoff
from hivectl.client.errors import ConnectionLost
from hivectl.core.pacing import Pacer, split_frames
from hivectl.core.tokens import SigningKey, mint_token
from hivectl.core.wire import PRESENCE_EVENT, request
from hivectl.sim.budget import (
    MAX_FRAME_BYTES,
    MAX_FRAME_MESSAGES,
    SAFE_MESSAGES_PER_OBJECT,
    SAFE_MESSAGES_PER_S,
    allowed_rate,
    descriptors_needed,
    setup_links,
)
from hivectl.sim.ledger import SOFT_CAUSES, Match, PresenceLedger
from hivectl.sim.plan import OBJECT_PREFIX, ConnectionPlan, Plan, PlanParams, Session, build_plan
from hivectl.sim.recorder import WindowedRecorder
from hivectl.sim.report import (
    BulkStats,
    LiveSnapshot,
    OpenFiles,
    RunStats,
    SetupSnapshot,
    build_report,
)
from hivectl.sim.thresholds import Threshold

LATE_AFTER_S = 0.1
RETRY_S = 1.0
MAX_RETRY_S = 30.0
HELD_AFTER_S = 10.0
CLEAN_CLOSE_WAIT_S = 1.0
"""How long a clean close waits for updates still in flight (a polite client does)."""
TOKEN_MARGIN_S = 3600.0
BATCH_TICK_S = 0.05
"""A gateway gathers the updates due within this long into one frame."""
RIDER_DATA = {"type": "rider", "vehicle": "bicycle"}
GENERIC_ERRORS = ("unknown object", "unknown realm", "permission denied", "rate limited")
"""Error texts that name an object or a limit are counted by their kind alone, so that a
thousand refused updates make one reason, not a thousand."""


@dataclass(frozen=True)
class SimConfig:
    """A run: where, what plan, and how to measure. A clean connect or close whose event
    comes later than ``drain_s`` counts as late; ``abort_deadline_s`` bounds how long the
    server may take to notice an abort (and how long a reconnect waits for that)."""

    url: str
    realm: str
    params: PlanParams
    tls: ssl.SSLContext | None = None
    """Verifies a ``wss://`` server signed by a private CA (`hivectl.core.tls`)."""
    concurrency: int = 50
    drain_s: float = 5.0
    abort_deadline_s: float = 45.0
    max_p99_ms: float | None = None
    max_lost: int | None = None
    thresholds: tuple[Threshold, ...] = ()
    """Per-figure limits (``--threshold``), beside the two above."""
    progress_interval_s: float = 0.25
    cleanup: bool = False
    """Delete the rider objects this run created once it is over."""
    rate_per_connection: float = SAFE_MESSAGES_PER_S
    rate_per_object: float = SAFE_MESSAGES_PER_OBJECT
    """A connection is paced to ``rate_per_connection + rate_per_object x objects it
    provides`` messages per second (`hivectl.sim.budget`)."""


class SetupError(Exception):
    """The run could not start (admin connection, realm or objects); the message says why."""


@dataclass
class _Link:
    """One live connection of a planned connection."""

    client: HivekitClient
    up_at: float
    """When it authenticated (monotonic): how long it held decides the retry backoff."""
    closing: bool = False
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    dropped_at: float = 0.0
    inflight: set[asyncio.Task[None]] = field(default_factory=set)

    def on_status(self, status: str) -> None:
        if status != "connected" and not self.closing and not self.dropped.is_set():
            self.dropped_at = time.monotonic()
            self.dropped.set()


class Simulation:
    """``await Simulation(config, key).run()`` -> the report dictionary."""

    def __init__(
        self,
        config: SimConfig,
        key: SigningKey,
        *,
        on_progress: Callable[[LiveSnapshot], None] | None = None,
        on_setup: Callable[[SetupSnapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.plan: Plan = build_plan(config.params)
        self.stats = RunStats()
        self.ledger = PresenceLedger(
            deadline_s=max(config.drain_s, 1.0), abort_deadline_s=config.abort_deadline_s
        )
        self.interrupted = False
        self.connected_at_start = 0
        """Rider objects already connected before the run (another provider covers them: the
        expectations for those will not hold, and the report says so)."""
        self.setup = BulkStats(len(self.plan.riders))
        self.cleanup: BulkStats | None = None
        self._key = key
        self._on_progress = on_progress
        self._on_setup = on_setup
        self._riders = {rider.object_id: rider for rider in self.plan.riders}
        self._existing: set[str] = set()
        """Rider objects that exist: there before the run, or created by it."""
        self._created: list[str] = []
        """Rider objects this run created (what ``cleanup`` deletes)."""
        self._opened: set[str] = set()
        self._attempted: set[str] = set()
        self._recent = {"update_rtt": WindowedRecorder(), "presence": WindowedRecorder()}
        self._stop = asyncio.Event()
        self._seen = asyncio.Event()
        """Set on every presence event: wakes whoever waits for expectations to be met."""
        self._dial_slots = asyncio.Semaphore(config.concurrency)
        self._t0 = time.monotonic()
        self._token_ttl = (
            config.params.duration_s + config.drain_s + config.abort_deadline_s + TOKEN_MARGIN_S
        )

    def interrupt(self) -> None:
        """Stop early (Ctrl-C): close everything cleanly and still build the report."""
        self.interrupted = True
        self._stop.set()

    async def run(self) -> dict[str, Any]:
        open_files = raise_open_file_limit(descriptors_needed(len(self.plan.connections)))
        admin = HivekitClient(
            self.config.url, self._admin_token(), reconnect=True, tls=self.config.tls
        )
        try:
            await admin.connect()
        except (OSError, HivekitError, WebSocketException, TimeoutError) as exc:
            raise SetupError(f"cannot connect to {self.config.url}: {failure_reason(exc)}") from exc
        ticker: asyncio.Task[None] | None = None
        try:
            realm = await self._prepare(admin)
            admin.on_connection_status(self._on_watcher_status)
            self._t0 = time.monotonic()
            cpu_at_start = time.process_time()
            ticker = asyncio.create_task(self._progress_loop())
            riders = [asyncio.create_task(self._provider(conn)) for conn in self.plan.connections]
            await self._sleep_until(self._t0 + self.config.params.duration_s)
            self._stop.set()
            await asyncio.gather(*riders)
            elapsed = time.monotonic() - self._t0
            load_cpu_s = time.process_time() - cpu_at_start
            await self._drain()
            connected_at_end = await self._connected_objects(realm)
            if ticker is not None:
                ticker.cancel()
            if self.config.cleanup:
                self.cleanup = BulkStats(len(self._created))
                await self._bulk("del", self._created, self.cleanup)
        finally:
            if ticker is not None:
                ticker.cancel()
            await admin.close()
        return build_report(
            plan=self.plan,
            realm=self.config.realm,
            url=self.config.url,
            stats=self.stats,
            presence=self.ledger.summary(),
            elapsed_s=elapsed,
            interrupted=self.interrupted,
            connected_at_start=self.connected_at_start,
            connected_at_end=connected_at_end,
            open_files=open_files,
            setup=self.setup,
            cleanup=self.cleanup,
            never_connected=len(self._attempted - self._opened),
            max_p99_ms=self.config.max_p99_ms,
            max_lost=self.config.max_lost,
            thresholds=self.config.thresholds,
            load_cpu_s=load_cpu_s,
        )

    # -- setup -----------------------------------------------------------------

    def _admin_token(self) -> str:
        claims = {"sub": "hivectl-simulate", "per": {self.config.realm: {"*": "CRUD"}}}
        return mint_token(claims, self._key, now=time.time(), ttl=self._token_ttl)

    async def _prepare(self, admin: HivekitClient) -> Realm:
        """The realm and the rider objects exist (as far as the server allowed: what it
        refused is counted); the watcher is subscribed."""
        try:
            try:
                realm = await admin.realm.get(self.config.realm)
            except HivekitError as exc:
                if exc.code != 404:
                    raise
                realm = await admin.realm.create(self.config.realm, lab="hivectl simulate")
            existing = await realm.object.list()
            self.connected_at_start = self._connected(existing)
            self._existing = {oid for oid in existing if oid in self._riders}
            self.setup.existing = len(self._existing)
            missing = [oid for oid in self._riders if oid not in self._existing]
            await self._bulk("cre", missing, self.setup)
            await realm.pubsub.subscribe(
                PRESENCE_EVENT, self._on_presence, id_pattern=f"{OBJECT_PREFIX}*"
            )
        except HivekitError as exc:
            raise SetupError(f"cannot prepare realm {self.config.realm}: {exc}") from exc
        return realm

    # -- creating and deleting the rider objects ------------------------------------

    async def _bulk(self, act: str, object_ids: list[str], stats: BulkStats) -> None:
        """Create (``cre``) or delete (``del``) objects over a few setup connections, each
        sending frames under the server's per-frame limits, paced under its rate limit. A
        setup connection that cannot open, or is lost, counts what it had left as failed."""
        started = time.monotonic()
        stats.total = len(object_ids)
        self._setup_progress(stats, act, started)
        if object_ids:
            links = setup_links(len(object_ids))
            shares = [object_ids[index::links] for index in range(links)]
            await asyncio.gather(
                *(self._bulk_link(act, i, share, stats, started) for i, share in enumerate(shares))
            )
        else:
            self._setup_progress(stats, act, started)
        stats.seconds = time.monotonic() - started

    async def _bulk_link(
        self, act: str, index: int, object_ids: list[str], stats: BulkStats, started: float
    ) -> None:
        claims = {
            "sub": f"hivectl-simulate-setup-{index}",
            "per": {self.config.realm: {f"{OBJECT_PREFIX}*": "CRUD"}},
        }
        token = mint_token(claims, self._key, now=time.time(), ttl=self._token_ttl)
        client = HivekitClient(self.config.url, token, reconnect=False, tls=self.config.tls)
        try:
            await client.connect()
        except (OSError, HivekitError, WebSocketException, TimeoutError) as exc:
            stats.fail(failure_reason(exc), len(object_ids))
            self._setup_progress(stats, act, started)
            return
        pacer = Pacer(self.config.rate_per_connection)
        left = len(object_ids)
        try:
            for start in range(0, len(object_ids), MAX_FRAME_MESSAGES):
                group = object_ids[start : start + MAX_FRAME_MESSAGES]
                for frame in frames_of([self._bulk_message(act, oid) for oid in group]):
                    if act == "cre" and self._stop.is_set():
                        stats.fail("interrupted", left)
                        return
                    if client.connection.status != "connected":
                        stats.fail(lost_reason(client), left)
                        return
                    await asyncio.sleep(pacer.delay(len(frame), time.monotonic()))
                    left -= len(frame)
                    await self._bulk_frame(client, act, frame, stats)
                    self._setup_progress(stats, act, started)
        finally:
            await client.close()
            self._setup_progress(stats, act, started)

    async def _bulk_frame(
        self, client: HivekitClient, act: str, frame: list[dict[str, Any]], stats: BulkStats
    ) -> None:
        try:
            results = await client.connection.request_batch(frame)
        except ConnectionLost:
            results = [ConnectionLost("lost")] * len(frame)
        except (HivekitError, TimeoutError) as exc:
            stats.fail(failure_reason(exc), len(frame))
            return
        for message, result in zip(frame, results, strict=True):
            if isinstance(result, ConnectionLost):
                stats.fail(lost_reason(client), 1)
            elif isinstance(result, BaseException):
                stats.fail(failure_reason(result), 1)
            else:
                stats.done += 1
                self._bulk_done(act, message["id"])

    def _bulk_message(self, act: str, object_id: str) -> dict[str, Any]:
        if act != "cre":
            return request("obj", act, rea=self.config.realm, id=object_id)
        rider = self._riders[object_id]
        return request(
            "obj",
            act,
            rea=self.config.realm,
            id=object_id,
            lab=rider.label,
            dat=RIDER_DATA,
            loc=rider.route.position(0.0).as_location(),
        )

    def _bulk_done(self, act: str, object_id: str) -> None:
        if act == "cre":
            self._existing.add(object_id)
            self._created.append(object_id)
        else:
            self._existing.discard(object_id)

    def _setup_progress(self, stats: BulkStats, act: str, started: float) -> None:
        if self._on_setup is not None:
            phase = "creating objects" if act == "cre" else "deleting objects"
            self._on_setup(stats.snapshot(phase, time.monotonic() - started))

    # -- one planned connection ---------------------------------------------------

    async def _provider(self, conn: ConnectionPlan) -> None:
        claims = conn.claims(self.config.realm)
        token = mint_token(claims, self._key, now=time.time(), ttl=self._token_ttl)
        retries = Backoff(RETRY_S, MAX_RETRY_S, HELD_AFTER_S)
        jitter = random.Random(f"{self.config.params.seed}:retry:{conn.key}").random
        for session in conn.sessions:
            if not await self._sleep_until(self._t0 + session.start):
                return
            await self._online(conn, token, session, retries, jitter)
            if self._stop.is_set():
                return

    async def _online(
        self,
        conn: ConnectionPlan,
        token: str,
        session: Session,
        retries: Backoff,
        jitter: Callable[[], float],
    ) -> None:
        """Be connected from now until the session ends (reconnecting after failures)."""
        end_at = self._t0 + session.end
        while not self._stop.is_set() and time.monotonic() < end_at:
            await self._settle(conn)
            link = await self._connect(conn, token, end_at)
            if link is None or await self._ride(conn, link, end_at):
                retries.connection_lost(None if link is None else link.dropped_at - link.up_at)
                delay = retries.next_delay(jitter())
                await self._sleep_until(min(end_at, time.monotonic() + delay))
                continue
            aborting = session.ending == "abort" and not self._stop.is_set()
            await self._drop(conn, link, "abort" if aborting else "close")
            return

    async def _settle(self, conn: ConnectionPlan) -> None:
        """Wait (bounded) until the server was seen noticing this connection's last abort."""
        deadline = time.monotonic() + self.config.abort_deadline_s
        while self.ledger.awaiting_soft(conn.objects) and time.monotonic() < deadline:
            self._seen.clear()
            if not await self._sleep_until(deadline, self._seen):
                return

    async def _connect(self, conn: ConnectionPlan, token: str, end_at: float) -> _Link | None:
        async with self._dial_slots:
            if self._stop.is_set() or time.monotonic() >= end_at:
                return None
            self.stats.connect_attempts += 1
            self._attempted.add(conn.key)
            client = HivekitClient(self.config.url, token, reconnect=False, tls=self.config.tls)
            try:
                await client.connect()
            except (OSError, HivekitError, WebSocketException, TimeoutError) as exc:
                self.stats.connect_failures[failure_reason(exc)] += 1
                return None
        timings = client.connection.dial_timings
        assert timings is not None
        self.stats.latency["connect"].record(timings.opened - timings.started)
        self.stats.latency["auth"].record(timings.authenticated - timings.opened)
        self.stats.opened()
        self._opened.add(conn.key)
        link = _Link(client, timings.authenticated)
        client.on_connection_status(link.on_status)
        self._record(self.ledger.provider_up(conn.key, conn.objects, timings.opened))
        return link

    async def _ride(self, conn: ConnectionPlan, link: _Link, end_at: float) -> bool:
        """Send updates until `end_at` or stop; True when the server dropped the connection."""
        send = self._send_frames if conn.kind == "gateway" else self._send_updates
        sender = asyncio.create_task(send(conn, link, end_at))
        await self._sleep_until(end_at, link.dropped)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        if not link.dropped.is_set():
            return False
        link.closing = True
        code = link.client.connection.close_code
        self.stats.dropped_by_server["no close frame" if code is None else str(code)] += 1
        self.stats.open_now -= 1
        self._record(self.ledger.provider_down(conn.key, "dropped", link.dropped_at))
        await link.client.close()
        return True

    async def _drop(
        self, conn: ConnectionPlan, link: _Link, how: Literal["close", "abort"]
    ) -> None:
        if how == "close" and link.inflight:
            await asyncio.wait(set(link.inflight), timeout=CLEAN_CLOSE_WAIT_S)
        link.closing = True
        self.stats.open_now -= 1
        if how == "abort":
            self.stats.aborts += 1
            self._record(self.ledger.provider_down(conn.key, "abort", time.monotonic()))
            await link.client.connection.abort()
        else:
            self.stats.closes += 1
            self._record(self.ledger.provider_down(conn.key, "close", time.monotonic()))
            await link.client.close()

    # -- location updates (open model) -------------------------------------------

    async def _send_updates(self, conn: ConnectionPlan, link: _Link, end_at: float) -> None:
        realm = link.client.realm.handle(self.config.realm)
        interval = self.config.params.update_interval_s
        slot = interval / len(conn.objects)
        base = self._t0 + conn.phase_s
        k = max(0, math.ceil((time.monotonic() - base) / slot))
        while (due := base + k * slot) < end_at:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            if skipped := self._skip_overdue(due, now, interval, end_at, slot):
                k += skipped
                continue
            self.stats.updates_due += 1
            if now - due > LATE_AFTER_S:
                self.stats.updates_late += 1
            object_id = conn.objects[k % len(conn.objects)]
            location = self._riders[object_id].route.position(due - self._t0).as_location()
            task = asyncio.create_task(self._update(realm, object_id, location, due, link))
            link.inflight.add(task)
            task.add_done_callback(link.inflight.discard)
            k += 1

    def _skip_overdue(
        self, due: float, now: float, interval: float, end_at: float, slot: float
    ) -> int:
        """Updates of the grid more than an interval behind, from `due` on: each is counted
        as due and missed, and skipped, so a stalled sender does not burst to catch up."""
        if due >= now - interval:
            return 0
        skipped = max(1, math.ceil((min(now - interval, end_at) - due) / slot))
        self.stats.updates_due += skipped
        self.stats.updates_missed += skipped
        return skipped

    async def _send_frames(self, conn: ConnectionPlan, link: _Link, end_at: float) -> None:
        """A gateway's updates: the same wall-clock grid as `_send_updates`, but what is due
        leaves in frames, paced (see the module docstring). Riders whose object could not
        be created get none: the setup already reports them."""
        interval = self.config.params.update_interval_s
        count = len(conn.objects)
        slot = interval / count
        base = self._t0 + conn.phase_s
        provided = sum(1 for object_id in conn.objects if object_id in self._existing)
        pacer = Pacer(
            allowed_rate(
                provided,
                per_connection=self.config.rate_per_connection,
                per_object=self.config.rate_per_object,
            )
        )
        k = max(0, math.ceil((time.monotonic() - base) / slot))
        while (due := base + k * slot) < end_at:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(max(due - now, BATCH_TICK_S))
                now = time.monotonic()
            if skipped := self._skip_overdue(due, now, interval, end_at, slot):
                k += skipped
                continue
            last = min(math.floor((min(now, end_at) - base) / slot), k + MAX_FRAME_MESSAGES - 1)
            size = max(1, last - k + 1)
            updates = []
            for i in range(k, k + size):
                object_id = conn.objects[i % count]
                if object_id in self._existing:
                    at = base + i * slot
                    fix = self._riders[object_id].route.position(at - self._t0)
                    updates.append((at, self._update_message(object_id, fix.as_location())))
            k += size
            for frame in frames_of([message for _, message in updates]):
                dues = [at for at, _ in updates[: len(frame)]]
                updates = updates[len(frame) :]
                wait = pacer.delay(len(frame), time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
                now = time.monotonic()
                self.stats.updates_due += len(frame)
                self.stats.updates_late += sum(1 for at in dues if now - at > LATE_AFTER_S)
                task = asyncio.create_task(self._update_frame(frame, dues, link))
                link.inflight.add(task)
                task.add_done_callback(link.inflight.discard)

    def _update_message(self, object_id: str, location: dict[str, float]) -> dict[str, Any]:
        return request("obj", "upd", rea=self.config.realm, id=object_id, loc=location)

    async def _update_frame(
        self, messages: list[dict[str, Any]], dues: list[float], link: _Link
    ) -> None:
        self.stats.updates_sent += len(messages)
        try:
            results = await link.client.connection.request_batch(messages)
        except (HivekitError, TimeoutError) as exc:
            results = [exc] * len(messages)
        now = time.monotonic()
        for result, due in zip(results, dues, strict=True):
            if isinstance(result, BaseException):
                self._update_failed(result, link)
                continue
            self.stats.updates_acked += 1
            self.stats.latency["update_rtt"].record(now - due)
            self._recent["update_rtt"].record(now - due, now)

    def _update_failed(self, exc: BaseException, link: _Link) -> None:
        """Count an update that got no acknowledgement: cut off by our own close, or failed
        (a connection the server closed counts by its close code and reason)."""
        if isinstance(exc, ConnectionLost):
            if link.closing:
                self.stats.updates_interrupted += 1
                return
            self.stats.update_failures[lost_reason(link.client)] += 1
        else:
            self.stats.update_failures[failure_reason(exc)] += 1

    async def _update(
        self, realm: Realm, object_id: str, location: dict[str, float], due: float, link: _Link
    ) -> None:
        self.stats.updates_sent += 1
        try:
            await realm.object.update(object_id, location=location)
        except (HivekitError, TimeoutError) as exc:
            self._update_failed(exc, link)
            return
        now = time.monotonic()
        self.stats.updates_acked += 1
        self.stats.latency["update_rtt"].record(now - due)
        self._recent["update_rtt"].record(now - due, now)

    # -- the watcher ----------------------------------------------------------------

    def _on_presence(self, data: Any, object_id: str) -> None:
        status = data.get("cst") if isinstance(data, dict) else None
        if object_id in self._riders and status in ("con", "dis"):
            self._record(self.ledger.seen(object_id, status, time.monotonic()))
            self._seen.set()

    def _on_watcher_status(self, status: str) -> None:
        if status == "reconnecting":
            self.stats.watcher_reconnects += 1

    def _record(self, matches: list[Match]) -> None:
        now = time.monotonic()
        for match in matches:
            if match.expected.cause in SOFT_CAUSES:
                self.stats.latency["presence_abort"].record(match.latency_s)
            else:
                self.stats.latency["presence"].record(match.latency_s)
                self._recent["presence"].record(match.latency_s, now)

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.config.drain_s
        while self.ledger.pending() and (left := deadline - time.monotonic()) > 0:
            self._seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen.wait(), left)

    async def _connected_objects(self, realm: Realm) -> int | None:
        """Rider objects the server still calls connected (0 after a clean end)."""
        try:
            listed = await realm.object.list()
        except HivekitError:
            return None
        return self._connected(listed)

    def _connected(self, listed: dict[str, dict[str, Any]]) -> int:
        return sum(1 for oid, v in listed.items() if oid in self._riders and v.get("cst") == "con")

    # -- progress -----------------------------------------------------------------

    async def _progress_loop(self) -> None:
        if self._on_progress is None:
            return
        last_at, last_sent = time.monotonic(), 0
        while True:
            await asyncio.sleep(self.config.progress_interval_s)
            now = time.monotonic()
            rate = (self.stats.updates_sent - last_sent) / max(now - last_at, 1e-9)
            last_at, last_sent = now, self.stats.updates_sent
            self._on_progress(self.snapshot(now, rate))

    def snapshot(self, now: float, updates_per_s: float) -> LiveSnapshot:
        summary = self.ledger.summary()
        update_p95 = self._recent["update_rtt"].recent(now).percentile(95)
        presence_p95 = self._recent["presence"].recent(now).percentile(95)
        return LiveSnapshot(
            elapsed_s=now - self._t0,
            duration_s=self.config.params.duration_s,
            realm=self.config.realm,
            planned_connections=len(self.plan.connections),
            open_connections=self.stats.open_now,
            objects_online=self.ledger.connected_objects,
            objects=len(self.plan.riders),
            connects=self.stats.connects,
            connect_failures=sum(self.stats.connect_failures.values()),
            updates_sent=self.stats.updates_sent,
            updates_acked=self.stats.updates_acked,
            updates_failed=sum(self.stats.update_failures.values()),
            updates_late=self.stats.updates_late,
            updates_per_s=updates_per_s,
            presence_expected=summary.expected,
            presence_matched=summary.matched,
            presence_pending=summary.pending,
            update_p95_ms=None if update_p95 is None else update_p95 * 1000.0,
            presence_p95_ms=None if presence_p95 is None else presence_p95 * 1000.0,
            stopping=self._stop.is_set(),
        )

    # -- helpers --------------------------------------------------------------------

    async def _sleep_until(self, when: float, *events: asyncio.Event) -> bool:
        """Sleep until `when` or until stop (or one of `events`) is set; False on stop."""
        waiters = (self._stop, *events)
        delay = when - time.monotonic()
        if delay > 0 and not any(event.is_set() for event in waiters):
            tasks = [asyncio.ensure_future(event.wait()) for event in waiters]
            try:
                await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
        return not self._stop.is_set()


def failure_reason(exc: BaseException) -> str:
    """A short, countable reason for a failed connect or request."""
    if isinstance(exc, AuthenticationError):
        return f"auth: {exc.text}"
    if isinstance(exc, ConnectionLost):
        return "connection lost"
    if isinstance(exc, HivekitError):
        text = next((kind for kind in GENERIC_ERRORS if exc.text.startswith(kind)), exc.text)
        return f"error {exc.code}: {text}"
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return f"os: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, ConnectionClosed):
        return "closed during handshake"
    return type(exc).__name__


def lost_reason(client: HivekitClient) -> str:
    """Why a connection went away: the server's close code and reason when it sent one
    (numbers in the reason made generic, so that every such close counts as one reason)."""
    lost = client.last_close
    return "connection lost" if lost is None else re.sub(r"\d+", "N", f"closed {lost.cause}")


def frames_of(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`messages` in frames that the server takes (`hivectl.core.pacing.split_frames`)."""
    counts = split_frames(
        [len(orjson.dumps(message)) for message in messages],
        max_messages=MAX_FRAME_MESSAGES,
        max_bytes=MAX_FRAME_BYTES,
    )
    frames, start = [], 0
    for count in counts:
        frames.append(messages[start : start + count])
        start += count
    return frames


def raise_open_file_limit(needed: int) -> OpenFiles:
    """Raise the soft RLIMIT_NOFILE to the hard limit; say why when that is not enough."""
    try:
        import resource
    except ImportError:
        return OpenFiles(None, None, needed, "this platform has no RLIMIT_NOFILE to raise")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = None
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            note = f"could not raise the open-file limit from {soft} to {target}: {exc}"
    if soft < needed:
        note = (
            f"{needed} file descriptors needed but the limit is {soft} (hard {hard}); "
            "raise the hard limit (ulimit -Hn, systemd LimitNOFILE, docker --ulimit nofile)"
        )
    return OpenFiles(soft, hard, needed, note)
