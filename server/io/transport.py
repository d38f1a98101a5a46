"""WebSocket connections as plain asyncio protocols over `websockets`' sans-I/O core.

`websockets.asyncio.server` gives every connection a handler task, a keepalive task, a
message queue and a handful of futures. A presence server holds thousands of mostly idle
connections, and that machinery was most of its memory and much of its connect cost
(``hivectl bench connect``: about 20 KiB per idle provider, of which the bare `websockets`
baseline alone took 16). Here each connection is one `asyncio.Protocol` driving a
`websockets.server.ServerProtocol`: bytes in, events out, bytes back to the transport,
all in the loop's read callback. The protocol core (HTTP handshake, framing, masking,
control frames, the closing handshake, extensions) stays `websockets`'; this module only
moves bytes and time:

* one keepalive sweep for all connections instead of a task each: every
  ``ping_interval`` it pings every open connection with no ping outstanding, and
  ``ping_timeout`` later it fails (1011 "keepalive ping timeout") those still silent;
* timers, not tasks, for the opening handshake (``open_timeout``) and the closing
  handshake (``close_timeout``): a peer that does not finish either is cut;
* the server half-closes the TCP connection once the closing handshake is done (RFC 6455
  §7.1.1) and waits ``close_timeout`` for the peer to close its side; after a keepalive
  failure it closes at once: a peer that missed its pong will not answer either;
* messages reach the `Handler` whole (fragments are joined), text decoded; invalid
  UTF-8 fails the connection with 1007, as `websockets` does. Data frames that arrive
  before the peer's close frame are delivered even when the close frame came in the same
  read (RFC 6455 §5.5.1: the close frame is the last one; what precedes it counts), so a
  client's last ``set`` before it leaves is applied; only the replies may find it gone;
* a peer that missed its pong is cut at once (`Connection.check_pong`): a graceful close
  would wait behind whatever is queued for a peer that reads nothing.

Writes never wait: `Connection.send_text` queues in the transport, whose buffer size is
the backpressure signal (`Connection.queued`); `Connection.taken` counts the bytes the
kernel has accepted, so the shell can tell a slow reader from a stalled one, and
`Handler.writable` says when a full buffer has drained (asyncio's ``resume_writing``), so
output that can wait (a large initial state) is produced only as fast as it is read.
Reading can be paused while the handler waits for something (`Connection.pause_reading`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin

from server.io.deadlines import Deadlines, Entry
from server.io.handshake import HandshakeProtocol, quick_accept
from server.io.http_exchange import HttpAnswer, HttpExchange, HttpRequest

log = logging.getLogger("hivectl.server")
_WEBSOCKETS_LOG = logging.getLogger("websockets.server")
"""The logger `ServerProtocol` takes by default, looked up once rather than per connection."""

KEEPALIVE_TIMEOUT_REASON = "keepalive ping timeout"
_PING = b"hive"
WRITE_HIGH_WATER = 256 * 1024
"""Bytes in a transport's buffer past which it reports itself full (`Connection.write_paused`):
output that can wait is held back until it drains to `WRITE_LOW_WATER`."""
WRITE_LOW_WATER = 64 * 1024
_UPGRADE = b"GET "
"""How every WebSocket opening handshake starts; any other request is plain HTTP."""
_SNIFF = 8
"""Bytes enough to tell a request's method (the longest, OPTIONS, and its space)."""
SERVER_ERROR = HttpAnswer(500, b'{"err":"server error","erc":500}')


class Handler(Protocol):
    """What the server does with connections; every call runs in the event loop."""

    def process_request(self, protocol: ServerProtocol, request: Request) -> Response | None:
        """An HTTP response instead of the WebSocket handshake, or None to accept it."""

    def opened(self, connection: Connection) -> None:
        """The handshake is done: messages may follow."""

    def received(self, connection: Connection, message: str | bytes) -> None:
        """One whole message (text as str, binary as bytes)."""

    def closed(self, connection: Connection) -> None:
        """An opened connection is over: the peer's close frame came, or the socket is gone.
        Called once."""

    def writable(self, connection: Connection) -> None:
        """The connection's send buffer drained below its low-water mark: it can take more."""

    def answer_http(self, request: HttpRequest) -> Awaitable[HttpAnswer]:
        """The answer to a plain HTTP request (not a GET: those go through
        `process_request`), e.g. ``POST /api/v1``."""


