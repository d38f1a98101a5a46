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

The providers are spread over the load processes (`hivectl.bench.worker`); each reports
every connect + close it made (when the hello left, when the close began), and this
process, which holds the watcher, matches them with what the watcher saw (the ledger keeps
an event seen before its cause is known aside until it is). Per connect + close, the
server's CPU seconds over the window / the cycles made.

Tokens: by default each provider reconnects with its one token, as a rider does (hivectl
serves a token it verified before from its cache). With ``new_tokens`` every connect
carries a token never seen before (new riders): the load processes mint a pool of them
before the measured phase, sized for `TOKEN_RATE` connects per second; a provider that
runs out mints more during it, counted as ``late_tokens`` (load-side CPU, never the
server's).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

from hivectl.bench.flavors import Flavor
from hivectl.bench.plan import BenchPlan
from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, PresenceTracker, register
from hivectl.bench.worker import RUN_MARGIN_S, Workers, split

RETRY_S = 0.1
"""Pause before a provider whose connect failed tries again."""
TOKEN_RATE = 4000.0
"""Connects per second the new-token pools are minted for: twice what this machine's
servers do (about 1,700 connects + closes per second)."""


def tokens_per_provider(plan: BenchPlan) -> int:
    """The size of each provider's pool of new tokens."""
    return math.ceil(plan.churn_seconds * TOKEN_RATE / plan.churn_providers) + 1


async def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    object_ids = [f"p/{i}" for i in range(plan.churn_providers)]
    await ctx.flavor.prepare(ctx.url, object_ids)
    parts = split(object_ids, ctx.load_processes)
    in_flight = -(-plan.in_flight // len(parts))
    tokens = tokens_per_provider(plan) if ctx.new_tokens else 0
    shares = [{"ids": part, "in_flight": in_flight, "tokens": tokens} for part in parts]
    window = CpuWindow(ctx.server_pid)
    async with Workers("churn", ctx.url, ctx.flavor, shares) as workers:
        watcher = await ctx.flavor.watch(ctx.url)
        async with PresenceTracker(ctx.flavor, watcher, deadline_s=plan.drain_seconds) as tracker:
            window.start()
            started = time.monotonic()
            stop_at = started + plan.churn_seconds
            results = await workers.run({"stop_at": stop_at}, plan.churn_seconds + RUN_MARGIN_S)
            for number, (part, result) in enumerate(zip(parts, results, strict=True)):
                for cycle, (index, sent, down) in enumerate(result["cycles"]):
                    tracker.up(f"{number}.{cycle}", part[index], sent)
                    tracker.down(f"{number}.{cycle}", down)
            await tracker.settled(plan.drain_seconds)
            measured = window.stop(workers.cpu)
        await workers.end()
    failures: Counter[str] = Counter()
    for result in results:
        failures.update(result["failures"])
    cycles = sum(len(result["cycles"]) for result in results)
    presence = tracker.summary()
    seconds = (tracker.last_seen_at or time.monotonic()) - started
    return {
        "providers": plan.churn_providers,
        "new_tokens": ctx.new_tokens,
        "cycles": cycles,
        "failures": dict(failures),
        "late_tokens": sum(result["late_tokens"] for result in results),
        "events_per_s": round(presence["seen"] / max(seconds, 1e-9), 1),
        "events_seconds": round(seconds, 3),
        "presence": presence,
        **measured,
    }


class ChurnShare:
    """One load process's providers: connect, register, close, until told time is up."""

    def __init__(self, flavor: Flavor, url: str, share: dict[str, Any]) -> None:
        self.flavor, self.url = flavor, url
        self.object_ids: list[str] = share["ids"]
        self.in_flight = int(share["in_flight"])
        self.tokens = int(share["tokens"])
        self.pools: list[list[str]] = []
        self.late = 0

    async def setup(self) -> None:
        """Every hello minted now: one per provider, or a pool of new ones each."""
        if self.tokens:
            self.pools = [
                [self.flavor.hello(object_id, serial) for serial in range(self.tokens, 0, -1)]
                for object_id in self.object_ids
            ]
        else:
            self.pools = [[hello] for hello in self.flavor.hellos(self.object_ids)]

    def _hello(self, index: int, serial: int) -> str:
        """The provider's next hello: its one token again, or a new one."""
        pool = self.pools[index]
        if not self.tokens:
            return pool[0]
        if pool:
            return pool.pop()
        self.late += 1
        return self.flavor.hello(self.object_ids[index], serial)

    async def run(self, go: dict[str, Any]) -> dict[str, Any]:
        stop_at = float(go["stop_at"])
        gate = asyncio.Semaphore(self.in_flight)
        failures: Counter[str] = Counter()
        cycles: list[tuple[int, float, float]] = []

        async def provider(index: int) -> None:
            serial = 0
            while time.monotonic() < stop_at:
                serial += 1
                try:
                    async with gate:
                        ws, sent = await register(self.flavor, self.url, self._hello(index, serial))
                except Exception as exc:
                    failures[type(exc).__name__] += 1
                    await asyncio.sleep(RETRY_S)
                    continue
                cycles.append((index, sent, time.monotonic()))
                await ws.close()

        await asyncio.gather(*(provider(index) for index in range(len(self.object_ids))))
        return {"cycles": cycles, "failures": dict(failures), "late_tokens": self.late}

    async def teardown(self) -> None:
        """Nothing: every connection was closed in its cycle."""
