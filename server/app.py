"""The asyncio shell around the hub: sockets, timers and storage durability.

Everything the protocol decides lives in `server.hub`; this module only moves bytes
and time. One coroutine per WebSocket connection feeds the hub in arrival order;
after each unit of work the hub's outboxes are flushed with `broadcast`-style
non-blocking writes, so a slow reader never makes anyone else wait. A connection's
replies to writes leave only after storage reports them durable.

Timers the shell owns: the authentication deadline, each token's expiry, the
presence engine's next grace deadline (fed back to the hub as a tick), and the
delayed pushes the hub asks for (`Hub.schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from hivectl.core.settings import Settings
from hivectl.core.tokens import KeyRing
from hivectl.core.wire import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    error,
)
from server.auth import keyring_from_settings
from server.cluster.log import ClusterLog, Conflict, LogUnavailable
from server.http_api import ApiListener
from server.hub import Hub, Pending
from server.metrics import ServerMetrics
from server.session import Session
from server.storage import MemoryStorage, Storage, open_storage

log = logging.getLogger("hivectl.server")

CONFLICT_TIMEOUT = 5.0
"""Seconds a write may keep being decided again (other writers kept landing first) before
it gets 409. A bound in time, not in attempts: each round among concurrent writers of one
entity lands one of them and takes milliseconds, so a write among many writers may lose
dozens of rounds and still be answered quickly."""
TICK_RETRY = 0.5
"""Seconds before a cluster node proposes again a tick that has not come back yet."""

LISTEN_BACKLOG = 1024
"""Connections the kernel completes and queues while the loop is busy (asyncio's default is
100). In a reconnect storm a shorter queue overflows and the kernel drops SYNs, which
clients send again only after a second: ``hivectl bench connect`` measured a connect p99 of
1.1-1.4 s with 100 and 0.3-0.5 s with 1024 (5,000 providers, 200 in flight). Linux caps it
at ``net.core.somaxconn``."""

CLOSE_TIMEOUT = 10.0
"""Longest wait for the peer's answer to our close frame (the `websockets` default)."""


@dataclass
class _Timers:
    auth: asyncio.TimerHandle | None = None
    expiry: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        for handle in (self.auth, self.expiry):
            if handle is not None:
                handle.cancel()