class Listener:
    """A listening socket and the connections it accepted."""

    def __init__(
        self,
        handler: Handler,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        open_timeout: float,
        max_size: int,
        compression: bool,
        origins: Sequence[str] | None,
        server_header: str,
        http_only: bool = False,
    ) -> None:
        self.handler = handler
        self.http_only = http_only
        """Every connection is plain HTTP (``server.api_port``): no WebSocket upgrades."""
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.extensions: Sequence[ServerExtensionFactory] | None = (
            enable_server_permessage_deflate(None) if compression else None
        )
        self.origins: list[Origin | None] | None = (
            [Origin(origin) for origin in origins] if origins else None
        )
        self.server_header = server_header
        self._server_bytes = server_header.encode("iso-8859-1")
        self.connections: set[Connection] = set()
        self._opening = Deadlines(open_timeout)
        self._closing = Deadlines(close_timeout)
        """The connections' handshake deadlines, on one loop timer each (`server.io.deadlines`)."""
        self.serving = False
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None

    def reconfigure(
        self,
        *,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_size: int,
        origins: Sequence[str] | None,
    ) -> None:
        """New limits for connections from now on (keepalive for all at its next sweep);
        keepalive cannot be turned on or off here (`server.io.reload` keeps it as it runs)."""
        if bool(ping_interval) == bool(self.ping_interval):
            self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        if close_timeout != self._closing.delay:
            self._closing = Deadlines(close_timeout)  # the old one runs out by itself
        self.max_size = max_size
        self.origins = [Origin(origin) for origin in origins] if origins else None

    async def start(
        self, host: str, port: int, *, backlog: int, tls: ssl.SSLContext | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self), host or None, port, backlog=backlog, ssl=tls
        )
        self.serving = True
        if self.ping_interval:
            self._sweep = loop.call_later(self.ping_interval, self._keepalive)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self, code: int, reason: str, grace: float) -> None:
        """Stop accepting; close every connection; after `grace` seconds, cut those still open."""
        self.serving = False
        if self._sweep is not None:
            self._sweep.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close(code, reason)
        if self.connections:
            self._drained = asyncio.Event()
            try:
                async with asyncio.timeout(grace):
                    await self._drained.wait()
            except TimeoutError:
                log.warning(
                    "aborting %d connections still open after the shutdown timeout",
                    len(self.connections),
                )
                for connection in list(self.connections):
                    connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
        self._opening.close()
        self._closing.close()

    def _forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._drained is not None:
            self._drained.set()

    def _keepalive(self) -> None:
        """Ping the connections with no ping outstanding; check the others ping_timeout on."""
        assert self.ping_interval
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in self.connections:
            connection.check_pong(now, self.ping_timeout)
            if connection.ping_sent_at is None:
                connection.ping(now)
        if self.ping_timeout:
            loop.call_later(self.ping_timeout, self._check_pongs)
        self._sweep = loop.call_later(self.ping_interval, self._keepalive)

    def _check_pongs(self) -> None:
        now = asyncio.get_running_loop().time()
        for connection in list(self.connections):
            connection.check_pong(now, self.ping_timeout)


