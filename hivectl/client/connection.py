"""The client's connection: one WebSocket, requests matched to replies by ``cid``.

The connection owns the socket and a reader task. Requests are sent as one-message
frames and wait for the reply with their ``cid``; pushes (pub/sub events,
subscription updates) go to the handlers registered by the higher layers.

When the socket closes unexpectedly and ``reconnect`` is on, the connection dials
again after a jittered exponential backoff (`hivectl.client.backoff`: it grows with every
attempt and is reset only by a connection that held for ``stable_after`` seconds, so a
server that closes a client right after accepting it is not redialled in a tight loop),
re-sends ``Bearer`` and then calls every registered restore hook (the pub/sub and
subscription layers re-create their subscriptions there, with the same ids). Requests in
flight when the socket dropped fail with `ConnectionLost`; callers decide whether to retry.

Every loss (a close by the server, a socket that died, a reconnect dial that failed) is
told: `Connection.last_close` holds it as a `CloseInfo` (the close code and reason, how
long the connection had been up, the wait before the next attempt), callbacks registered
with `Connection.on_close` get it, and it is logged -- a warning when a reconnect follows,
so a close loop is never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hivectl.client.backoff import Backoff
from hivectl.client.errors import AuthenticationError, ConnectionLost, HivekitError
from hivectl.core.wire import (
    bearer,
    is_authentication,
    is_publication,
    is_reply,
    is_subscription_push,
)

log = logging.getLogger("hivectl.client")

PushHandler = Callable[[dict[str, Any]], None]
RestoreHook = Callable[[], Awaitable[None]]
StatusCallback = Callable[[str], Any]
CloseCallback = Callable[["CloseInfo"], Any]


@dataclass(frozen=True)
class DialTimings:
    """`time.monotonic` marks of the last successful dial, for tools that measure latency:
    dialling began, the WebSocket was open (the ``Bearer`` frame leaves right after), the
    authentication reply arrived."""

    started: float
    opened: float
    authenticated: float


@dataclass(frozen=True)
class CloseInfo:
    """Why the link went down, and what happens next.

    ``code`` and ``reason`` are the server's close frame (``code`` None when there was
    none: the socket died, or a dial failed before a WebSocket existed, and ``reason``
    then says what failed). ``uptime_s`` is how long the connection had been
    authenticated (None when a reconnect dial failed). ``retry_in_s`` is the wait before
    the next attempt, ``attempt`` that attempt's number since the last connection that
    held (None and 0 when no reconnect follows).
    """

    code: int | None
    reason: str
    uptime_s: float | None
    retry_in_s: float | None
    attempt: int

    @property
    def cause(self) -> str:
        """``4008 slow consumer``, ``1006 (no reason)`` or what failed."""
        if self.code is None:
            return self.reason or "connection lost"
        return f"{self.code} {self.reason or '(no reason)'}"

    def __str__(self) -> str:
        text = f"closed: {self.cause}"
        if self.uptime_s is None:
            text = f"reconnect failed: {self.cause}"
        else:
            text += f" after {self.uptime_s:.1f}s"
        if self.retry_in_s is not None:
            text += f"; reconnect {self.attempt} in {self.retry_in_s:.1f}s"
        return text


class Connection:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        reconnect: bool = True,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
        stable_after: float = 10.0,
        jitter: Callable[[], float] = random.random,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        max_size: int = 16 * 1024 * 1024,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`reconnect_delay` and `max_reconnect_delay` are the backoff's base and cap,
        `stable_after` how long a connection must hold to reset it; `jitter` draws the
        uniform [0, 1) numbers that spread the waits (a seeded one makes them repeatable).
        `tls` verifies a ``wss://`` server (`hivectl.core.tls.client_context` for a private
        CA); without it, the system's trust store does."""
        self.url = url
        self.tls = tls
        self.token = token
        self.reconnect = reconnect
        self.backoff = Backoff(reconnect_delay, max_reconnect_delay, stable_after)
        self._jitter = jitter
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.status = "disconnected"
        self.server_info: dict[str, Any] = {}
        self.reconnects = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_close: CloseInfo | None = None
        self.dial_timings: DialTimings | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._auth_waiter: asyncio.Future[dict[str, Any]] | None = None
        self._cids = itertools.count(1)
        self._push_handlers: dict[str, PushHandler] = {}
        self._restore_hooks: list[RestoreHook] = []
        self._status_callbacks: list[StatusCallback] = []
        self._close_callbacks: list[CloseCallback] = []
        self._closing = False
        self._connected = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Connect and authenticate; raises AuthenticationError or OSError-like failures."""
        self._closing = False
        await self._dial()

    async def close(self) -> None:
        self._closing = True
        reader, self._reader = self._reader, None
        if self._ws is not None:
            await self._ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._fail_pending(ConnectionLost("connection closed by the client"))
        self._set_status("disconnected")

    async def abort(self) -> None:
        """Drop the socket without a close frame (what a phone losing its network does)."""
        self._closing = True
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()
        await self.close()

    async def wait_connected(self) -> None:
        """Wait until the connection is up (again); wrap in asyncio.timeout to bound it."""
        await self._connected.wait()

    async def _dial(self) -> None:
        started = time.monotonic()
        tls: dict[str, Any] = {"ssl": self.tls} if self.tls is not None else {}
        ws = await connect(
            self.url,
            **tls,
            proxy=None,
            open_timeout=self.open_timeout,
            max_size=self.max_size,
            compression=None,
        )
        opened = time.monotonic()
        try:
            reply = await self._authenticate_socket(ws, self.token)
        except BaseException:
            await ws.close()
            raise
        self.dial_timings = DialTimings(started, opened, time.monotonic())
        self._ws = ws
        self.server_info = reply.get("dat") or {}
        self._reader = asyncio.create_task(self._read_loop(ws), name="hivekit-reader")
        self._set_status("connected")

    async def _authenticate_socket(self, ws: ClientConnection, token: str) -> dict[str, Any]:
        await ws.send(bearer(token))
        async with asyncio.timeout(self.request_timeout):
            while True:
                frame = await ws.recv()
                for message in _messages(frame):
                    if is_authentication(message):
                        return _auth_result(message)

    async def authenticate(self, token: str) -> None:
        """Re-authenticate the live connection with a new token (a token refresh)."""
        ws = self._require_ws()
        loop = asyncio.get_running_loop()
        self._auth_waiter = loop.create_future()
        await ws.send(bearer(token))
        async with asyncio.timeout(self.request_timeout):
            message = await self._auth_waiter
        _auth_result(message)
        self.token = token

    # -- requests --------------------------------------------------------------

    async def request(self, message: dict[str, Any]) -> Any:
        """Send one request and return the reply's ``dat``; raises HivekitError on ``err``."""
        ws = self._require_ws()
        cid = f"c{next(self._cids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = future
        try:
            await ws.send(orjson.dumps([{**message, "cid": cid}]).decode())
            async with asyncio.timeout(self.request_timeout):
                return await future
        except ConnectionClosed:
            raise ConnectionLost("connection lost while sending") from None
        finally:
            self._pending.pop(cid, None)
            _settle(future)

    async def request_batch(self, messages: Sequence[dict[str, Any]]) -> list[Any]:
        """Send requests in one frame and wait for every reply. Each entry of the result is
        that request's reply ``dat``, or the `HivekitError` it failed with: returned, not
        raised, so that one refused message (a 429) does not hide what became of the others.
        The server handles a frame's messages in order, so this is also how a gateway sends
        many objects' updates at the cost of one frame. Raises `ConnectionLost` when the
        frame cannot be sent and TimeoutError when the replies do not all come in time."""
        ws = self._require_ws()
        loop = asyncio.get_running_loop()
        cids = [f"c{next(self._cids)}" for _ in messages]
        futures: list[asyncio.Future[Any]] = []
        for cid in cids:
            future: asyncio.Future[Any] = loop.create_future()
            self._pending[cid] = future
            futures.append(future)
        frame = [{**message, "cid": cid} for message, cid in zip(messages, cids, strict=True)]
        try:
            await ws.send(orjson.dumps(frame).decode())
            async with asyncio.timeout(self.request_timeout):
                return await asyncio.gather(*futures, return_exceptions=True)
        except ConnectionClosed:
            raise ConnectionLost("connection lost while sending") from None
        finally:
            for cid, future in zip(cids, futures, strict=True):
                self._pending.pop(cid, None)
                _settle(future)

    async def send(self, messages: list[dict[str, Any]]) -> None:
        """Send messages that get no reply (``set``) in one frame."""
        ws = self._require_ws()
        try:
            await ws.send(orjson.dumps(messages).decode())
        except ConnectionClosed:
            raise ConnectionLost("connection lost while sending") from None

    async def send_raw(self, text: str) -> None:
        """Send a frame as given (for tools that speak the protocol themselves)."""
        await self._require_ws().send(text)

    def _require_ws(self) -> ClientConnection:
        if self._ws is None or self.status != "connected":
            raise ConnectionLost("not connected")
        return self._ws

    # -- pushes and hooks ------------------------------------------------------

    def on_push(self, kind: str, handler: PushHandler) -> None:
        """Route pushes of one kind (``pub`` or ``sub``) to a handler."""
        self._push_handlers[kind] = handler

    def on_restore(self, hook: RestoreHook) -> None:
        self._restore_hooks.append(hook)

    def on_status(self, callback: StatusCallback) -> None:
        self._status_callbacks.append(callback)

    def on_close(self, callback: CloseCallback) -> None:
        """Called with a `CloseInfo` for every loss the client did not ask for."""
        self._close_callbacks.append(callback)

    def _set_status(self, status: str) -> None:
        if status == self.status:
            return
        self.status = status
        if status == "connected":
            self._connected.set()
        else:
            self._connected.clear()
        for callback in list(self._status_callbacks):
            call_soon(callback, status)

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                for message in _messages(frame):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
        if not self._closing:
            self._set_status("disconnected")
            self._fail_pending(ConnectionLost(f"connection closed ({self.close_code})"))
            timings = self.dial_timings
            uptime = time.monotonic() - timings.authenticated if timings is not None else 0.0
            self.backoff.connection_lost(uptime)
            if self.reconnect:
                self._reconnect_task = asyncio.create_task(
                    self._reconnect_loop(self.close_code, self.close_reason, uptime),
                    name="hivekit-reconnect",
                )
            else:
                self._report(CloseInfo(self.close_code, self.close_reason, uptime, None, 0))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if is_reply(message):
            self._answer(message)
            return
        if is_publication(message):
            handler = self._push_handlers.get("pub")
        elif is_subscription_push(message):
            handler = self._push_handlers.get("sub")
        else:
            return
        if handler is not None:
            try:
                handler(message)
            except Exception:
                log.exception("push handler failed")

    def _answer(self, message: dict[str, Any]) -> None:
        """A reply goes to the request waiting for its ``cid``, or to the ``Bearer`` frame
        it answers; an error nobody waits for (a failed ``set``) is logged."""
        cid = message.get("cid")
        if cid is not None and cid in self._pending:
            future = self._pending.pop(cid)
            if future.done():
                return
            if message.get("res") == "err":
                future.set_exception(HivekitError(message.get("erc", 0), message.get("err", "")))
            else:
                future.set_result(message.get("dat"))
            return
        if is_authentication(message):
            waiter = self._auth_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
            return
        if message.get("res") == "err":
            log.warning("server error: %s (%s)", message.get("err"), message.get("erc"))

    async def _reconnect_loop(self, code: int | None, reason: str, uptime: float | None) -> None:
        while not self._closing:
            delay = self.backoff.next_delay(self._jitter())
            self._report(CloseInfo(code, reason, uptime, delay, self.backoff.attempt))
            self._set_status("reconnecting")
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._dial()
            except AuthenticationError:
                log.error("re-authentication refused; giving up reconnecting")
                self._set_status("disconnected")
                return
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                code, reason, uptime = _dial_failure(exc)
                self.backoff.connection_lost(None)
                continue
            self.reconnects += 1
            for hook in list(self._restore_hooks):
                try:
                    await hook()
                except HivekitError:
                    log.exception("restoring a subscription failed")
            return

    def _report(self, info: CloseInfo) -> None:
        self.last_close = info
        if info.retry_in_s is None:
            log.info("%s %s", self.url, info)
        else:
            log.warning("%s %s", self.url, info)
        for callback in list(self._close_callbacks):
            call_soon(callback, info)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)


