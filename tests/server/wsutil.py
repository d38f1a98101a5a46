"""A raw protocol client for integration tests: frames by hand, replies by ``cid``, pushes.

Every message the server sends is kept in arrival order in `RawClient.received`; tests wait
for conditions over it with a deadline (`wait_for`, `reply`) instead of sleeping. To show that
nothing *more* arrives, send a marker request (`marker`): the server handles a connection's
frames in order and writes every push it caused before the marker's reply, so whatever was
going to arrive has arrived once the marker's reply is in.
"""

# ruff: noqa: ASYNC109 -- the helpers own their deadlines (`timeout=`), like asyncio.wait_for

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEADLINE = 5.0

Message = dict[str, Any]


class RawClient:
    """One WebSocket speaking the protocol by hand."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[Message] = []
        self.frames: list[Any] = []
        self._changed = asyncio.Condition()
        self._cids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str | None = None, **kwargs: Any) -> RawClient:
        """Connect (client pings off, no size limit) and, given a token, authenticate."""
        kwargs.setdefault("ping_interval", None)
        ws = await connect(url, proxy=None, max_size=None, **kwargs)
        client = cls(ws)
        if token is not None:
            reply = await client.auth(token)
            assert reply["res"] == "suc", reply
        return client

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                value = orjson.loads(frame)
                self.frames.append(value)
                async with self._changed:
                    self.received.extend(value if isinstance(value, list) else [value])
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def close(self) -> None:
        await self.ws.close()
        await self._reader

    # -- sending ---------------------------------------------------------------

    async def send(self, frame: Any) -> None:
        """Send a JSON value as a text frame; str and bytes go as they are."""
        if isinstance(frame, str | bytes):
            await self.ws.send(frame)
        else:
            await self.ws.send(orjson.dumps(frame).decode())

    def next_cid(self) -> str:
        return f"t{next(self._cids)}"

    async def auth(self, token: str) -> Message:
        """Send ``Bearer <token>`` and return the next ``sys/aut`` answer."""
        start = len(self.received)
        await self.ws.send(f"Bearer {token}")
        return await self.wait_for(
            lambda m: m.get("typ") == "sys" and m.get("act") == "aut", start=start
        )

    async def request(self, message: Message) -> Message:
        """Send one request (a ``cid`` is added when missing) and return its reply."""
        if "cid" not in message:
            message = {**message, "cid": self.next_cid()}
        await self.send([message])
        return await self.reply(message["cid"])

    async def ok(self, message: Message) -> Any:
        """A request that must succeed; returns the reply's ``dat``."""
        reply = await self.request(message)
        assert reply.get("res") == "suc", reply
        return reply.get("dat")

    async def marker(self) -> int:
        """A heartbeat round trip; returns the index of its reply in `received`."""
        cid = f"marker-{self.next_cid()}"
        await self.send([{"typ": "sys", "act": "hbt", "cid": cid}])
        await self.reply(cid)
        return next(i for i, m in enumerate(self.received) if m.get("cid") == cid)

    # -- receiving -------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Message], bool], *, start: int = 0, timeout: float = DEADLINE
    ) -> Message:
        """The first message from index `start` on that satisfies `predicate`."""
        async with asyncio.timeout(timeout), self._changed:
            index = start
            while True:
                while index < len(self.received):
                    message = self.received[index]
                    index += 1
                    if predicate(message):
                        return message
                if self.closed:
                    raise AssertionError(f"connection closed while waiting: {self.received}")
                await self._changed.wait()

    async def wait_count(
        self, predicate: Callable[[Message], bool], count: int, *, timeout: float = DEADLINE
    ) -> list[Message]:
        """Wait until at least `count` received messages satisfy `predicate`; return them."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = [m for m in self.received if predicate(m)]
                if len(found) >= count:
                    return found
                if self.closed:
                    raise AssertionError(f"closed with {len(found)} of {count} messages")
                await self._changed.wait()

    async def reply(self, cid: Any, *, timeout: float = DEADLINE) -> Message:
        return await self.wait_for(lambda m: m.get("cid") == cid, timeout=timeout)

    async def wait_closed(self, *, timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            await self._reader

    def pushes(self, event: str | None = None) -> list[Message]:
        """Pub/sub pushes received so far (of one event name when given)."""
        return [
            m
            for m in self.received
            if m.get("typ") == "rea"
            and m.get("act") == "pub"
            and "res" not in m
            and (event is None or m["dat"]["eve"] == event)
        ]

    def statuses(self) -> list[tuple[str, str, str]]:
        """``connectionStatusChanged`` pushes so far as (realm, object id, cst)."""
        return [
            (m["rea"], m["dat"]["idp"], m["dat"]["dat"]["cst"])
            for m in self.pushes("connectionStatusChanged")
        ]


def is_status(object_id: str | None = None, cst: str | None = None) -> Callable[[Message], bool]:
    """A predicate for ``connectionStatusChanged`` pushes."""

    def check(message: Message) -> bool:
        if message.get("typ") != "rea" or message.get("act") != "pub" or "res" in message:
            return False
        body = message.get("dat") or {}
        if body.get("eve") != "connectionStatusChanged":
            return False
        if object_id is not None and body.get("idp") != object_id:
            return False
        return cst is None or body.get("dat", {}).get("cst") == cst

    return check


def subscribe_msg(realm: str, event: str = "connectionStatusChanged", idp: str = "*") -> Message:
    return {"typ": "rea", "act": "sub", "id": realm, "dat": {"eve": event, "idp": idp}}


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = DEADLINE, interval: float = 0.01
) -> None:
    """Poll an async condition until it holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)


async def until(
    condition: Callable[[], bool],
    what: str = "condition",
    *,
    timeout: float = DEADLINE,
    interval: float = 0.01,
) -> None:
    """Poll a plain condition until it holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met before the deadline")
        await asyncio.sleep(interval)


def http_post(url: str, body: Any, token: str | None) -> tuple[int, Any]:
    """POST a JSON body (bytes go as they are); returns (status, decoded JSON body)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=DEADLINE) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def post(url: str, body: Any, token: str | None) -> tuple[int, Any]:
    return await asyncio.to_thread(http_post, url, body, token)