class Connection(asyncio.Protocol):
    """One client connection: a transport, a sans-I/O protocol, and what it is for."""

    __slots__ = (
        "_fragments",
        "_head",
        "_http",
        "_opened",
        "_text",
        "_timer",
        "_written",
        "listener",
        "ping_sent_at",
        "protocol",
        "remote",
        "timed_out",
        "transport",
        "user",
        "write_paused",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.protocol: ServerProtocol = HandshakeProtocol(
            origins=listener.origins,
            extensions=listener.extensions,
            max_size=listener.max_size,
            logger=_WEBSOCKETS_LOG,
        )
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.user: Any = None
        """Whatever the handler keeps for this connection."""
        self.ping_sent_at: float | None = None
        self.timed_out = False
        """Closed because a keepalive pong did not come in time."""
        self._opened = False
        self._fragments: list[bytes] | None = None
        self._text = False
        self._timer: Entry | None = None
        """The opening handshake's deadline, then the closing handshake's."""
        self._written = 0
        self.write_paused = False
        """The transport's buffer is over its high-water mark (asyncio's flow control)."""
        self._head: bytes | None = None if listener.http_only else b""
        """The first bytes, until they tell a WebSocket upgrade (then None) from plain HTTP."""
        self._http: HttpExchange | None = (
            HttpExchange(listener.max_size) if listener.http_only else None
        )
        """Set once the connection turned out to be plain HTTP (`server.io.http_exchange`)."""

    # -- asyncio callbacks -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple) and len(address) >= 2:
            self.remote = f"{address[0]}:{address[1]}"
        self.listener.connections.add(self)
        self._timer = self.listener._opening.add(Connection.abort, self)

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._next_http(self._http.receive(data))
            return
        if self._head is not None:
            sniffed = self._sniff(data)
            if sniffed is None:
                return
            data = sniffed
        protocol = self.protocol
        # Frames parsed from this read that precede a close frame in it are the peer's
        # last messages: they are handled although the protocol has left OPEN meanwhile.
        reading = protocol.state is State.OPEN
        protocol.receive_data(data)
        events = protocol.events_received()
        self._send_data()
        for event in events:
            if isinstance(event, Frame):
                self._frame(event, reading)
            elif isinstance(event, Request):
                self._handshake(event)
                reading = protocol.state is State.OPEN
        if protocol.close_expected():
            self._expect_close()
            if protocol.close_rcvd is not None:
                # The peer's close frame: nothing more can come or go, so the connection is
                # over for the handler now, not a round trip later when TCP is torn down.
                self._ended()

    def eof_received(self) -> bool | None:
        if self._http is not None:
            # A client may half-close once its request is out: the answer still goes.
            self._http.ended()
            return True if self._http.answering else None
        self.protocol.receive_eof()
        self._send_data()
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._opened:
            self.listener.handler.writable(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if self._timer is not None:
            Deadlines.cancel(self._timer)
            self._timer = None
        self.listener._forget(self)
        self._ended()
        # Nothing reaches the protocol any more. Its parser is a generator that refers to
        # the protocol; closed, it lets go, and so does this connection of the handler's
        # object: the connection's objects hold no reference cycle and are freed at once by
        # reference counting. Left to the cyclic collector, every connection's objects went
        # through it: about a tenth of the server's CPU in a connect + close.
        self.protocol.parser.close()
        self.user = None
        # asyncio's selector transport refers to itself through its read callback (a bound
        # method) and never lets go: the one cycle left per connection. It is not read
        # again once the connection is lost.
        if self.transport is not None and hasattr(self.transport, "_read_ready_cb"):
            self.transport._read_ready_cb = None

    # -- used by the handler ---------------------------------------------------

    @property
    def open(self) -> bool:
        return self.protocol.state is State.OPEN

    def send_text(self, data: bytes) -> None:
        """Queue one text message (UTF-8 `data`) without waiting; dropped unless open."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_text(data)
            self._send_data()

    @property
    def close_info(self) -> tuple[int, str, str]:
        """(code, reason, who closed first: ``server``, ``client`` or ``network``) of a
        connection that is over; 1006 when no close frame went either way."""
        protocol = self.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if sent is not None and (received is None or protocol.close_rcvd_then_sent is False):
            return sent.code, sent.reason, "server"
        if received is not None:
            return received.code, received.reason, "client"
        return CloseCode.ABNORMAL_CLOSURE, "", "network"

    @property
    def queued(self) -> int:
        """Bytes written and not yet taken by the kernel."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    @property
    def taken(self) -> int:
        """Bytes the kernel has accepted so far: grows while the peer reads."""
        return self._written - self.queued

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake behind what is queued; cut it after close_timeout.
        A plain HTTP connection ends once the request it is answering (if any) is answered."""
        if self._http is not None:
            self._http.stop()
            if not self._http.answering and self.transport is not None:
                self.transport.close()
        elif self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._send_data()
            self._expect_close()
        elif self.protocol.state is State.CONNECTING:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- keepalive -------------------------------------------------------------

    def ping(self, now: float) -> None:
        if self.protocol.state is State.OPEN:
            self.ping_sent_at = now
            self.protocol.send_ping(_PING)
            self._send_data()

    def check_pong(self, now: float, timeout: float | None) -> None:
        sent = self.ping_sent_at
        if sent is None or not timeout or now - sent < timeout - 0.001:
            return
        if self.protocol.state is State.OPEN:
            # Over at once: the close frame goes only if nothing is queued before it; behind
            # unread data it would wait, and hold the connection, for close_timeout more.
            self.timed_out = True
            self.protocol.fail(CloseCode.INTERNAL_ERROR, KEEPALIVE_TIMEOUT_REASON)
            if not self.queued:
                self._send_data()
            if self.queued:
                self.abort()
            elif self.transport is not None:
                self.transport.close()

    # -- plain HTTP on the WebSocket port ----------------------------------------

    def _sniff(self, data: bytes) -> bytes | None:
        """The bytes for the WebSocket protocol, or None: kept until the method shows, or
        handed to an `HttpExchange` because the request is not an upgrade's GET."""
        head = self._head + data if self._head else data
        if head[:4] == _UPGRADE:
            self._head = None
            return head
        if len(head) < _SNIFF and b" " not in head:
            self._head = head
            return None
        self._head = None
        self._http = HttpExchange(self.listener.max_size)
        self._next_http(self._http.receive(head))
        return None

    def _next_http(self, request: HttpRequest | None) -> None:
        """Answer `request`, reading nothing more meanwhile; or close a connection that is
        over or refused."""
        http, transport = self._http, self.transport
        assert http is not None
        if transport is None or transport.is_closing():
            return
        if request is not None:
            if self._timer is not None:
                Deadlines.cancel(self._timer)
                self._timer = None
            transport.pause_reading()
            answer = asyncio.ensure_future(self.listener.handler.answer_http(request))
            answer.add_done_callback(self._answered)
        elif http.refused is not None:
            transport.write(http.refuse())
            transport.close()
        elif http.closing:
            transport.close()

    def _answered(self, answer: asyncio.Future[HttpAnswer]) -> None:
        http, transport = self._http, self.transport
        assert http is not None
        if transport is None or transport.is_closing():
            return
        try:
            result = answer.result()
        except Exception:
            log.exception("answering an HTTP request failed")
            result = SERVER_ERROR
        transport.write(http.respond(result))
        if http.closing:
            transport.close()
            return
        # An idle keep-alive connection gets as long as an opening handshake.
        self._timer = self.listener._opening.add(Connection.abort, self)
        transport.resume_reading()
        self._next_http(http.receive(b""))

    # -- internals -------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        listener = self.listener
        protocol = self.protocol
        try:
            response = listener.handler.process_request(protocol, request)
        except Exception:
            log.exception("processing the HTTP request failed")
            response = protocol.reject(
                HTTPStatus.INTERNAL_SERVER_ERROR, "Failed to open a WebSocket connection.\n"
            )
        templated = False
        if response is None and listener.serving:
            # The common valid request's 101 from a template (Server header included);
            # websockets' accept answers every other.
            response = quick_accept(protocol, request, listener._server_bytes)
            templated = response is not None
        if response is None:
            response = protocol.accept(request)
        if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS and not listener.serving:
            response = protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
            templated = False
        if not templated:
            response.headers["Server"] = listener.server_header
        if self._timer is not None:
            Deadlines.cancel(self._timer)
            self._timer = None
        protocol.send_response(response)
        self._send_data()
        # The parser keeps the request for as long as the connection lives; its headers
        # are about 2 KiB that nothing reads once the handshake is over.
        request.headers.clear()
        if protocol.state is State.OPEN:
            listener.handler.opened(self)
            self._opened = True  # only now is there something for `Handler.closed` to end

    def _frame(self, frame: Frame, reading: bool) -> None:
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            self.ping_sent_at = None
            return
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [bytes(frame.data)]
                self._text = opcode is Opcode.TEXT
                return
            self._message(bytes(frame.data), opcode is Opcode.TEXT, reading)
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = None
                self._message(data, self._text, reading)

    def _message(self, data: bytes, text: bool, reading: bool) -> None:
        protocol = self.protocol
        if not (reading and self._opened) or (
            protocol.state is not State.OPEN and protocol.close_rcvd is None
        ):
            return  # after our own close frame or a failure: RFC 6455 lets us drop it
        if text:
            try:
                message: str | bytes = data.decode()
            except UnicodeDecodeError as exc:
                if protocol.state is State.OPEN:
                    protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                    self._send_data()
                    self._expect_close()
                return
        else:
            message = data
        self.listener.handler.received(self, message)

    def _ended(self) -> None:
        if self._opened:
            self._opened = False
            self.listener.handler.closed(self)

    def _send_data(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                self._written += len(data)
                transport.write(data)
            else:
                # The closing handshake (or a refused opening one) is done: half-close, and
                # let the peer close its side. Closing outright while its data is unread
                # would reset the connection, and the peer could lose our close frame.
                # TLS cannot half-close: closing flushes what is queued, then says so.
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
                self._expect_close()

    def _expect_close(self) -> None:
        """The peer owes us its close (or the socket a flush): cut it after close_timeout."""
        if self._timer is None and self.transport is not None:
            self._timer = self.listener._closing.add(Connection.abort, self)
