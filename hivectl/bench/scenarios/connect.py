"""connect: providers connect and register, ``in_flight`` at a time, then stay idle.

Figures, for each size of the plan:

* connections per second, over the window from the first connect to the last acceptance
  (TCP + WebSocket handshake + the hello and its reply -- on hivectl a JWT verified and a
  provider registered with the presence engine);
* how long one such connect took: its tail shows SYNs the kernel dropped when the server's
  accept queue overflowed, which the client sends again only a second later;
* the server's resident memory per idle connection, (RSS with all connected - RSS before)
  / N, read `SETTLE_S` after the last acceptance so that work the connects caused has
  finished. The objects the providers cover exist beforehand (a fleet's riders do), so
  their memory is not counted per connection;
* the server's CPU time per authenticated connect: its CPU seconds over the window / the
  connections made.

The providers are spread over the load processes (`hivectl.bench.worker`), each with its
share of ``in_flight``; they hold their connections until the memory is read.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection

from hivectl.bench.flavors import Flavor
from hivectl.bench.procstat import CpuWindow, rss_bytes
from hivectl.bench.scenarios.common import Context, close_all, percentiles, register
from hivectl.bench.worker import RUN_MARGIN_S, Workers, split
from hivectl.sim.recorder import LatencyRecorder

SETTLE_S = 1.0


async def run(ctx: Context) -> dict[str, Any]:
    return {"runs": [await _connect(ctx, size) for size in ctx.plan.connect_sizes]}


async def _connect(ctx: Context, size: int) -> dict[str, Any]:
    object_ids = [f"p/{i}" for i in range(size)]
    await ctx.flavor.prepare(ctx.url, object_ids)
    parts = split(object_ids, ctx.load_processes)
    in_flight = -(-ctx.plan.in_flight // len(parts))
    shares = [{"ids": part, "in_flight": in_flight} for part in parts]
    async with Workers("connect", ctx.url, ctx.flavor, shares) as workers:
        rss_before = rss_bytes(ctx.server_pid) if ctx.server_pid else None
        window = CpuWindow(ctx.server_pid)
        window.start()
        results = await workers.run({}, RUN_MARGIN_S)
        measured = window.stop(workers.cpu)
        await asyncio.sleep(SETTLE_S)
        rss_after = rss_bytes(ctx.server_pid) if ctx.server_pid else None
        await workers.end()
    connected = sum(result["connected"] for result in results)
    failures: Counter[str] = Counter()
    latency = LatencyRecorder()
    for result in results:
        failures.update(result["failures"])
        latency.merge(LatencyRecorder.from_state(result["latency"]))
    seconds = measured["seconds"] or 1e-9
    per_connection = None
    if rss_before is not None and rss_after is not None and connected:
        per_connection = round((rss_after - rss_before) / connected, 1)
    return {
        "connections": size,
        "connected": connected,
        "failures": dict(failures),
        "connections_per_s": round(connected / seconds, 1),
        "connect_ms": percentiles(latency),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "bytes_per_connection": per_connection,
        **measured,
    }


class ConnectShare:
    """One load process's providers: connect them all, then hold them until the end."""

    def __init__(self, flavor: Flavor, url: str, share: dict[str, Any]) -> None:
        self.flavor, self.url = flavor, url
        self.object_ids: list[str] = share["ids"]
        self.in_flight = int(share["in_flight"])
        self.hellos: list[str] = []
        self.opened: list[ClientConnection] = []

    async def setup(self) -> None:
        self.hellos = self.flavor.hellos(self.object_ids)

    async def run(self, go: dict[str, Any]) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.in_flight)
        latency = LatencyRecorder()

        async def one(hello: str) -> ClientConnection:
            async with gate:
                started = time.monotonic()
                ws, _ = await register(self.flavor, self.url, hello)
                latency.record(time.monotonic() - started)
                return ws

        outcomes = await asyncio.gather(*(one(h) for h in self.hellos), return_exceptions=True)
        self.opened = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
        failures = Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))
        return {
            "connected": len(self.opened),
            "failures": dict(failures),
            "latency": latency.state(),
        }

    async def teardown(self) -> None:
        await close_all(self.opened, self.in_flight)