class HivekitServer:
    """One node: WebSocket + health endpoints on one port, the HTTP API on another."""

    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage | None = None,
        keys: KeyRing | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys or keyring_from_settings(settings.auth)
        clustered = bool(settings.cluster.nats_url)
        # In a cluster, JetStream is the durable store: the node keeps state in memory.
        self.storage: Storage = storage or (
            MemoryStorage() if clustered else open_storage(settings.storage)
        )
        self.node_id = settings.server.node_id or f"node-{secrets.token_hex(4)}"
        self._boot = secrets.token_hex(3)
        self.hub = Hub(
            settings,
            self.storage,
            self.keys,
            # Providers belong to this run of the node: a restarted node is a new member.
            node_id=f"{self.node_id}#{self._boot}" if clustered else self.node_id,
            started_at=time.time(),
            schedule=self._schedule,
        )
        self.cluster: ClusterLog | None = None
        if clustered:
            self.cluster = ClusterLog(self.hub, settings.cluster, on_applied=self._after_work)
            self.hub.log = self.cluster
        self._tick_proposed: float | None = None
        self.metrics = ServerMetrics(self.hub, ready=lambda: self.ready)
        self.ready = False
        self._conn_ids = itertools.count(1)
        self._ws_server: Server | None = None
        self._api: ApiListener | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_at: float | None = None
        self._close_reasons: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        now = time.time()
        self.hub.load(self.storage.load(), now)
        if self.cluster is not None:
            await self.cluster.start()
        limits = self.settings.limits
        self._ws_server = await serve(
            self._handle,
            self.settings.server.host,
            self.settings.server.port,
            process_request=self._process_request,
            ping_interval=limits.ping_interval or None,
            ping_timeout=limits.ping_timeout or None,
            # A peer that missed its pong will not answer the close frame either: without
            # this, a dead socket would be declared gone only after the default 10 s
            # closing handshake on top of the ping timeout.
            close_timeout=min(limits.ping_timeout, CLOSE_TIMEOUT) or CLOSE_TIMEOUT,
            max_size=limits.max_message_size,
            max_queue=16,
            compression="deflate" if limits.compression == "deflate" else None,
            server_header="hivectl",
            origins=_origins(limits.allowed_origins),
            backlog=LISTEN_BACKLOG,
        )
        if self.settings.server.api_enabled:
            self._api = ApiListener(self.handle_http, self.settings.limits.max_message_size)
            await self._api.start(self.settings.server.host, self.settings.server.api_port)
        self.ready = True
        log.info("serving %s", self.ws_url)

    async def close(self) -> None:
        """Graceful stop: refuse new work, close clients with 1001, make storage durable."""
        self.ready = False
        if self._api is not None:
            await self._api.close()
        if self._ws_server is not None:
            for session in self.hub.sessions.values():
                self._close_reasons.setdefault(session.conn_id, "shutdown")
            self._ws_server.close(code=CLOSE_GOING_AWAY, reason="server shutting down")
            try:
                async with asyncio.timeout(self.settings.server.shutdown_timeout):
                    await self._ws_server.wait_closed()
            except TimeoutError:
                # Peers that never answer the close frame would hold the exit for the
                # closing handshake's own timeout: the shutdown timeout is the bound.
                open_connections = list(self._ws_server.all_connections)
                log.warning(
                    "aborting %d connections still open after the shutdown timeout",
                    len(open_connections),
                )
                for ws in open_connections:
                    ws.transport.abort()
                await self._ws_server.wait_closed()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for timer in self._timers:
            timer.cancel()
        if self.cluster is not None:
            await self.cluster.close()
        await self.storage.sync()
        await self.storage.close()

    async def serve_forever(self) -> None:
        assert self._ws_server is not None
        await self._ws_server.wait_closed()

    @property
    def port(self) -> int:
        assert self._ws_server is not None
        sockets = list(self._ws_server.sockets)
        return int(sockets[0].getsockname()[1])

    @property
    def api_port(self) -> int | None:
        return self._api.port if self._api is not None else None

    @property
    def ws_url(self) -> str:
        return f"ws://{_url_host(self.settings.server.host)}:{self.port}/ws"

    @property
    def api_url(self) -> str | None:
        port = self.api_port
        if port is None:
            return None
        return f"http://{_url_host(self.settings.server.host)}:{port}/api/v1"

    # -- HTTP on the WebSocket port --------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            body, content_type = self.metrics.exposition(request.headers.get("Accept"))
            response = connection.respond(HTTPStatus.OK, body.decode())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = content_type
            return response
        if path == "/readyz":
            if self.ready:
                return connection.respond(HTTPStatus.OK, "ready\n")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if not self.ready:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if len(self.hub.sessions) >= self.settings.limits.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server full\n")
        return None

    # -- connections -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn_id = f"{self.node_id}:{self._boot}:{next(self._conn_ids)}"
        remote = _remote(ws)
        session = self.hub.new_session(
            conn_id, lambda data: self._deliver(ws, session, data), remote
        )
        loop = asyncio.get_running_loop()
        timers = _Timers()
        timers.auth = loop.call_later(
            self.settings.limits.auth_timeout, self._auth_deadline, ws, session
        )
        try:
            async for message in ws:
                started, events = time.perf_counter(), self.hub.presence_events
                now = time.time()
                if isinstance(message, str) and message.startswith("Bearer "):
                    if self.hub.authenticate(session, message[7:].strip(), now):
                        self._arm_expiry(ws, session, timers)
                    await self._settle_authentication(session)
                elif self.hub.handle_frame(session, message, now):
                    await self._acknowledge_after_commit(session)
                await self._settle_requests()
                self._after_work()
                self.metrics.presence_flushed(events, started)
                if session.closing is not None:
                    self._close(ws, session, *session.closing)
        except ConnectionClosed:
            pass
        finally:
            timers.cancel()
            reason = self._close_reasons.pop(conn_id, None) or _close_reason(ws)
            started, events = time.perf_counter(), self.hub.presence_events
            self.hub.close_session(session, reason, time.time())
            self._after_work()
            self.metrics.presence_flushed(events, started)

    async def _acknowledge_after_commit(self, session: Session) -> None:
        """Hold this session's output until the writes it is about to acknowledge are durable."""
        with self._holding(session):
            await self._commit()

    def _after_work(self) -> None:
        if self.cluster is not None:
            # Changes appended outside a request (closes, ticks) are not waited for.
            self.cluster.take_unsettled()
        self.hub.flush()
        self._arm_tick()

    # -- cluster mode: requests wait for their changes to come back from the log --

    async def _settle_authentication(self, session: Session) -> None:
        """Hold the ``aut`` reply until the provider registration is applied.

        If the log cannot take it now, the reply goes anyway: the cluster log registers
        the provider once NATS takes writes again (`ClusterLog` reconciles providers).
        """
        if self.cluster is None or not self.cluster.waiting():
            return
        proposals = self.cluster.take_unsettled()
        with self._holding(session):
            try:
                await self.cluster.settle(proposals)
            except (Conflict, LogUnavailable, TimeoutError):
                log.warning("provider %s not registered yet: will retry", session.conn_id)

    async def _settle_requests(self) -> None:
        """Finish the request waiting for its change, then the rest of its frame."""
        if self.cluster is None:
            return
        conflicted_since: float | None = None
        while (pending := self.hub.take_pending()) is not None:
            proposals = self.cluster.take_unsettled()
            session = pending.session
            with self._holding(session):
                try:
                    await self.cluster.settle(proposals)
                except Conflict:
                    if conflicted_since is None:
                        conflicted_since = time.monotonic()
                    if time.monotonic() - conflicted_since < CONFLICT_TIMEOUT:
                        self.hub.handle_items(session, [pending.item, *pending.rest], time.time())
                        continue
                    session.push(_failed(pending, 409, "conflicting writes: try again"))
                except (LogUnavailable, TimeoutError):
                    session.push(_failed(pending, 503, "cluster log unavailable: try again"))
                else:
                    if pending.reply is not None:
                        session.push(pending.reply)
                conflicted_since = None
                self.hub.handle_items(session, pending.rest, time.time())

    @contextlib.contextmanager
    def _holding(self, session: Session) -> Iterator[None]:
        """Keep `session`'s output back (others still flush) while it waits for storage or
        the log: a reply must not leave before the write it acknowledges is durable."""
        session.dirty.pop(session, None)
        self.hub.flush()
        try:
            yield
        finally:
            if session.outbox:
                session.dirty[session] = None

    def _deliver(self, ws: ServerConnection, session: Session, data: bytes) -> None:
        """Queue a frame without waiting; a connection whose queue overflows is closed (4008).

        Writes never block, so one reader that stops reading makes nobody else wait; its
        queue is bounded instead: past ``send_queue_bytes`` it gets a close frame, and
        nothing more is queued behind it.
        """
        if ws.protocol.state is not State.OPEN:
            return  # closing: a close frame is queued, and nothing may follow it
        broadcast([ws], data, text=True)
        queued = ws.transport.get_write_buffer_size()
        if queued > session.queue_high_water:
            session.queue_high_water = queued
        if queued > self.settings.limits.send_queue_bytes:
            log.warning("closing slow consumer %s (%d bytes queued)", session.conn_id, queued)
            self._close(ws, session, CLOSE_SLOW_CONSUMER, "slow consumer")

    def _close(self, ws: ServerConnection, session: Session, code: int, reason: str) -> None:
        """Close behind what is already queued, and from now on take nothing for `ws`.

        The close frame is written after the queued frames, so a client that reads late
        still receives all it was sent, then the code that says why. The protocol leaves
        the OPEN state here, so `_deliver` drops anything the hub pushes afterwards, and
        `Session.closing` makes the hub ignore the connection's further frames.
        `websockets`' own ``close()`` would wait for the queue to drain first, which a
        client that never reads never lets happen; `_reap` bounds the wait instead.
        """
        if session.closing is None:
            session.closing = (code, reason)
        if ws.protocol.state is not State.OPEN:
            return
        ws.protocol.send_close(code, reason)
        ws.send_data()
        self._spawn(self._reap(ws))

    async def _reap(self, ws: ServerConnection) -> None:
        """Cut a connection that has not completed the closing handshake in time.

        Aborting drops whatever it still had queued: the memory a reader that never
        reads can hold is bounded by the queue limit for at most the close timeout.
        """
        try:
            async with asyncio.timeout(ws.close_timeout or CLOSE_TIMEOUT):
                await ws.wait_closed()
        except TimeoutError:
            ws.transport.abort()

    def _auth_deadline(self, ws: ServerConnection, session: Session) -> None:
        if not session.authenticated:
            self._close(ws, session, CLOSE_POLICY, "authentication timeout")

    def _arm_expiry(self, ws: ServerConnection, session: Session, timers: _Timers) -> None:
        if timers.expiry is not None:
            timers.expiry.cancel()
            timers.expiry = None
        exp = session.claims.exp if session.claims else None
        if exp is None:
            return

        def expire() -> None:
            self._close_reasons[session.conn_id] = "expired"
            self._close(ws, session, CLOSE_TOKEN_EXPIRED, "token expired")

        timers.expiry = asyncio.get_running_loop().call_later(max(0.0, exp - time.time()), expire)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_tick(self) -> None:
        """Schedule a tick at the engine's next grace deadline, if earlier than the one set."""
        deadline = self.hub.engine.next_deadline()
        if deadline is None or (self._tick_at is not None and self._tick_at <= deadline):
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        delay = max(0.0, deadline - time.time())
        if self._tick_proposed is not None and deadline <= self._tick_proposed:
            delay = max(delay, TICK_RETRY)  # proposed already: wait for it to come back
        self._tick_at = deadline
        self._tick_handle = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        """The hub's timer: run `callback` after `delay` seconds, then flush what it pushed."""

        def run() -> None:
            self._timers.discard(handle)
            callback()
            self._after_work()

        handle = asyncio.get_running_loop().call_later(delay, run)
        self._timers.add(handle)

    def _on_tick(self) -> None:
        self._tick_proposed = self._tick_at
        self._tick_at = None
        self._tick_handle = None
        self.hub.tick(time.time())
        self._after_work()

    # -- used by the HTTP API --------------------------------------------------

    async def handle_http(self, token: str, body: bytes) -> tuple[int, Any]:
        """One POST /api/v1 request: (HTTP status, JSON body)."""
        status, payload, needs_sync = self.hub.handle_http(token, body, time.time())
        await self._settle_requests()
        self._after_work()
        if needs_sync:
            await self._commit()
        return status, payload

    async def _commit(self) -> None:
        """Wait until every write so far is durable, timed for /metrics."""
        started = time.perf_counter()
        await self.storage.sync()
        self.metrics.storage_commit.observe(time.perf_counter() - started)


def _failed(pending: Pending, code: int, text: str) -> dict[str, Any]:
    item = pending.item
    return error(code, text, cid=item.get("cid"), typ=item.get("typ"), act=item.get("act"))


def _origins(allowed: Sequence[str]) -> list[Origin | None] | None:
    return [Origin(origin) for origin in allowed] if allowed else None


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _remote(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _close_reason(ws: ServerConnection) -> str:
    """Why a socket ended, in presence-ledger terms."""
    sent = ws.protocol.close_sent
    if sent is not None and sent.reason == "keepalive ping timeout":
        return "timeout"
    return "closed"
