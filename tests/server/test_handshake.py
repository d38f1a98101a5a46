"""The quick opening handshake (`server.io.handshake`) answers every request as `websockets` does.

Each request goes to a plain `ServerProtocol` and to a `HandshakeProtocol`, whole or in two
reads; both must produce the same events (the same `Request`, the same frames after it),
the same handshake error, and -- through `quick_accept` where it applies, else `accept` --
the same response bytes (the date aside) and the same state.
"""

from __future__ import annotations

import base64
import re

import pytest
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin

from server.io.handshake import HandshakeProtocol, http_date, quick_accept, quick_request

KEY = base64.b64encode(b"0123456789abcdef").decode()
BASE = [
    ("Host", "127.0.0.1:8080"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
    ("User-Agent", "Python/3.11 websockets/17.4"),
]


def request(headers: list[tuple[str, str]], line: str = "GET /ws HTTP/1.1") -> bytes:
    text = line + "\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    return text.encode("latin-1")


def replaced(name: str, value: str | None) -> list[tuple[str, str]]:
    headers = [(n, v) for n, v in BASE if n != name]
    return headers if value is None else [*headers, (name, value)]


BEARER = Frame(Opcode.TEXT, b"Bearer x").serialize(mask=True, extensions=[])

REQUESTS = [
    request(BASE),
    request(BASE) + BEARER,
    request(BASE, "GET /ws?x=1&y=%20 HTTP/1.1"),
    request([]),
    request(BASE, "GET /ws HTTP/1.0"),
    request(BASE, "POST /ws HTTP/1.1"),
    request(BASE, "GET /a b HTTP/1.1"),
    request(BASE, "GET  HTTP/1.1"),
    request(BASE, "GET /ws HTTP/2"),
    request(BASE, "GET /\x7f HTTP/1.1"),
    request(BASE, "GET /\xe9 HTTP/1.1"),
    request([*BASE, ("X-Long", "v" * 9000)]),
    request([*BASE, *[(f"X-{i}", "v") for i in range(130)]]),
    request([*BASE, ("X-Latin", "caf\xe9")]),
    request([*BASE, ("X-Spaces", "  padded \t")]),
    request([*BASE, ("Bad Name", "v")]),
    request([*BASE, ("X-Ctl", "a\x01b")]),
    request([*BASE, ("Content-Length", "0")]),
    request([*BASE, ("Content-Length", "5")]) + b"hello",
    request([*BASE, ("Transfer-Encoding", "chunked")]),
    request(replaced("Connection", "keep-alive, Upgrade")),
    request(replaced("Connection", "close")),
    request(replaced("Connection", None)),
    request([*BASE, ("Connection", "Upgrade")]),
    request(replaced("Upgrade", "WebSocket")),
    request(replaced("Upgrade", "websocket, h2c")),
    request(replaced("Upgrade", None)),
    request(replaced("Sec-WebSocket-Key", "short")),
    request(replaced("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode())),
    request(replaced("Sec-WebSocket-Key", KEY[:-2] + "!=")),
    request(replaced("Sec-WebSocket-Key", None)),
    request([*BASE, ("Sec-WebSocket-Key", KEY)]),
    request(replaced("Sec-WebSocket-Version", "8")),
    request(replaced("Sec-WebSocket-Version", None)),
    request([*BASE, ("Sec-WebSocket-Version", "13")]),
    request([*BASE, ("Origin", "https://a.example")]),
    request([*BASE, ("Origin", "https://a.example"), ("Origin", "https://b.example")]),
    request([*BASE, ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]),
    request([*BASE, ("Sec-WebSocket-Protocol", "chat")]),
    request([*BASE, ("Sec-WebSocket-Protocol", "bad protocol,,")]),
    b"GET /ws HTTP/1.1\nHost: x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\ry\r\n\r\n",
    b"\r\n\r\n",
    b"garbage",
]


def _events(protocol: ServerProtocol, data: bytes, split: int | None) -> list[object]:
    for chunk in (data,) if split is None else (data[:split], data[split:]):
        protocol.receive_data(chunk)
    return protocol.events_received()


def _same_event(left: object, right: object) -> bool:
    if isinstance(left, Request) and isinstance(right, Request):
        return (left.path, left.method, left.protocol, list(left.headers.raw_items())) == (
            right.path,
            right.method,
            right.protocol,
            list(right.headers.raw_items()),
        )
    return left == right


def _answer(protocol: ServerProtocol, request: Request, quick: bool) -> bytes:
    response: Response | None = None
    if quick:
        response = quick_accept(protocol, request, b"hivectl")
    if response is None:
        response = protocol.accept(request)
        response.headers["Server"] = "hivectl"
    protocol.send_response(response)
    sent = b"".join(protocol.data_to_send())
    return re.sub(rb"Date: [^\r]*", b"Date: -", sent)


@pytest.mark.parametrize("split", [None, 10])
@pytest.mark.parametrize("data", REQUESTS)
@pytest.mark.parametrize("origins", [None, [Origin("https://a.example")], [None]])
@pytest.mark.parametrize("compression", [False, True])
def test_the_quick_handshake_answers_as_websockets_does(
    data: bytes, split: int | None, origins: list[Origin | None] | None, compression: bool
) -> None:
    from websockets.extensions.permessage_deflate import enable_server_permessage_deflate

    extensions = enable_server_permessage_deflate(None) if compression else None
    plain = ServerProtocol(origins=origins, extensions=extensions)
    quick = HandshakeProtocol(origins=origins, extensions=extensions)
    expected, got = _events(plain, data, split), _events(quick, data, split)
    assert len(expected) == len(got)
    assert all(_same_event(e, g) for e, g in zip(expected, got, strict=True))
    assert repr(plain.handshake_exc) == repr(quick.handshake_exc)
    assert plain.data_to_send() == quick.data_to_send()
    assert plain.state is quick.state
    if expected and isinstance(expected[0], Request):
        assert isinstance(got[0], Request)
        assert _answer(plain, expected[0], False) == _answer(quick, got[0], True)
        assert plain.state is quick.state
        assert (plain.origin, repr(plain.extensions), plain.subprotocol) == (
            quick.origin,
            repr(quick.extensions),
            quick.subprotocol,
        )
        if plain.state is State.OPEN:
            more = Frame(Opcode.TEXT, b"after").serialize(mask=True, extensions=[])
            assert _events(plain, more, None) == _events(quick, more, None)


def test_the_common_request_takes_the_quick_way() -> None:
    buffer = bytearray(request(BASE) + BEARER)
    parsed = quick_request(buffer)
    assert parsed is not None and parsed.path == "/ws"
    assert bytes(buffer) == BEARER
    protocol = HandshakeProtocol()
    response = quick_accept(protocol, parsed, b"hivectl")
    assert response is not None and response.status_code == 101
    assert protocol.accept_called


def test_an_incomplete_request_is_left_in_the_buffer() -> None:
    data = request(BASE)[:-2]
    buffer = bytearray(data)
    assert quick_request(buffer) is None
    assert bytes(buffer) == data


def test_the_date_is_formatted_once_per_second() -> None:
    first = http_date()
    assert first.endswith(b" GMT")
    assert http_date() is first or http_date() == first
