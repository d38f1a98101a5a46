"""fanout: riders send location updates on a wall-clock grid; subscribers receive them all.

Open model: rider *i*'s *k*-th update is due at ``start + i/N * interval + k * interval``
and is sent then, whatever happened to the previous ones, so a slow server cannot slow the
senders down. Each update carries its due time, and latency runs from the due time to a
subscriber's receipt: when the load generator falls behind, its lag shows in the figures
instead of hiding (coordinated omission). ``send_lag_ms`` says how far behind it fell.

On hivectl an update is an ``obj``/``set`` (no reply) and a subscriber holds an object
subscription over the whole realm (``sty: rea``); the baseline rebroadcasts each update to
its watchers. Every subscriber expects every update; after the last one is sent, deliveries
may take up to the drain deadline. The figures: deliveries per second (from the first due
time to the last delivery), delivery latency, and the server's CPU time over that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, close_all, percentiles, register
from hivectl.sim.recorder import LatencyRecorder

START_DELAY_S = 0.5
"""From the last subscriber ready to the first update due: every task is waiting by then."""


async def run(ctx: Context) -> dict[str, Any]:
    plan, flavor = ctx.plan, ctx.flavor
    riders = plan.fanout_riders
    object_ids = [f"r/{i}" for i in range(riders)]
    await flavor.prepare(ctx.url, object_ids)
    hellos = flavor.hellos(object_ids)
    gate = asyncio.Semaphore(plan.in_flight)

    async def connect(hello: str) -> ClientConnection:
        async with gate:
            ws, _ = await register(flavor, ctx.url, hello)
            return ws

    connections = await asyncio.gather(*(connect(hello) for hello in hellos))
    subscribers = await asyncio.gather(
        *(flavor.subscribe(ctx.url) for _ in range(plan.fanout_subscribers))
    )
    per_rider = max(1, math.floor(plan.fanout_seconds / plan.update_interval))
    expected = riders * per_rider * len(subscribers)
    latency = LatencyRecorder()
    lag = LatencyRecorder()
    delivered = 0
    last_delivery: float | None = None
    all_delivered = asyncio.Event()

    async def receive(ws: ClientConnection) -> None:
        nonlocal delivered, last_delivery
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                now = time.monotonic()
                for due in flavor.update_times(frame):
                    latency.record(now - due)
                    delivered += 1
                last_delivery = now
                if delivered >= expected:
                    all_delivered.set()

    async def ride(index: int, ws: ClientConnection) -> None:
        phase = index / riders * plan.update_interval
        for step in range(per_rider):
            due = start + phase + step * plan.update_interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lag.record(time.monotonic() - due)
            await ws.send(flavor.update(object_ids[index], due, step))

    receivers = [asyncio.create_task(receive(ws)) for ws in subscribers]
    window = CpuWindow(ctx.server_pid)
    start = time.monotonic() + START_DELAY_S
    await asyncio.sleep(START_DELAY_S)
    window.start()
    await asyncio.gather(*(ride(i, ws) for i, ws in enumerate(connections)))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(plan.drain_seconds):
            await all_delivered.wait()
    measured = window.stop()
    for task in receivers:
        task.cancel()
    await close_all([*subscribers, *connections], plan.in_flight)
    seconds = (last_delivery or time.monotonic()) - start
    return {
        "riders": riders,
        "subscribers": len(subscribers),
        "updates": riders * per_rider,
        "expected_deliveries": expected,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / max(seconds, 1e-9), 1),
        "deliveries_seconds": round(seconds, 3),
        "latency_ms": percentiles(latency),
        "send_lag_ms": percentiles(lag),
        **measured,
    }
