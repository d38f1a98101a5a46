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
time to the last delivery), delivery latency, the server's CPU time over that window and
per delivered push (its CPU seconds / the deliveries).

Riders and subscribers are spread over the load processes (`hivectl.bench.worker`): each
connects its share before the measured phase, sends its riders' updates on the shared grid
(the start time comes with ``go``; the processes share the machine's monotonic clock) and
counts what its subscribers receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hivectl.bench.flavors import Flavor
from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, close_all, percentiles, register
from hivectl.bench.worker import RUN_MARGIN_S, Workers, split
from hivectl.sim.recorder import LatencyRecorder

START_DELAY_S = 0.5
"""From the go to the first update due: every load process is waiting by then."""


def counts(total: int, parts: int) -> list[int]:
    """`total` in `parts` counts that differ by one at most (some may be 0)."""
    return [total // parts + (index < total % parts) for index in range(parts)]


async def run(ctx: Context) -> dict[str, Any]:
    plan, flavor = ctx.plan, ctx.flavor
    riders = plan.fanout_riders
    object_ids = [f"r/{i}" for i in range(riders)]
    await flavor.prepare(ctx.url, object_ids)
    per_rider = max(1, math.floor(plan.fanout_seconds / plan.update_interval))
    updates = riders * per_rider
    parts = split(list(enumerate(object_ids)), ctx.load_processes)
    shares = [
        {
            "riders": part,
            "riders_total": riders,
            "per_rider": per_rider,
            "interval": plan.update_interval,
            "subscribers": subscribers,
            "expected": updates * subscribers,
            "in_flight": -(-plan.in_flight // len(parts)),
            "drain_seconds": plan.drain_seconds,
        }
        for part, subscribers in zip(
            parts, counts(plan.fanout_subscribers, len(parts)), strict=True
        )
    ]
    window = CpuWindow(ctx.server_pid)
    async with Workers("fanout", ctx.url, flavor, shares) as workers:
        start = time.monotonic() + START_DELAY_S
        running = asyncio.create_task(
            workers.run({"start": start}, plan.fanout_seconds + RUN_MARGIN_S)
        )
        await asyncio.sleep(start - time.monotonic())
        window.start()
        results = await running
        measured = window.stop(workers.cpu)
        await workers.end()
    latency, lag = LatencyRecorder(), LatencyRecorder()
    for result in results:
        latency.merge(LatencyRecorder.from_state(result["latency"]))
        lag.merge(LatencyRecorder.from_state(result["lag"]))
    delivered = sum(result["delivered"] for result in results)
    last = [result["last_delivery"] for result in results if result["last_delivery"] is not None]
    seconds = (max(last) if last else time.monotonic()) - start
    return {
        "riders": riders,
        "subscribers": plan.fanout_subscribers,
        "updates": updates,
        "expected_deliveries": updates * plan.fanout_subscribers,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / max(seconds, 1e-9), 1),
        "deliveries_seconds": round(seconds, 3),
        "latency_ms": percentiles(latency),
        "send_lag_ms": percentiles(lag),
        **measured,
    }


class FanoutShare:
    """One load process's riders and subscribers."""

    def __init__(self, flavor: Flavor, url: str, share: dict[str, Any]) -> None:
        self.flavor, self.url, self.share = flavor, url, share
        self.riders: list[tuple[int, str, ClientConnection]] = []
        self.subscribers: list[ClientConnection] = []

    async def setup(self) -> None:
        gate = asyncio.Semaphore(int(self.share["in_flight"]))

        async def connect(index: int, object_id: str) -> tuple[int, str, ClientConnection]:
            async with gate:
                ws, _ = await register(self.flavor, self.url, self.flavor.hello(object_id))
                return index, object_id, ws

        self.riders = await asyncio.gather(*(connect(i, o) for i, o in self.share["riders"]))
        self.subscribers = await asyncio.gather(
            *(self.flavor.subscribe(self.url) for _ in range(int(self.share["subscribers"])))
        )

    async def run(self, go: dict[str, Any]) -> dict[str, Any]:
        start, flavor = float(go["start"]), self.flavor
        interval, per_rider = float(self.share["interval"]), int(self.share["per_rider"])
        riders, expected = int(self.share["riders_total"]), int(self.share["expected"])
        latency, lag = LatencyRecorder(), LatencyRecorder()
        delivered = 0
        last_delivery: float | None = None
        all_delivered = asyncio.Event()
        if expected == 0:
            all_delivered.set()

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

        async def ride(index: int, object_id: str, ws: ClientConnection) -> None:
            phase = index / riders * interval
            for step in range(per_rider):
                due = start + phase + step * interval
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                lag.record(time.monotonic() - due)
                await ws.send(flavor.update(object_id, due, step))

        receivers = [asyncio.create_task(receive(ws)) for ws in self.subscribers]
        await asyncio.gather(*(ride(*rider) for rider in self.riders))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(self.share["drain_seconds"])):
                await all_delivered.wait()
        for task in receivers:
            task.cancel()
        return {
            "delivered": delivered,
            "latency": latency.state(),
            "lag": lag.state(),
            "last_delivery": last_delivery,
        }

    async def teardown(self) -> None:
        connections = [*self.subscribers, *(ws for _, _, ws in self.riders)]
        await close_all(connections, int(self.share["in_flight"]))
