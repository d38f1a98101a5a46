"""`HttpExchange`, the sans-I/O HTTP side of the WebSocket port: bytes in, requests out."""

from __future__ import annotations

import orjson

from server.io.http_exchange import HttpAnswer, HttpExchange

POST = (
    b"POST /api/v1?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\n"
    b"Content-Length: 2\r\n\r\n[]"
)


def test_a_request_in_pieces_comes_out_whole() -> None:
    exchange = HttpExchange(max_body=100)
    for piece in (POST[:5], POST[5:40], POST[40:-1]):
        assert exchange.receive(piece) is None
    request = exchange.receive(POST[-1:])
    assert request is not None
    assert (request.method, request.path, request.body) == ("POST", "/api/v1", b"[]")
    assert request.headers["authorization"] == "Bearer t"


def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    exchange = HttpExchange(max_body=100)
    first = exchange.receive(POST + POST.replace(b"[]", b"{}"))
    assert first is not None and first.body == b"[]"
    assert exchange.receive(b"") is None  # the second waits for the first's answer
    out = exchange.respond(HttpAnswer(200, b"[1]"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n[1]")
    assert b"content-length: 3" in out.lower()
    second = exchange.receive(b"")
    assert second is not None and second.body == b"{}"
    exchange.respond(HttpAnswer(200, b"[]"))
    assert not exchange.closing


def test_a_body_over_the_limit_is_refused_413_and_the_connection_ends() -> None:
    exchange = HttpExchange(max_body=1)
    assert exchange.receive(POST) is None
    assert exchange.refused is not None and exchange.refused.status == 413
    out = exchange.refuse()
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in out.lower()
    assert orjson.loads(out.split(b"\r\n\r\n", 1)[1]) == {"err": "too large", "erc": 413}
    assert exchange.closing


def test_a_declared_length_over_the_limit_is_refused_before_the_body() -> None:
    exchange = HttpExchange(max_body=1)
    assert exchange.receive(POST[: POST.index(b"\r\n\r\n") + 4]) is None
    assert exchange.refused is not None and exchange.refused.status == 413


def test_garbage_is_refused_400_without_a_request() -> None:
    exchange = HttpExchange(max_body=100)
    assert exchange.receive(b"\x16\x03\x01\x02\x00 not http\r\n\r\n") is None
    assert exchange.refused is not None and exchange.refused.status == 400
    assert exchange.refuse().startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_connection_close_from_the_client_ends_after_the_answer() -> None:
    exchange = HttpExchange(max_body=100)
    request = exchange.receive(POST.replace(b"Host: h\r\n", b"Host: h\r\nConnection: close\r\n"))
    assert request is not None
    exchange.respond(HttpAnswer(401, b"{}"))
    assert exchange.closing


def test_an_answer_to_head_has_no_body() -> None:
    exchange = HttpExchange(max_body=100)
    request = exchange.receive(b"HEAD /api/v1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert request is not None and request.method == "HEAD"
    out = exchange.respond(HttpAnswer(405, b'{"err":"x"}'))
    assert out.startswith(b"HTTP/1.1 405 ") and out.endswith(b"\r\n\r\n")
