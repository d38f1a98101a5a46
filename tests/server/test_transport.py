"""`server.io.transport` on real sockets: framing, keepalive, and the deadlines it owns.

A small echo handler stands in for the hub, so the timeouts can be a fraction of a second.
The peer is `websockets`' sans-I/O client over a plain socket: it sends only what a test
writes, so it can stay silent where a real client would answer (pings, close frames).
"""

# ruff: noqa: ASYNC109 -- the helpers own their deadlines (`timeout=`), like asyncio.wait_for

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from server.io.transport import KEEPALIVE_TIMEOUT_REASON, Connection, Listener
from tests.server.wsutil import until

DEADLINE = 5.0


class Recorder:
    """What the listener told the handler, in order."""

    def __init__(self) -> None:
        self.opened: list[Connection] = []
        self.messages: list[str | bytes] = []
        self.closed: list[Connection] = []


class EchoHandler:
    def __init__(self) -> None:
        self.seen = Recorder()

    def process_request(self, protocol: ServerProtocol, request: Request) -> Response | None:
        if request.path == "/health":
            return protocol.reject(HTTPStatus.OK, "fine\n")
        return None

    def opened(self, connection: Connection) -> None:
        self.seen.opened.append(connection)

    def received(self, connection: Connection, message: str | bytes) -> None:
        self.seen.messages.append(message)
        if message == "bye":
            connection.close(4000, "asked to")
        elif isinstance(message, str):
            connection.send_text(message.encode())

    def closed(self, connection: Connection) -> None:
        self.seen.closed.append(connection)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Listener, Recorder]]:
    async with listening() as running:
        yield running


@contextlib.asynccontextmanager
async def listening(**options: Any) -> AsyncIterator[tuple[Listener, Recorder]]:
    """A listener on port 0 with an echo handler; short open and close timeouts."""
    settings: dict[str, Any] = {
        "ping_interval": None,
        "ping_timeout": None,
        "close_timeout": 0.3,
        "open_timeout": 0.3,
        "max_size": 1 << 16,
        "compression": False,
        "origins": None,
        "server_header": "test",
    }
    settings.update(options)
    handler = EchoHandler()
    listener = Listener(handler, **settings)
    await listener.start("127.0.0.1", 0, backlog=16)
    try:
        yield listener, handler.seen
    finally:
        await listener.close(1001, "test over", grace=0.5)


class Peer:
    """A WebSocket client that answers nothing by itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"))
        self.response: Response | None = None

    @classmethod
    async def open(cls, port: int) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        peer.protocol.send_request(peer.protocol.connect())
        peer.flush()
        while peer.response is None:
            for event in await peer.read():
                if isinstance(event, Response):
                    peer.response = event
        assert peer.response.status_code == 101, peer.response
        return peer

    def flush(self) -> None:
        """Write what the protocol queued (frames sent, pongs, close replies)."""
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)

    def drop(self) -> None:
        """Forget what the protocol queued by itself: the peer stays silent."""
        self.protocol.data_to_send()

    async def read(self, timeout: float = DEADLINE) -> list[Any]:
        """The events from the next bytes; [] at EOF."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.protocol.receive_eof()
            return [None]
        self.protocol.receive_data(data)
        return list(self.protocol.events_received())

    async def frames_until_eof(self, *, answer: bool = False) -> list[Frame]:
        """Every frame until the server closes the socket, within the deadline."""
        frames: list[Frame] = []
        async with asyncio.timeout(DEADLINE):
            while True:
                events = await self.read()
                if answer:
                    self.flush()
                else:
                    self.drop()
                if events == [None]:
                    return frames
                frames.extend(e for e in events if isinstance(e, Frame))

    def send(self, opcode: Opcode, data: bytes, *, fin: bool = True) -> None:
        if opcode is Opcode.TEXT:
            self.protocol.send_text(data, fin=fin)
        elif opcode is Opcode.BINARY:
            self.protocol.send_binary(data, fin=fin)
        else:
            self.protocol.send_continuation(data, fin=fin)
        self.flush()

    async def next_frame(self, *, answer: bool = False) -> Frame:
        async with asyncio.timeout(DEADLINE):
            while True:
                events = await self.read()
                if answer:
                    self.flush()
                else:
                    self.drop()
                for event in events:
                    if isinstance(event, Frame):
                        return event
                assert events != [None], "the server closed the connection"

    def close(self) -> None:
        self.writer.close()


def close_of(frames: list[Frame]) -> Close:
    [close] = [Close.parse(f.data) for f in frames if f.opcode is Opcode.CLOSE]
    return close


# -- messages ---------------------------------------------------------------------------


async def test_a_fragmented_text_message_arrives_whole(echo: tuple[Listener, Recorder]) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.TEXT, b"hel", fin=False)
    peer.send(Opcode.CONT, b"lo ", fin=False)
    peer.send(Opcode.CONT, "w\u00f6rld".encode(), fin=True)
    frame = await peer.next_frame()
    assert (frame.opcode, bytes(frame.data).decode()) == (Opcode.TEXT, "hello w\u00f6rld")
    assert seen.messages == ["hello w\u00f6rld"]
    peer.close()


async def test_binary_messages_reach_the_handler_as_bytes(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.BINARY, b"\x00\xff", fin=False)
    peer.send(Opcode.CONT, b"\x01", fin=True)
    peer.send(Opcode.TEXT, b"marker")
    await peer.next_frame()
    assert seen.messages == [b"\x00\xff\x01", "marker"]
    peer.close()


async def test_invalid_utf8_in_a_text_message_fails_the_connection_with_1007(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.TEXT, b"ok \xff\xfe")
    close = close_of(await peer.frames_until_eof(answer=True))
    assert close.code == 1007
    assert seen.messages == []
    await until(lambda: len(seen.closed) == 1, "the handler told of the close")


