"""latency: one provider connects and closes, again and again, while a watcher listens.

Each cycle waits for the watcher to see the event before the next step, so the figures are
free of queueing: *join* runs from the provider's hello leaving to the watcher receiving
``con``, *leave* from the start of the provider's close to the watcher receiving ``dis``,
both on this process's one monotonic clock. An event not seen within the drain deadline
counts as lost and the cycle goes on.
"""

from __future__ import annotations

import time
from typing import Any

from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, PresenceTracker, percentiles, register

OBJECT_ID = "p/0"


async def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    await ctx.flavor.prepare(ctx.url, [OBJECT_ID])
    (hello,) = ctx.flavor.hellos([OBJECT_ID])
    watcher = await ctx.flavor.watch(ctx.url)
    window = CpuWindow(ctx.server_pid)
    async with PresenceTracker(ctx.flavor, watcher, deadline_s=plan.drain_seconds) as tracker:
        window.start()
        for cycle in range(plan.latency_cycles):
            ws, sent = await register(ctx.flavor, ctx.url, hello)
            tracker.up(f"c{cycle}", OBJECT_ID, sent)
            await tracker.settled(plan.drain_seconds)
            tracker.down(f"c{cycle}", time.monotonic())
            await ws.close()
            await tracker.settled(plan.drain_seconds)
        measured = window.stop()
    return {
        "cycles": plan.latency_cycles,
        "join_ms": percentiles(tracker.latency["con"]),
        "leave_ms": percentiles(tracker.latency["dis"]),
        "presence": tracker.summary(),
        **measured,
    }
