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
  their memory is not counted per connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection

from hivectl.bench.procstat import CpuWindow, rss_bytes
from hivectl.bench.scenarios.common import Context, close_all, percentiles, register
from hivectl.sim.recorder import LatencyRecorder

SETTLE_S = 1.0


async def run(ctx: Context) -> dict[str, Any]:
    return {"runs": [await _connect(ctx, size) for size in ctx.plan.connect_sizes]}


async def _connect(ctx: Context, size: int) -> dict[str, Any]:
    object_ids = [f"p/{i}" for i in range(size)]
    await ctx.flavor.prepare(ctx.url, object_ids)
    hellos = ctx.flavor.hellos(object_ids)
    gate = asyncio.Semaphore(ctx.plan.in_flight)
    latency = LatencyRecorder()

    async def one(hello: str) -> ClientConnection:
        async with gate:
            started = time.monotonic()
            ws, _ = await register(ctx.flavor, ctx.url, hello)
            latency.record(time.monotonic() - started)
            return ws

    rss_before = rss_bytes(ctx.server_pid) if ctx.server_pid else None
    window = CpuWindow(ctx.server_pid)
    window.start()
    outcomes = await asyncio.gather(*(one(hello) for hello in hellos), return_exceptions=True)
    measured = window.stop()
    opened = [ws for ws in outcomes if isinstance(ws, ClientConnection)]
    failures = Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))
    await asyncio.sleep(SETTLE_S)
    rss_after = rss_bytes(ctx.server_pid) if ctx.server_pid else None
    await close_all(opened, ctx.plan.in_flight)
    seconds = measured["seconds"] or 1e-9
    per_connection = None
    if rss_before is not None and rss_after is not None and opened:
        per_connection = round((rss_after - rss_before) / len(opened), 1)
    return {
        "connections": size,
        "connected": len(opened),
        "failures": dict(failures),
        "connections_per_s": round(len(opened) / seconds, 1),
        "connect_ms": percentiles(latency),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "bytes_per_connection": per_connection,
        **measured,
    }
