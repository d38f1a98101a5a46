"""The asyncio shell around the hub: sockets, timers and storage durability.

Everything the protocol decides lives in `server.protocol.hub`; this module only moves bytes
and time. Connections are `server.io.transport` protocols: a message is handed to the hub in
the loop's read callback, and after each unit of work the shell takes the frames the hub
has ready and writes them without blocking, so a slow reader never makes anyone else wait.
Most messages finish right there. One whose reply must wait (a write until storage says
it is durable, a cluster request until its change is back from the log) finishes in a
task; what that connection sends meanwhile is queued (`BACKLOG_LIMIT`) and handled
afterwards, in order.

Timers the shell owns: the authentication deadline, each token's expiry, and the hub's
next deadline (`Hub.next_deadline`: a grace period's end, a delayed push), which it answers
with a tick.

One unit of work, whatever its input, is one call into the hub and then the same pulls:

=====================================  ===============================================
input (where the shell gets it)        the call into the hub
=====================================  ===============================================
a ``Bearer`` frame (`received`)        `Hub.authenticate`
a message frame (`received`)           `Hub.handle_frame`
a connection gone (`_end`)             `Hub.close_session`
the hub's deadline (`_on_tick`)        `Hub.tick`
``POST /api/v1`` (`handle_http`)       `Hub.handle_http`
another node's operator request        `server.protocol.handlers.admin.answer_peer`
a change the cluster log applied       `Hub.apply` (`server.cluster.jetstream_log`)
=====================================  ===============================================

then, in this order:

1. what the request waits for, taken at once, before anyone else's work can take it
   (`Hub.take_pending`, `Hub.take_tickets`, in `_step`); while it waits, the session's
   output is held (`_hold`) and the rest of the connection's messages are queued;
2. the connection's own frames, written at once (`Hub.take_frames`, in `_done`);
3. the writes for storage (`Hub.take_writes`, in `_store`), always before a `sync`;
4. the hub's next deadline, for the one tick timer (`_arm_tick`);
5. once per turn of the event loop, shared by every unit of work in it (`_flush`): the
   connections to close (`Hub.take_condemned`), every other frame (`Hub.outgoing`), and one
   message of each stream whose connection can take it (`Hub.pump`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Coroutine, Iterable, Iterator
from http import HTTPStatus
from typing import Any

import orjson
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from hivectl.core.settings import Settings
from hivectl.core.tls import reload_certificate, server_context
from hivectl.core.tokens import KeyRing
from hivectl.core.wire import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOKEN_EXPIRED,
    error,
)
from server.cluster.jetstream_log import ClusterLog, Conflict, LogState, LogUnavailable
from server.cluster.peers import ClusterPeers
from server.cluster.status import ClusterStatus
from server.io.auth import keyring_from_settings
from server.io.console import routes as console
from server.io.deadlines import Deadlines, Entry, Moments
from server.io.http_api import REQUEST_TIMEOUT, api_refusal
from server.io.http_exchange import HttpAnswer, HttpRequest
from server.io.metrics import ServerMetrics
from server.io.reload import ReloadPlan, plan
from server.io.transport import Connection, Listener
from server.model.session import Session
from server.protocol.deferred import Deferred
from server.protocol.handlers.admin import answer_peer
from server.protocol.hub import Hub, Pending
from server.protocol.log_seam import Ticket
from server.stores.opening import open_storage
from server.stores.storage import MemoryStorage, Storage
from server.stores.writes import store

log = logging.getLogger("hivectl.server")

CONFLICT_TIMEOUT = 5.0
"""Seconds a write may keep being decided again (other writers kept landing first) before
it gets 409. A bound in time, not in attempts: each round among concurrent writers of one
entity lands one of them and takes milliseconds, so a write among many writers may lose
dozens of rounds and still be answered quickly."""

LISTEN_BACKLOG = 1024
"""Connections the kernel completes and queues while the loop is busy (asyncio's default is
100). In a reconnect storm a shorter queue overflows and the kernel drops SYNs, which
clients send again only after a second: ``hivectl bench connect`` measured a connect p99 of
1.1-1.4 s with 100 and 0.3-0.5 s with 1024 (5,000 providers, 200 in flight). Linux caps it
at ``net.core.somaxconn``."""

CLOSE_TIMEOUT = 10.0
"""Longest wait for the peer's answer to our close frame (the `websockets` default)."""
OPEN_TIMEOUT = 10.0
"""Longest wait for a new connection's HTTP request (the `websockets` default)."""
BACKLOG_LIMIT = 16
"""Messages a connection may send while one of its messages waits (for storage, for the
log) before its socket is no longer read. Reading on keeps its pongs coming in, so a long
wait in a cluster does not look like a dead peer; the limit keeps the memory bounded (the
queue size `websockets` uses for the same)."""