async def test_a_message_over_max_size_fails_the_connection_with_1009(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.TEXT, b"x" * ((1 << 16) + 1))
    assert close_of(await peer.frames_until_eof(answer=True)).code == 1009
    assert seen.messages == []


async def test_a_ping_from_the_client_is_answered(echo: tuple[Listener, Recorder]) -> None:
    listener, _ = echo
    peer = await Peer.open(listener.port)
    peer.protocol.send_ping(b"are you there")
    peer.flush()
    frame = await peer.next_frame()
    assert (frame.opcode, bytes(frame.data)) == (Opcode.PONG, b"are you there")
    peer.close()


# -- opening and closing ----------------------------------------------------------------


async def test_a_plain_http_request_gets_the_handler_response_and_never_opens(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), DEADLINE)  # the server closes after it
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nServer: test\r\n" in response
    assert response.endswith(b"fine\n")
    writer.close()
    await until(lambda: not listener.connections, "the socket forgotten")
    assert seen.opened == [] and seen.closed == []


async def test_a_connection_that_sends_no_request_is_cut_after_the_open_timeout(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
    writer.close()
    assert seen.opened == []


async def test_a_client_close_is_answered_and_reported_once(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.protocol.send_close(1000, "done")
    peer.flush()
    close = close_of(await peer.frames_until_eof())
    assert (close.code, close.reason) == (1000, "done")
    # Over for the handler at the close frame, while the peer still holds its socket open.
    await until(lambda: len(seen.closed) == 1, "the handler told of the close")
    assert seen.closed == seen.opened
    assert len(listener.connections) == 1
    peer.close()
    await until(lambda: not listener.connections, "the socket forgotten")
    assert len(seen.closed) == 1


async def test_a_peer_that_never_answers_our_close_is_cut_after_the_close_timeout(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, seen = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.TEXT, b"bye")
    close = close_of(await peer.frames_until_eof(answer=False))
    assert (close.code, close.reason) == (4000, "asked to")
    await until(lambda: len(seen.closed) == 1, "the handler told of the close")


async def test_frames_queued_before_a_close_are_sent_before_it(
    echo: tuple[Listener, Recorder],
) -> None:
    listener, _ = echo
    peer = await Peer.open(listener.port)
    peer.send(Opcode.TEXT, b"one")
    peer.send(Opcode.TEXT, b"two")
    peer.send(Opcode.TEXT, b"bye")
    peer.send(Opcode.TEXT, b"ignored")
    frames = await peer.frames_until_eof(answer=True)
    assert [(f.opcode, bytes(f.data)) for f in frames[:2]] == [
        (Opcode.TEXT, b"one"),
        (Opcode.TEXT, b"two"),
    ]
    assert close_of(frames).code == 4000
    assert len(frames) == 3


async def test_shutdown_closes_every_connection_and_cuts_the_silent_ones() -> None:
    async with listening() as (listener, seen):
        polite = await Peer.open(listener.port)
        silent = await Peer.open(listener.port)
        closing = asyncio.create_task(listener.close(1001, "going away", grace=0.3))
        polite_frames = asyncio.create_task(polite.frames_until_eof(answer=True))
        silent_frames = await silent.frames_until_eof(answer=False)
        await asyncio.wait_for(closing, DEADLINE)
        assert close_of(await polite_frames).code == 1001
        assert close_of(silent_frames).code == 1001
        assert len(seen.closed) == 2
        assert not listener.connections


# -- keepalive --------------------------------------------------------------------------


async def test_a_peer_that_stops_answering_pings_is_failed_with_1011() -> None:
    async with listening(ping_interval=0.1, ping_timeout=0.2) as (listener, seen):
        peer = await Peer.open(listener.port)
        frames = await peer.frames_until_eof(answer=False)
        assert any(f.opcode is Opcode.PING for f in frames)
        close = close_of(frames)
        assert (close.code, close.reason) == (1011, KEEPALIVE_TIMEOUT_REASON)
        await until(lambda: len(seen.closed) == 1, "the handler told of the close")
        assert seen.closed[0].timed_out


async def test_a_peer_that_answers_pings_stays_open() -> None:
    async with listening(ping_interval=0.1, ping_timeout=0.2) as (listener, seen):
        peer = await Peer.open(listener.port)
        pings = 0
        while pings < 5:  # five rounds: well past the first ping timeout
            frame = await peer.next_frame(answer=True)
            assert frame.opcode is Opcode.PING, frame
            pings += 1
        assert seen.closed == []
        [connection] = listener.connections
        assert connection.open and not connection.timed_out
        peer.close()


async def test_each_ping_round_is_one_ping_per_connection() -> None:
    async with listening(ping_interval=0.1, ping_timeout=0.5) as (listener, _):
        peers = [await Peer.open(listener.port) for _ in range(3)]
        for peer in peers:
            first = await peer.next_frame(answer=False)
            assert first.opcode is Opcode.PING
        # Unanswered, no second ping is sent before the timeout fails the connection.
        for peer in peers:
            frames = await peer.frames_until_eof(answer=False)
            assert [f.opcode for f in frames] == [Opcode.CLOSE]


# -- extensions -------------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
async def test_per_message_deflate_is_negotiated_only_when_enabled(enabled: bool) -> None:
    async with listening(compression=enabled) as (listener, _):
        url = f"ws://127.0.0.1:{listener.port}/"
        async with connect(url, proxy=None, compression="deflate") as ws:
            names = [extension.name for extension in ws.protocol.extensions]
            assert names == (["permessage-deflate"] if enabled else [])
            await ws.send("squeeze " * 100)
            assert await asyncio.wait_for(ws.recv(), DEADLINE) == "squeeze " * 100
