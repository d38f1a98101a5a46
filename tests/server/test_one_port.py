"""Plain HTTP beside WebSocket upgrades on one port (protocol.md §1), over real sockets."""

from __future__ import annotations

import asyncio

import orjson

from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient

DEADLINE = 5.0


async def _exchange(server: HivekitServer, *pieces: bytes) -> bytes:
    """Send `pieces` as separate writes; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)
        async with asyncio.timeout(DEADLINE):
            return await reader.read()
    finally:
        writer.close()


def _post(token: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"POST /api/v1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def _bodies(raw: bytes) -> list[tuple[int, object]]:
    """(status, JSON body) of each response in `raw`, in order."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        )
        answers.append((status, orjson.loads(rest[:length])))
        raw = rest[length:]
    return answers


async def test_pipelined_requests_on_one_connection_are_answered_in_order(
    server: HivekitServer, token: Mint
) -> None:
    admin = token("admin")
    create = orjson.dumps([{"typ": "rea", "act": "cre", "id": "r", "cid": 1}])
    read = orjson.dumps([{"typ": "rea", "act": "rea", "id": "r", "cid": 2}])
    raw = await _exchange(server, _post(admin, create) + _post(admin, read, close=True))
    (first, second) = _bodies(raw)
    assert first == (200, [{"typ": "rea", "act": "cre", "cid": 1, "res": "suc"}])
    assert second[0] == 200 and second[1][0]["cid"] == 2 and second[1][0]["res"] == "suc"  # type: ignore[index]


async def test_a_request_whose_method_and_body_arrive_in_pieces_is_answered(
    server: HivekitServer, token: Mint
) -> None:
    request = _post(token("admin"), b'[{"typ":"sys","act":"hbt","cid":"h"}]', close=True)
    raw = await _exchange(server, request[:1], request[1:3], request[3:60], request[60:])
    assert _bodies(raw) == [(200, [{"typ": "sys", "act": "hbt", "cid": "h", "res": "suc"}])]


async def test_a_websocket_handshake_split_before_its_method_still_upgrades(
    server: HivekitServer, token: Mint
) -> None:
    handshake = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for piece in (handshake[:2], handshake[2:3], handshake[3:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)  # lets each piece arrive as a read of its own
        async with asyncio.timeout(DEADLINE):
            status = await reader.readline()
    finally:
        writer.close()
    assert status == b"HTTP/1.1 101 Switching Protocols\r\n"
    client = await RawClient.open(server.ws_url, token("admin"))  # and ordinary clients too
    await client.close()


async def test_other_methods_get_405_and_a_body_over_the_limit_413(
    server: HivekitServer, token: Mint
) -> None:
    put = b"PUT /api/v1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    raw = await _exchange(server, put)
    assert raw.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, POST" in raw
    too_big = server.settings.limits.max_message_size + 1
    head = _post(token("admin"), b"").replace(b"Length: 0", f"Length: {too_big}".encode())
    raw = await _exchange(server, head)  # refused before a byte of the body is sent
    assert _bodies(raw) == [(413, {"err": "too large", "erc": 413})]


async def test_answers_on_the_websocket_port_are_counted_by_status(
    server: HivekitServer, token: Mint
) -> None:
    hello = b'[{"typ":"sys","act":"hbt","cid":"h"}]'
    await _exchange(server, _post("garbage", hello, close=True))
    await _exchange(server, _post(token("admin"), hello, close=True))
    assert server.http_requests == {401: 1, 200: 1}


async def test_the_api_port_answers_the_api_and_upgrades_nothing(
    server: HivekitServer, token: Mint
) -> None:
    assert server.api_port is not None and server.api_port != server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", server.api_port)
    hello = b'[{"typ":"sys","act":"hbt","cid":"h"}]'
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        writer.write(_post(token("admin"), hello) + upgrade)
        raw = b""
        async with asyncio.timeout(DEADLINE):
            while raw.count(b"HTTP/1.1 ") < 2 or not raw.endswith(b"}"):
                raw += await reader.read(65536)  # the connection stays open: keep-alive
    finally:
        writer.close()
    answers = _bodies(raw)
    assert answers[0] == (200, [{"typ": "sys", "act": "hbt", "cid": "h", "res": "suc"}])
    assert answers[1][0] == 405


async def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
    server: HivekitServer, token: Mint
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_post(token("admin"), b'[{"typ":"sys","act":"hbt","cid":"h"}]'))
        writer.write_eof()
        async with asyncio.timeout(DEADLINE):
            raw = await reader.read()
    finally:
        writer.close()
    assert _bodies(raw) == [(200, [{"typ": "sys", "act": "hbt", "cid": "h", "res": "suc"}])]