def _messages(frame: str | bytes) -> list[dict[str, Any]]:
    try:
        value = orjson.loads(frame)
    except orjson.JSONDecodeError:
        log.warning("server sent a frame that is not JSON")
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _settle(future: asyncio.Future[Any]) -> None:
    """Leave no outcome of a future unread: when the frame could not be sent, the loss of
    the connection may already have failed its futures, and asyncio would log each
    unread one ("Future exception was never retrieved"), thousands for one batch."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


def _dial_failure(exc: BaseException) -> tuple[int | None, str, None]:
    """A failed dial as (close code, reason, no uptime) for its `CloseInfo`."""
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason, None
    if isinstance(exc, InvalidStatus):
        return None, f"HTTP {exc.response.status_code}", None
    if isinstance(exc, OSError):
        return None, exc.strerror or str(exc) or type(exc).__name__, None
    if isinstance(exc, TimeoutError):
        return None, "timed out", None
    return None, str(exc) or type(exc).__name__, None


def _auth_result(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("res") != "suc":
        raise AuthenticationError(message.get("erc", 401), message.get("err", "unauthenticated"))
    return message


def call_soon(callback: Callable[..., Any], *args: Any) -> None:
    """Run a user callback; coroutine callbacks become tasks, errors are logged."""
    try:
        result = callback(*args)
    except Exception:
        log.exception("callback failed")
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _callback_tasks.add(task)
        task.add_done_callback(_callback_tasks.discard)


_callback_tasks: set[asyncio.Future[Any]] = set()
"""Keeps coroutine callbacks alive until they finish (the loop holds only weak refs)."""
