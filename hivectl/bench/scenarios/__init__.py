"""The scenarios, one module each, all run by the load generator (`hivectl.bench.load`).

Each is ``async def run(ctx: Context) -> dict``: it prepares what it needs (objects,
watchers, connected riders), opens a `CpuWindow` around the measured phase only, and returns
JSON-ready figures and counts. Sizes and durations come from the plan. *connect*, *churn*
and *fanout* spread their connections over load processes, each running the scenario's
share class (`SHARES`).
"""

from __future__ import annotations

from hivectl.bench.scenarios import churn, connect, fanout, ingest, latency, scale, silent
from hivectl.bench.scenarios.common import Scenario
from hivectl.bench.worker import ShareFactory

SCENARIO_RUNS: dict[str, Scenario] = {
    "connect": connect.run,
    "latency": latency.run,
    "churn": churn.run,
    "fanout": fanout.run,
    "ingest": ingest.run,
    "silent": silent.run,
    "scale": scale.run,
}

SHARES: dict[str, ShareFactory] = {
    "connect": connect.ConnectShare,
    "churn": churn.ChurnShare,
    "fanout": fanout.FanoutShare,
}
"""What a load process (`hivectl.bench.worker`) runs for its share of a scenario."""
