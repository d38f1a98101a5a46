"""Plain HTTP requests on the WebSocket port, parsed by h11: bytes in, requests out.

protocol.md §1: Hivekit serves ``POST /api/v1`` on the same URL as the WebSocket, and its
clients are configured with that one URL. `websockets` parses only the GET of an upgrade
(and the GETs answered instead of one: ``/healthz``, ``/metrics``, the console), so a
connection whose first request is anything else is handed to an `HttpExchange`
(`server.io.transport`): h11 reads requests (keep-alive included) and writes the answers,
one request at a time; the transport moves the bytes and the handler decides the answer.

Like `websockets`' protocol it does no I/O: `receive` takes bytes and returns what is
complete, `respond` returns the bytes of an answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import orjson

MAX_HEAD = 16 * 1024
"""Longest request line and headers accepted (h11's own default, stated)."""


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    """Lower-case names; a repeated header keeps its last value."""
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class HttpExchange:
    """One HTTP/1.1 connection: requests are parsed as they come, answered in order."""

    def __init__(self, max_body: int) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._max_body = max_body
        self._request: HttpRequest | None = None
        self._head_only = False
        """The request being answered is a HEAD: its answer has headers only."""
        self._body: list[bytes] = []
        self._size = 0
        self.refused: HttpAnswer | None = None
        """The answer to a request that cannot be read (malformed, too large): sent, then
        the connection closes."""
        self.answering = False
        """A request was handed out and not answered yet."""
        self._stopping = False

    def receive(self, data: bytes) -> HttpRequest | None:
        """Feed bytes; the next whole request, if any. Call with b"" after `respond` for a
        request that arrived meanwhile (the end of the stream is `ended`)."""
        if data:
            self._h11.receive_data(data)
        return self._next()

    def ended(self) -> None:
        """The peer closed its side."""
        self._h11.receive_data(b"")

    def _next(self) -> HttpRequest | None:
        while self.refused is None:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self.refused = _error(exc.error_status_hint, str(exc) or "bad request")
                return None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                self._request = HttpRequest(
                    event.method.decode("ascii", "replace"),
                    event.target.decode("ascii", "replace"),
                    _headers(event.headers),
                )
                self._body, self._size = [], 0
                declared = self._request.headers.get("content-length", "0")
                if declared.isdigit() and int(declared) > self._max_body:
                    self.refused = _error(413, "too large")  # before reading any of it
                    return None
            elif isinstance(event, h11.Data):
                self._size += len(event.data)
                if self._size > self._max_body:
                    self.refused = _error(413, "too large")
                    return None
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) and self._request is not None:
                request, self._request = self._request, None
                self._head_only = request.method == "HEAD"
                request.body = b"".join(self._body)
                self._body = []
                self.answering = True
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None
        return None

    def respond(self, answer: HttpAnswer) -> bytes:
        """The bytes of `answer` to the request `receive` returned last."""
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(answer.body))),
            ("Server", "hivectl"),
            *answer.headers,
        ]
        if self.refused is not None or self._stopping:
            headers.append(("Connection", "close"))
        self.answering = False
        out = (
            self._h11.send(
                h11.Response(
                    status_code=answer.status,
                    headers=headers,
                    reason=HTTPStatus(answer.status).phrase,
                )
            )
            or b""
        )
        if not self._head_only:
            out += self._h11.send(h11.Data(data=answer.body)) or b""
        out += self._h11.send(h11.EndOfMessage()) or b""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        return out

    def refuse(self) -> bytes:
        """The bytes of `refused`, whatever state the request it answers was in."""
        assert self.refused is not None
        if self._h11.our_state is not h11.SEND_RESPONSE:
            # h11 answers only a request whose head it read; one that never got that far
            # is answered by hand, as h11's docs suggest.
            return _raw(self.refused)
        return self.respond(self.refused)

    def stop(self) -> None:
        """The server is stopping: the request being answered is the last one."""
        self._stopping = True

    @property
    def closing(self) -> bool:
        """Nothing more can be read or answered on this connection."""
        return (
            self.refused is not None
            or self._stopping
            or self._h11.our_state in (h11.MUST_CLOSE, h11.CLOSED)
        )


def _headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("ascii"): value.decode("latin-1") for name, value in headers}


def _error(status: int, text: str) -> HttpAnswer:
    return HttpAnswer(status, orjson.dumps({"err": text, "erc": status}))


def _raw(answer: HttpAnswer) -> bytes:
    reason = HTTPStatus(answer.status).phrase
    head = (
        f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + answer.body
