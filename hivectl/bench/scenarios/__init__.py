"""The scenarios, one module each, all run by the load generator (`hivectl.bench.load`).

Each is ``async def run(ctx: Context) -> dict``: it prepares what it needs (objects,
watchers, connected riders), opens a `CpuWindow` around the measured phase only, and returns
JSON-ready figures and counts. Sizes and durations come from the plan.
"""

from __future__ import annotations

from hivectl.bench.scenarios import churn, connect, fanout, ingest, latency, scale, silent
from hivectl.bench.scenarios.common import Scenario

SCENARIO_RUNS: dict[str, Scenario] = {
    "connect": connect.run,
    "latency": latency.run,
    "churn": churn.run,
    "fanout": fanout.run,
    "ingest": ingest.run,
    "silent": silent.run,
    "scale": scale.run,
}
