"""churn: providers connect and close continuously; a watcher counts the presence events.

Each provider covers its own object and loops -- connect, register, close -- until the
duration is over, at most ``in_flight`` connects in progress at once (as in *connect*).
Every accepted registration expects a ``con`` and every close a ``dis`` for that object, in
order; after the load stops, events still missing once the drain deadline has passed are
*lost*, events seen twice *duplicated*. The figure is presence events seen per second, from
the start to the last event seen.

A connect that fails (refused, timed out, a hello not accepted) is counted by reason and
the provider tries again; what the server published for it, if anything, shows up as
*unexpected*.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, PresenceTracker, register

RETRY_S = 0.1
"""Pause before a provider whose connect failed tries again."""


async def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    object_ids = [f"p/{i}" for i in range(plan.churn_providers)]
    await ctx.flavor.prepare(ctx.url, object_ids)
    hellos = ctx.flavor.hellos(object_ids)
    watcher = await ctx.flavor.watch(ctx.url)
    gate = asyncio.Semaphore(plan.in_flight)
    failures: Counter[str] = Counter()
    cycles = 0
    window = CpuWindow(ctx.server_pid)

    async with PresenceTracker(ctx.flavor, watcher, deadline_s=plan.drain_seconds) as tracker:

        async def provider(index: int) -> None:
            nonlocal cycles
            object_id, hello = object_ids[index], hellos[index]
            while time.monotonic() < stop_at:
                try:
                    async with gate:
                        ws, sent = await register(ctx.flavor, ctx.url, hello)
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    await asyncio.sleep(RETRY_S)
                    continue
                conn = f"{index}.{cycles}"
                cycles += 1
                tracker.up(conn, object_id, sent)
                tracker.down(conn, time.monotonic())
                await ws.close()

        window.start()
        started = time.monotonic()
        stop_at = started + plan.churn_seconds
        await asyncio.gather(*(provider(index) for index in range(len(object_ids))))
        await tracker.settled(plan.drain_seconds)
        measured = window.stop()
    presence = tracker.summary()
    seconds = (tracker.last_seen_at or time.monotonic()) - started
    return {
        "providers": plan.churn_providers,
        "cycles": cycles,
        "failures": dict(failures),
        "events_per_s": round(presence["seen"] / max(seconds, 1e-9), 1),
        "events_seconds": round(seconds, 3),
        "presence": presence,
        **measured,
    }