class _Client:
    """The shell's side of one WebSocket connection."""

    __slots__ = (
        "auth_timer",
        "backlog",
        "connection",
        "expiry_timer",
        "lost",
        "opened_at",
        "session",
    )

    session: Session

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.opened_at = time.monotonic()
        self.auth_timer: Entry | None = None
        self.expiry_timer: Entry | None = None
        self.backlog: deque[str | bytes] | None = None
        """Messages that arrived while one was waiting; None when none is waiting."""
        self.lost = False
        """The socket is gone; the session ends once the waiting message is done."""


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
        server = settings.server
        self.tls = server_context(server.tls_cert, server.tls_key) if server.tls_cert else None
        """TLS on both ports (`hivectl.core.tls`): TlsError here if the files are unusable."""
        self._boot = secrets.token_hex(3)
        self.hub = Hub(
            settings,
            self.keys,
            # Providers belong to this run of the node: a restarted node is a new member.
            node_id=f"{self.node_id}#{self._boot}" if clustered else self.node_id,
            started_at=time.time(),
        )
        self.hub.queued = _queued
        self.cluster: ClusterLog | None = None
        self.peers: ClusterPeers | None = None
        if clustered:
            self.cluster = ClusterLog(self.hub, settings.cluster, on_applied=self._after_work)
            self.hub.log = self.cluster
            self.peers = ClusterPeers(self.cluster, self.hub, self._answer_peer)
            self.hub.peers = self.peers
            self.hub.cluster = ClusterStatus(self.cluster, self.peers, self.hub)
        self.metrics = ServerMetrics(
            self.hub,
            self,
            ready=lambda: self.taking_writes,
            cluster_state=None if self.cluster is None else lambda: self.cluster_state,
        )
        self.ready = False
        self._conn_ids = itertools.count(1)
        self._listener: Listener | None = None
        self._stopped = asyncio.Event()
        self._api: Listener | None = None
        """``server.api_port``'s listener: plain HTTP only (``POST /api/v1``)."""
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_at: float | None = None
        self._close_reasons: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._presence_started: list[float] = []
        self._authenticating = Deadlines(settings.limits.auth_timeout)
        """Every connection's authentication deadline, on one loop timer (`server.io.deadlines`)."""
        self._expiries = Moments()
        """Every connection's token expiry, likewise."""
        self._full: dict[_Client, tuple[int, float]] = {}
        """Backed-up connections (`_backed_up`): bytes the kernel had taken, and when that
        last grew (`_check_stalls`)."""
        self._stall_timer: asyncio.TimerHandle | None = None
        self.closes: Counter[tuple[int, str]] = Counter()
        """Connections ended, by (close code, who closed first): `Connection.close_info`."""
        self.slow_consumers = 0
        self.http_requests: Counter[int] = Counter()
        """``POST /api/v1`` answers by HTTP status."""
        self.console_files = console.load_files()
        """The web console's files, read once (`server.io.console.routes`)."""

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        now = time.time()
        self.hub.load(self.storage.load(), now)
        self._store()
        if self.cluster is not None:
            await self.cluster.start()
        if self.peers is not None:
            await self.peers.start()
        limits = self.settings.limits
        self._listener = Listener(
            self,
            ping_interval=limits.ping_interval or None,
            ping_timeout=limits.ping_timeout or None,
            # A peer that missed its pong is cut at once (`server.io.transport`); one that
            # stops answering after our close frame gets at most this long.
            close_timeout=min(limits.ping_timeout, CLOSE_TIMEOUT) or CLOSE_TIMEOUT,
            open_timeout=OPEN_TIMEOUT,
            max_size=limits.max_message_size,
            compression=limits.compression == "deflate",
            origins=limits.allowed_origins,
            server_header="hivectl",
        )
        host, port, api_port = (
            self.settings.server.host,
            self.settings.server.port,
            self.settings.server.api_port,
        )
        with _naming_the_port(host, port, "WebSocket port ([server].port, --port)"):
            await self._listener.start(host, port, backlog=LISTEN_BACKLOG, tls=self.tls)
        if self.settings.server.api_enabled:
            self._api = Listener(
                self,
                ping_interval=None,
                ping_timeout=None,
                close_timeout=CLOSE_TIMEOUT,
                open_timeout=OPEN_TIMEOUT,
                max_size=limits.max_message_size,
                compression=False,
                origins=None,
                server_header="hivectl",
                http_only=True,
            )
            with _naming_the_port(host, api_port, "HTTP API port ([server].api_port, --api-port)"):
                await self._api.start(host, api_port, backlog=LISTEN_BACKLOG, tls=self.tls)
        self.ready = True
        log.info("serving %s", self.ws_url)

    async def close(self) -> None:
        """Graceful stop: refuse new work, close clients with 1001, make storage durable."""
        self.ready = False
        self._send_ready()
        if self._api is not None:
            await self._api.close(CLOSE_GOING_AWAY, "", self.settings.server.shutdown_timeout)
        if self._listener is not None:
            for session in self.hub.sessions.values():
                self._close_reasons.setdefault(session.conn_id, "shutdown")
            timeout = self.settings.server.shutdown_timeout
            await self._listener.close(CLOSE_GOING_AWAY, "server shutting down", timeout)
            if self._tasks:
                # Messages still waiting for storage or the log finish before storage closes.
                await asyncio.wait(self._tasks, timeout=timeout)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._authenticating.close()
        self._expiries.close()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        if self.cluster is not None:
            await self.cluster.close()
        self._store()
        await self.storage.sync()
        await self.storage.close()
        self._stopped.set()

    def reload(self, settings: Settings) -> ReloadPlan:
        """Run with `settings` (re-read from the config on SIGHUP) without dropping anyone.

        Everything is checked before anything changes: a key or TLS file that cannot be
        used raises ValueError and the server goes on as it was. The TLS certificate is
        read again even when its path is unchanged: a renewed certificate is usually
        written over the old one.
        """
        reload = plan(self.settings, settings)
        effective = reload.effective
        keys = keyring_from_settings(effective.auth)
        server = effective.server
        if self.tls is not None and server.tls_cert:
            server_context(server.tls_cert, server.tls_key)  # a scratch check first
            reload_certificate(self.tls, server.tls_cert, server.tls_key)
        self.settings = effective
        self.keys = keys
        self.hub.reconfigure(effective, keys)
        if self._listener is not None:
            limits = effective.limits
            self._listener.reconfigure(
                ping_interval=limits.ping_interval or None,
                ping_timeout=limits.ping_timeout or None,
                close_timeout=min(limits.ping_timeout, CLOSE_TIMEOUT) or CLOSE_TIMEOUT,
                max_size=limits.max_message_size,
                origins=limits.allowed_origins,
            )
        if self._api is not None:
            self._api.max_size = effective.limits.max_message_size
        return reload

    async def serve_forever(self) -> None:
        """Return once `close` has finished."""
        await self._stopped.wait()

    @property
    def taking_writes(self) -> bool:
        """Ready, and in a cluster following the stream: what ``/readyz`` answers."""
        return self.ready and (self.cluster is None or self.cluster.writable)

    @property
    def cluster_state(self) -> LogState:
        assert self.cluster is not None
        return self.cluster.state

    @property
    def port(self) -> int:
        assert self._listener is not None
        return self._listener.port

    @property
    def api_port(self) -> int | None:
        return self._api.port if self._api is not None else None

    @property
    def ws_url(self) -> str:
        scheme = "ws" if self.tls is None else "wss"
        return f"{scheme}://{_url_host(self.settings.server.host)}:{self.port}/ws"

    @property
    def api_url(self) -> str | None:
        port = self.api_port
        if port is None:
            return None
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{_url_host(self.settings.server.host)}:{port}/api/v1"

    # -- HTTP on the WebSocket port --------------------------------------------

    def process_request(self, protocol: ServerProtocol, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return protocol.reject(HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            body, content_type = self.metrics.exposition(request.headers.get("Accept"))
            response = protocol.reject(HTTPStatus.OK, body.decode())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = content_type
            return response
        if path == "/readyz":
            if self.taking_writes:
                return protocol.reject(HTTPStatus.OK, "ready\n")
            return protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if self.settings.console.enabled and console.is_console(path):
            return self._console(protocol, path)
        if not self.ready:
            return protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if len(self.hub.sessions) >= self.settings.limits.max_connections:
            return protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE, "server full\n")
        return None

    async def answer_http(self, request: HttpRequest) -> HttpAnswer:
        """``POST /api/v1`` on the WebSocket port and on ``server.api_port`` (protocol.md §1)."""
        if request.method != "POST":
            self._http_answered(HTTPStatus.METHOD_NOT_ALLOWED)
            body = orjson.dumps({"err": "method not allowed", "erc": 405})
            return HttpAnswer(HTTPStatus.METHOD_NOT_ALLOWED, body, headers=[("Allow", "GET, POST")])
        refusal = api_refusal(
            request.path,
            len(request.body),
            request.headers.get("authorization", ""),
            self.settings.limits.max_message_size,
        )
        if isinstance(refusal, str):
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, payload = await self.handle_http(refusal, request.body)
            except TimeoutError:
                status, payload = HTTPStatus.SERVICE_UNAVAILABLE, {"err": "timeout", "erc": 503}
        else:
            status, payload = refusal
        self._http_answered(status)
        return HttpAnswer(status, orjson.dumps(payload))

    def _console(self, protocol: ServerProtocol, path: str) -> Response:
        found = console.answer(path, self.console_files, self.settings.console.tile_url)
        response = protocol.reject(found.status, "")
        response.body = found.body
        del response.headers["Content-Length"], response.headers["Content-Type"]
        response.headers["Content-Length"] = str(len(found.body))
        response.headers["Content-Type"] = found.content_type
        for name, value in found.headers:
            response.headers[name] = value
        return response

    # -- connections -----------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        conn_id = f"{self.node_id}:{self._boot}:{next(self._conn_ids)}"
        client = _Client(connection)
        client.session = self.hub.new_session(conn_id, connection.remote, time.time())
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "connection %s opened from %s",
                conn_id,
                connection.remote,
                extra={"event": "opened", "conn": conn_id, "remote": connection.remote},
            )
        client.session.handle = client
        connection.user = client
        auth_timeout = self.settings.limits.auth_timeout
        if auth_timeout != self._authenticating.delay:
            self._authenticating = Deadlines(auth_timeout)  # the old one runs out by itself
        client.auth_timer = self._authenticating.add(self._auth_deadline, client)

    def received(self, connection: Connection, message: str | bytes) -> None:
        client: _Client = connection.user
        if client.backlog is not None:
            client.backlog.append(message)
            if len(client.backlog) == BACKLOG_LIMIT:
                connection.pause_reading()
            return
        started, events = time.perf_counter(), self.hub.presence_events
        try:
            waiting = self._step(client, message)
        except Exception:
            self._crashed(client)
            return
        if waiting is None:
            self._done(client, started, events)
            return
        client.backlog = deque()
        self._spawn(self._wait(client, waiting, started, events))

    def closed(self, connection: Connection) -> None:
        client: _Client = connection.user
        client.lost = True
        if client.backlog is None:
            self._end(client)

    def writable(self, connection: Connection) -> None:
        if self.hub.streaming:
            self._flush_soon()

    def _step(self, client: _Client, message: str | bytes) -> Coroutine[Any, Any, None] | None:
        """Hand one message to the hub; what is left to wait for before its replies go.

        Whatever the waiting part needs is taken here, before anything else runs: the hub's
        pending request and its tickets are the hub's, not this connection's, and the next
        message from anyone would take them.
        """
        session = client.session
        now = time.time()
        registration: list[Ticket] | None = None
        durable = False
        if isinstance(message, str) and message.startswith("Bearer "):
            if self.hub.authenticate(session, message[7:].strip(), now):
                self._arm_expiry(client)
            registration = self.hub.take_tickets() or None
        else:
            durable = self.hub.handle_frame(session, message, now)
        request = self.hub.take_pending()
        if registration is None and not durable and request is None:
            return None
        self._hold(session)
        return self._finish(session, registration, durable, request)

    async def _finish(
        self,
        session: Session,
        registration: list[Ticket] | None,
        durable: bool,
        request: Pending | None,
    ) -> None:
        """The waiting part of one message; `session`'s output is held until it is done.

        An ``aut`` reply waits until the provider registration is applied; if the log
        cannot take it now, the reply goes anyway: the cluster log registers the provider
        once NATS takes writes again (`ClusterLog` reconciles providers). A reply to a
        write waits until storage has it.
        """
        if registration is not None:
            assert self.cluster is not None
            try:
                await self.cluster.settle(registration)
            except (Conflict, LogUnavailable, TimeoutError):
                log.warning("provider %s not registered yet: will retry", session.conn_id)
        if durable:
            await self._commit()
        if request is None:
            self._release(session)
        else:
            await self._settle_requests(request)

    async def _wait(
        self,
        client: _Client,
        waiting: Coroutine[Any, Any, None],
        started: float,
        events: int,
    ) -> None:
        """Finish the message that must wait, then those its connection sent meanwhile."""
        backlog = client.backlog
        assert backlog is not None
        try:
            await waiting
            self._done(client, started, events)
            while backlog:
                started, events = time.perf_counter(), self.hub.presence_events
                more = self._step(client, backlog.popleft())
                if more is not None:
                    await more
                self._done(client, started, events)
        except Exception:
            self._crashed(client)
        finally:
            client.backlog = None
            if client.lost:
                self._end(client)
            else:
                client.connection.resume_reading()

    def _done(self, client: _Client, started: float, events: int) -> None:
        """The end of a message's work: its own replies leave now, pushes to others soon."""
        for frame in self.hub.take_frames(client.session):
            self._deliver(client, frame)
        self._after_work(started, events)
        if client.session.closing is not None:
            self._close(client, *client.session.closing)

    def _crashed(self, client: _Client) -> None:
        """A bug, or storage failing: this connection ends (1011); the server goes on."""
        log.exception("handling a message from %s failed", client.session.conn_id)
        self._close(client, CLOSE_INTERNAL_ERROR, "internal error")

    def _end(self, client: _Client) -> None:
        """The connection is gone: its session ends and its presence with it."""
        if client.auth_timer is not None:
            Deadlines.cancel(client.auth_timer)
        if client.expiry_timer is not None:
            self._expiries.cancel(client.expiry_timer)
        session = client.session
        reason = self._close_reasons.pop(session.conn_id, None) or (
            "timeout" if client.connection.timed_out else "closed"
        )
        code, text, by = client.connection.close_info
        self.closes[code, by] += 1
        if log.isEnabledFor(logging.INFO):
            # What log.info(..., extra=fields) does, at two thirds of the cost for a line
            # logged per connection: makeRecord checks each `extra` key against the record's
            # __dict__, which turns its attributes into a dict; set one by one they stay in
            # place (a text close line: 73,000 instructions through extra=, 48,000 so).
            # Like `hivectl serve`'s logging, the record does not name its caller.
            seconds = round(time.monotonic() - client.opened_at, 3)
            record: Any = log.makeRecord(
                log.name,
                logging.INFO,
                "(unknown file)",
                0,
                "connection %s closed by %s: %d %s (%s after %.1f s, sub %s)",
                (session.conn_id, by, code, text, reason, seconds, session.sub or "-"),
                None,
            )
            record.event = "closed"
            record.conn = session.conn_id
            record.code = code
            record.close_reason = text
            record.by = by
            record.presence_reason = reason
            record.duration_s = seconds
            record.sub = session.sub
            record.remote = session.remote
            log.handle(record)
        started, events = time.perf_counter(), self.hub.presence_events
        self.hub.close_session(session, reason, time.time())
        self._after_work(started, events)
        # The client and its session refer to each other: unlinked, the connection's
        # objects are freed at once by reference counting, not left for the cyclic
        # collector (`server.io.transport.Connection.connection_lost`).
        session.handle = None

    def _after_work(self, started: float | None = None, events: int = 0) -> None:
        """After a unit of work: hand storage what it wrote, and flush what it pushed, soon.

        Every unit of work in one turn of the event loop shares one flush at its end, so a
        connection receives what those units pushed to it as one frame: under load there
        are more units per turn, hence fewer, fuller frames (``hivectl bench fanout``).
        A unit that began at `started` and changed some presence (the hub's count moved
        past `events`) is timed until that flush, for /metrics.
        """
        self._store()
        # Changes appended outside a request (closes, ticks) are not waited for.
        self.hub.take_tickets()
        self._arm_tick()
        if started is not None and self.hub.presence_events != events:
            self._presence_started.append(started)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _send_ready(self) -> None:
        """Write every frame the hub has ready (sessions whose connection is gone have
        none: the hub dropped their output when they ended)."""
        for session, frame in self.hub.outgoing():
            self._deliver(session.handle, frame)

    def _flush(self) -> None:
        """Send what the turn's work pushed, then one piece of each stream that can go.

        Streams (a large initial state) advance one message per connection per turn while
        its connection takes them, so many of them share the loop with everything else.
        """
        self._flush_scheduled = False
        for session in self.hub.take_condemned():
            if session.handle is not None and session.closing is not None:
                self._close(session.handle, *session.closing)
        self._send_ready()
        if self.hub.streaming:
            more = self.hub.pump(_can_take)
            self._send_ready()
            if more:
                self._flush_soon()
        if self._presence_started:
            self.metrics.presence_flushed(self._presence_started)
            self._presence_started = []

    # -- cluster mode: requests wait for their changes to come back from the log --

    async def _settle_requests(self, pending: Pending) -> None:
        """Finish the request waiting for its change, then the rest of its frame; repeat
        while that leaves another request waiting.

        Called with the request's session held (`_hold`); returns with it released.
        """
        assert self.cluster is not None
        conflicted_since: float | None = None
        while True:
            session = pending.session
            retry = False
            try:
                await self.cluster.settle(pending.tickets)
            except Conflict:
                if conflicted_since is None:
                    conflicted_since = time.monotonic()
                if time.monotonic() - conflicted_since < CONFLICT_TIMEOUT:
                    self.hub.decide_again(pending, time.time())
                    retry = True
                else:
                    session.push(_failed(pending, 409, "conflicting writes: try again"))
            except (LogUnavailable, TimeoutError):
                session.push(_failed(pending, 503, "cluster log unavailable: try again"))
            else:
                reply = pending.reply
                if isinstance(reply, Deferred):
                    reply = await _gathered(pending, reply)
                if reply is not None:
                    session.push(reply)
            self._release(session)
            if not retry:
                conflicted_since = None
                self.hub.handle_items(session, pending.rest, time.time())
            request = self.hub.take_pending()
            if request is None:
                return
            pending = request
            self._hold(pending.session)

    def _hold(self, session: Session) -> None:
        """Keep `session`'s output back (others still flush) while it waits for storage or
        the log: a reply must not leave before the write it acknowledges is durable."""
        self.hub.outbound.hold(session)

    def _release(self, session: Session) -> None:
        """Let `session`'s output go with the next flush. Only that: the cluster's unsettled
        proposals at this point belong to the request about to be settled."""
        if self.hub.outbound.release(session):
            self._flush_soon()

    def _deliver(self, client: _Client, data: bytes) -> None:
        """Queue a frame without waiting; a reader that cannot keep up is closed (4008).

        Writes never block, so one reader that stops reading makes nobody else wait. What
        it may cost is bounded in bytes and in time:

        * past ``send_queue_max_bytes`` queued it gets a close frame at once, and nothing
          more is queued behind it;
        * past ``send_queue_bytes`` queued, or with a stream waiting (`Session.streams`)
          behind a full buffer, it must keep reading: one that takes nothing for
          ``send_stall_timeout`` is closed (`_check_stalls`).

        So a steady reader is never cut for the size of one burst or of an initial state,
        which it takes at its own pace, and one that stops is cut within the timeout.
        """
        connection = client.connection
        if not connection.open:
            return  # closing: a close frame is queued, and nothing may follow it
        connection.send_text(data)
        queued = connection.queued
        session = client.session
        if queued > session.queue_high_water:
            session.queue_high_water = queued
        limits = self.settings.limits
        if queued > limits.send_queue_max_bytes:
            self._slow_consumer(client, f"{queued} bytes queued")
        elif client not in self._full and _backed_up(client, limits.send_queue_bytes):
            self._full[client] = (connection.taken, time.monotonic())
            if self._stall_timer is None:
                self._arm_stall_check()

    def _slow_consumer(self, client: _Client, why: str) -> None:
        self.slow_consumers += 1
        session = client.session
        log.warning(
            "closing slow consumer %s (%s, sub %s)",
            session.conn_id,
            why,
            session.sub or "-",
            extra={
                "event": "slow_consumer",
                "conn": session.conn_id,
                "why": why,
                "sub": session.sub,
                "remote": session.remote,
            },
        )
        self._close(client, CLOSE_SLOW_CONSUMER, "slow consumer")

    def _arm_stall_check(self) -> None:
        interval = min(1.0, self.settings.limits.send_stall_timeout / 4)
        self._stall_timer = asyncio.get_running_loop().call_later(interval, self._check_stalls)

    def _check_stalls(self) -> None:
        """Close the backed-up connections that took nothing for ``send_stall_timeout``."""
        self._stall_timer = None
        now = time.monotonic()
        limits = self.settings.limits
        for client, (taken, since) in list(self._full.items()):
            connection = client.connection
            if not connection.open or not _backed_up(client, limits.send_queue_bytes):
                del self._full[client]
            elif connection.taken > taken:
                self._full[client] = (connection.taken, now)
            elif now - since >= limits.send_stall_timeout:
                del self._full[client]
                self._slow_consumer(client, f"read nothing for {now - since:.1f} s")
        if self._full:
            self._arm_stall_check()
        self._flush_soon()

    def _close(self, client: _Client, code: int, reason: str) -> None:
        """Close behind what is already queued, and from now on take nothing for it.

        The close frame is written after the queued frames, so a client that reads late
        still receives all it was sent, then the code that says why. The connection leaves
        the OPEN state here, so `_deliver` drops anything the hub pushes afterwards, and
        `Session.closing` makes the hub ignore the connection's further frames. A peer
        that does not complete the closing handshake is cut after the close timeout, so
        the memory a reader that never reads can hold is bounded by the queue limit for
        that long.
        """
        session = client.session
        if session.closing is None:
            session.closing = (code, reason)
        for frame in self.hub.take_frames(session):
            self._deliver(client, frame)
        client.connection.close(code, reason)

    def _auth_deadline(self, client: _Client) -> None:
        if not client.session.authenticated:
            self._close(client, CLOSE_POLICY, "authentication timeout")

    def _arm_expiry(self, client: _Client) -> None:
        if client.expiry_timer is not None:
            self._expiries.cancel(client.expiry_timer)
            client.expiry_timer = None
        claims = client.session.claims
        exp = claims.exp if claims else None
        if exp is None:
            return
        client.expiry_timer = self._expiries.add(max(0.0, exp - time.time()), self._expire, client)

    def _expire(self, client: _Client) -> None:
        self._close_reasons[client.session.conn_id] = "expired"
        self._close(client, CLOSE_TOKEN_EXPIRED, "token expired")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_tick(self) -> None:
        """Schedule a tick at the hub's next deadline, if earlier than the one set."""
        deadline = self.hub.next_deadline()
        if deadline is None or (self._tick_at is not None and self._tick_at <= deadline):
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_at = deadline
        delay = max(0.0, deadline - time.time())
        self._tick_handle = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_at = None
        self._tick_handle = None
        self.hub.tick(time.time())
        self._after_work()

    # -- used by the HTTP API --------------------------------------------------

    def queued_bytes(self) -> Iterable[int]:
        """Bytes waiting in each open connection's transport (`ShellFigures`)."""
        for session in self.hub.sessions.values():
            handle = session.handle
            if isinstance(handle, _Client):
                yield handle.connection.queued

    def cluster_lag(self) -> int | None:
        return None if self.cluster is None else self.cluster.lag

    def _http_answered(self, status: int) -> None:
        self.http_requests[status] += 1

    async def handle_http(self, token: str, body: bytes) -> tuple[int, Any]:
        """One POST /api/v1 request: (HTTP status, JSON body)."""
        status, payload, needs_sync = self.hub.handle_http(token, body, time.time())
        request = self.hub.take_pending()
        if request is not None:
            self._hold(request.session)
            await self._settle_requests(request)
        self._after_work()
        if needs_sync:
            await self._commit()
        return status, payload

    def _answer_peer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another node's operator request: this node's part, then flush what it did."""
        answer = answer_peer(self.hub, request, time.time())
        self._after_work()
        return answer

    async def _commit(self) -> None:
        """Wait until every write so far is durable, timed for /metrics."""
        self._store()
        started = time.perf_counter()
        await self.storage.sync()
        self.metrics.storage_commit.observe(time.perf_counter() - started)

    def _store(self) -> None:
        """Hand storage the writes the hub appended since the last call (`server.stores.writes`).

        Called after every entry into the hub (`_after_work`, `start`) and before every
        `Storage.sync` (`_commit`, `close`). `sync` covers only the writes storage was told,
        and a reply that acknowledges a write waits for `_commit`, which stores what the hub
        appended before it syncs: so an acknowledged write is durable.
        """
        if self.hub.writes:
            store(self.storage, self.hub.take_writes())


async def _gathered(pending: Pending, deferred: Deferred) -> dict[str, Any] | None:
    """The reply of a request that asked the other nodes (None: the request had no cid)."""
    try:
        reply = await deferred.reply()
    except Exception:
        log.exception("asking the other nodes failed")
        reply = _failed(pending, 500, "internal error")
    return reply if pending.item.get("cid") is not None else None


def _queued(session: Session) -> int:
    """Bytes waiting to be sent to a session's connection (0 for HTTP requests)."""
    client: _Client | None = session.handle
    return 0 if client is None else client.connection.queued


def _can_take(session: Session) -> bool:
    connection: Connection = session.handle.connection
    return connection.open and not connection.write_paused


def _backed_up(client: _Client, budget: int) -> bool:
    """Whether the connection has more waiting than it may leave unread for long."""
    connection = client.connection
    return connection.queued > budget or (
        connection.write_paused and client.session.streams is not None
    )


def _failed(pending: Pending, code: int, text: str) -> dict[str, Any]:
    item = pending.item
    return error(code, text, cid=item.get("cid"), typ=item.get("typ"), act=item.get("act"))


@contextlib.contextmanager
def _naming_the_port(host: str, port: int, what: str) -> Iterator[None]:
    """An address in use (or not ours to take) says which of the two ports, and the flag and
    setting that choose it: the OS error alone does not tell them apart."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot listen on {host}:{port}, the {what}: {reason}") from exc


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
