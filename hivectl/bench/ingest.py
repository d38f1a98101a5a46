"""Ingest benchmark: durable object updates per second through a real server.

What it measures is what a fleet of devices needs: many clients in parallel, each sending
``upd`` messages for its own objects and waiting for every reply before sending more. The
server replies to a write only once the batch holding it is committed to disk (group
commit, `server.stores.sqlite_storage`), so every counted update is durable. The figure is
acknowledged updates divided by wall time, measured after the objects exist.

Each client sends frames of ``per_frame`` messages (a gateway reporting for its devices
does the same) with one frame in flight; ``per_frame=1`` is the one-message-per-frame
worst case. Clients speak the protocol on raw WebSockets, without the client library, so
the load generator spends as little as possible per message.

``hivectl bench ingest`` runs it against a server it starts (SQLite, rate limit lifted:
it measures capacity, not the limiter), from the load generator's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from hivectl.core.wire import bearer, request

REALM = "bench"


@dataclass(frozen=True)
class IngestPlan:
    clients: int = 64
    updates_per_client: int = 2000
    per_frame: int = 20
    """Messages per frame; each client keeps one frame in flight."""
    objects_per_client: int = 100


@dataclass(frozen=True)
class IngestResult:
    plan: IngestPlan
    updates: int
    seconds: float
    updates_per_second: float


class _BenchClient:
    """One connection: sends frames of requests, waits for all their replies."""

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self._cids = itertools.count()

    @classmethod
    async def open(cls, url: str, token: str, number: int) -> _BenchClient:
        ws = await connect(url, proxy=None, max_size=None, compression=None, ping_interval=None)
        await ws.send(bearer(token))
        reply = orjson.loads(await ws.recv())[0]
        if reply.get("res") != "suc":
            raise RuntimeError(f"authentication failed: {reply.get('err')}")
        return cls(ws, number)

    async def call(self, messages: list[dict[str, Any]]) -> None:
        """Send `messages` as one frame; return when every one has a success reply."""
        waiting = set()
        for message in messages:
            message["cid"] = cid = f"{self.number}.{next(self._cids)}"
            waiting.add(cid)
        await self.ws.send(orjson.dumps(messages).decode())  # text frames only
        while waiting:
            for reply in orjson.loads(await self.ws.recv()):
                if reply.get("res") == "err":
                    raise RuntimeError(f"server error {reply.get('erc')}: {reply.get('err')}")
                waiting.discard(reply.get("cid"))

    def object_id(self, index: int) -> str:
        return f"client-{self.number}/object-{index}"


def _update(realm: str, object_id: str, step: int) -> dict[str, Any]:
    return request(
        "obj",
        "upd",
        rea=realm,
        id=object_id,
        loc={"lon": 8.5 + step % 1000 / 1e4, "lat": 47.3, "spe": step % 30},
        dat={"step": step, "battery": 100 - step % 100},
    )


async def measure_ingest(
    url: str, token: str, plan: IngestPlan = IngestPlan(), realm: str = REALM
) -> IngestResult:
    """Create the objects, then time the plan's acknowledged updates."""
    opened = await asyncio.gather(*(_BenchClient.open(url, token, n) for n in range(plan.clients)))
    try:
        with contextlib.suppress(RuntimeError):  # 409: the realm exists already
            await opened[0].call([request("rea", "cre", id=realm)])
        await asyncio.gather(*(_create_objects(c, realm, plan.objects_per_client) for c in opened))
        started = time.perf_counter()
        await asyncio.gather(*(_send_updates(c, realm, plan) for c in opened))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.ws.close() for c in opened))
    updates = plan.clients * plan.updates_per_client
    return IngestResult(plan, updates, round(seconds, 3), round(updates / seconds, 1))


async def _create_objects(client: _BenchClient, realm: str, count: int) -> None:
    creates = [request("obj", "cre", rea=realm, id=client.object_id(i)) for i in range(count)]
    for start in range(0, count, 100):
        await client.call(creates[start : start + 100])


async def _send_updates(client: _BenchClient, realm: str, plan: IngestPlan) -> None:
    updates, objects = plan.updates_per_client, plan.objects_per_client
    for start in range(0, updates, plan.per_frame):
        steps = range(start, min(start + plan.per_frame, updates))
        await client.call([_update(realm, client.object_id(s % objects), s) for s in steps])
