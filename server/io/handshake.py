"""The opening handshake's common case, read and answered cheaply, by `websockets`' rules.

Every connection opens with an HTTP upgrade request. `websockets` reads it line by line
through generator-based coroutines and validates it header by header through its general
parsers, then formats a date and serializes a response from a `Headers` object: about a
fifth of the server's CPU in a connect + close (``hivectl bench`` churn, py-spy). Nearly
every client sends the same kind of request, whole, in one read. Here that request is read
in one pass and answered from a template; every other request -- split over several reads,
HTTP/1.0, a body, repeated or unusual upgrade headers, extensions to negotiate, a
subprotocol, anything `websockets` would refuse -- goes `websockets`' own way, unchanged,
and gets its answer there. So the common case costs less and no request is answered
differently:

* `HandshakeProtocol.parse` takes a complete request from the first read when
  `quick_request` can: the same limits (`websockets.http11.MAX_LINE_LENGTH`, ``MAX_NUM_HEADERS``),
  the same header name and value rules (`websockets.http11`'s own expressions), the same
  `Request`; frames that follow are `websockets`' to parse as before;
* `quick_accept` checks what `ServerProtocol.accept` checks, for requests whose upgrade
  headers come once each in their plain form (``Connection: Upgrade``, ``Upgrade: websocket``,
  a valid ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version: 13``, an allowed ``Origin``) and
  that ask for no extension or subprotocol the server would have to negotiate, and returns
  the 101 response `accept` would, with its ``Date`` formatted once per second.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import time
from collections.abc import Generator

from websockets import http11
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.typing import Origin
from websockets.utils import accept_key

_HEAD = re.compile(
    rb"GET ([\x21-\x7e]+) HTTP/1\.1\r\n((?:"
    + http11._token_re.pattern
    + rb":"
    + http11._value_re.pattern
    + rb"\r\n)*)"
)
"""A request line whose target has no spaces or controls (`websockets` asks only for
ASCII), then header lines as `websockets.http11.parse_headers` accepts them: a name of its
token characters, a colon, a value of its value characters (which spaces and tabs around
it, stripped there, belong to); no CR or LF inside either."""


class HandshakeProtocol(ServerProtocol):
    """`websockets`' server protocol, reading the common request in one pass."""

    def parse(self) -> Generator[None, None, None]:
        # Started by Protocol.__init__, which runs it to this first yield: nothing to read yet.
        yield
        request = None if self.debug else quick_request(self.reader.buffer)
        if request is None:
            yield from ServerProtocol.parse(self)  # websockets' own way, from the first byte
            return
        self.events.append(request)
        yield from Protocol.parse(self)  # frames, as ServerProtocol.parse goes on to


def quick_request(buffer: bytearray) -> Request | None:
    """The request at the start of `buffer` (removed from it), when it is all there and in
    the form `Request.parse` accepts with nothing to decide: ``GET``, HTTP/1.1, a path of
    printable ASCII, valid header lines, no body. None leaves `buffer` as it was."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0 or end + 4 > http11.MAX_LINE_LENGTH:
        return None  # incomplete, or longer than one line may be: websockets reads it
    head = _HEAD.fullmatch(buffer, 0, end + 2)  # up to the last header line's CRLF
    if head is None:
        return None
    pairs: list[tuple[str, str]] = []
    by_name: dict[str, list[str]] = {}
    for line in head[2].split(b"\r\n")[:-1]:
        raw_name, _, raw_value = line.partition(b":")
        name, value = raw_name.decode("ascii"), raw_value.strip(b" \t").decode("iso-8859-1")
        by_name.setdefault(name.lower(), []).append(value)
        pairs.append((name, value))
    if len(pairs) > http11.MAX_NUM_HEADERS:
        return None
    if "transfer-encoding" in by_name or "content-length" in by_name:
        return None
    # What Headers.set_insecure builds, one header at a time, as parse_headers calls it.
    headers = Headers.__new__(Headers)
    headers._dict = by_name
    headers._list = pairs
    path = head[1].decode("ascii")  # before the buffer changes under the match
    del buffer[: end + 4]
    return Request(path, headers)


def _no_headers() -> Headers:
    """An empty `Headers`, as ``Headers()`` makes it (without its update call)."""
    headers = Headers.__new__(Headers)
    headers._dict = {}
    headers._list = []
    return headers


class _Accepted(Response):
    """A 101 response serialized once, from the template."""

    raw: bytes = b""

    def serialize(self) -> bytes:
        return self.raw


_date_second = -1
_date = b""


def http_date() -> bytes:
    """The ``Date`` header's value, formatted once per second."""
    global _date_second, _date
    now = time.time()
    second = int(now)
    if second != _date_second:
        _date = email.utils.formatdate(now, usegmt=True).encode("ascii")
        _date_second = second
    return _date


def quick_accept(protocol: ServerProtocol, request: Request, server: bytes) -> Response | None:
    """What ``protocol.accept(request)`` returns, plus a ``Server: server`` header, for the
    common valid request; None for any other, which `ServerProtocol.accept` must answer
    (and which it may refuse)."""
    if protocol.debug or request.method != "GET" or request.protocol != "HTTP/1.1":
        return None
    if protocol.available_subprotocols or "select_subprotocol" in vars(protocol):
        return None  # a subprotocol to choose, even when the client offers none
    headers = request.headers
    connection = headers.get_all("Connection")
    upgrade = headers.get_all("Upgrade")
    key = headers.get_all("Sec-WebSocket-Key")
    version = headers.get_all("Sec-WebSocket-Version")
    origins = headers.get_all("Origin")
    if (
        len(connection) != 1
        or connection[0].lower() != "upgrade"
        or len(upgrade) != 1
        or upgrade[0].lower() != "websocket"
        or len(key) != 1
        or version != ["13"]
        or len(origins) > 1
        or "Sec-WebSocket-Protocol" in headers
        or (protocol.available_extensions and "Sec-WebSocket-Extensions" in headers)
    ):
        return None
    try:
        raw_key = base64.b64decode(key[0].encode(), validate=True)
    except binascii.Error:
        return None
    if len(raw_key) != 16:
        return None
    origin = Origin(origins[0]) if origins else None
    if protocol.origins is not None and origin not in protocol.origins:
        return None  # websockets may still match a pattern, or refuse it
    protocol.accept_called = True
    protocol.origin = origin
    response = _Accepted(101, "Switching Protocols", _no_headers())
    response.raw = b"".join(
        (
            b"HTTP/1.1 101 Switching Protocols\r\nDate: ",
            http_date(),
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
            accept_key(key[0]).encode(),
            b"\r\nServer: ",
            server,
            b"\r\n\r\n",
        )
    )
    return response
