"""``POST /api/v1``: the request/response API (protocol.md §1).

Served on the WebSocket port (`server.http_exchange`, h11 inside the transport) and,
for those who want a listener of its own, on ``server.api_port`` (`ApiListener`: the
standard library's `http.server`, one thread per request; each request is handed to the
event loop, which owns all state, and the thread waits for the answer). Both ask
`api_refusal` first, so they refuse alike.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

HandleApi = Callable[[str, bytes], Coroutine[Any, Any, tuple[int, Any]]]
Answered = Callable[[int], None]
"""Told every HTTP status the API answers with, in the event loop (for metrics)."""

REQUEST_TIMEOUT = 30.0
SHUTDOWN_POLL = 0.05
"""How often the listener thread checks for a stop (the stdlib's 0.5 s made every stop slow)."""
UNAUTHORIZED = {"err": "signature is invalid", "erc": 401}


API_PATH = "/api/v1"


def api_refusal(
    path: str, length: int | None, authorization: str, max_body: int
) -> tuple[int, Any] | str:
    """The answer to a request the API will not run, or the Bearer token of one it will."""
    if path.split("?", 1)[0].rstrip("/") != API_PATH:
        return HTTPStatus.NOT_FOUND, {"err": "not found", "erc": 404}
    if length is None:
        return HTTPStatus.LENGTH_REQUIRED, {"err": "length required", "erc": 400}
    if length > max_body:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"err": "too large", "erc": 413}
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return HTTPStatus.UNAUTHORIZED, UNAUTHORIZED
    return token.strip()


class ApiListener:
    def __init__(self, handle: HandleApi, max_body: int, answered: Answered) -> None:
        self._handle = handle
        self._max_body = max_body
        self._answered = answered
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        handler = _handler_class(self._handle, self._max_body, self._answered, loop)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        if tls is not None:
            # The handshake happens in the request's thread, at its first read, so a slow
            # client cannot hold up the thread that accepts.
            self._httpd.socket = tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name="hivectl-api",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    async def close(self) -> None:
        if self._httpd is not None:
            await asyncio.to_thread(self._httpd.shutdown)
            self._httpd.server_close()
            self._httpd = None


def _handler_class(
    handle: HandleApi, max_body: int, answered: Answered, loop: asyncio.AbstractEventLoop
) -> type[BaseHTTPRequestHandler]:
    class ApiHandler(BaseHTTPRequestHandler):
        server_version = "hivectl"
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = self._content_length()
            refusal = api_refusal(
                self.path, length, self.headers.get("Authorization", ""), max_body
            )
            if not isinstance(refusal, str):
                self.close_connection = True  # its body, unread, is not a next request
                self._send(HTTPStatus(refusal[0]), refusal[1])
                return
            body = self.rfile.read(length or 0)
            future = asyncio.run_coroutine_threadsafe(handle(refusal, body), loop)
            try:
                status, payload = future.result(timeout=REQUEST_TIMEOUT)
            except TimeoutError:
                future.cancel()
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"err": "timeout", "erc": 503})
                return
            self._send(HTTPStatus(status), payload)

        def _content_length(self) -> int | None:
            try:
                return int(self.headers.get("Content-Length", ""))
            except ValueError:
                return None

        def _send(self, status: HTTPStatus, payload: Any) -> None:
            loop.call_soon_threadsafe(answered, status.value)
            body = orjson.dumps(payload)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged one per line; the server's own log covers errors."""

    return ApiHandler
