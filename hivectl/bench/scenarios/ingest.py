"""ingest: durable object updates per second.

`hivectl.bench.ingest.measure_ingest` is the measurement (many clients, frames of updates,
each acknowledged only once its SQLite group commit is done); this scenario only runs it
from the load generator's process, inside a CPU window, so that its figures sit beside the
others. The baseline has no storage: it is not run there.
"""

from __future__ import annotations

from typing import Any

from hivectl.bench.ingest import IngestPlan, measure_ingest
from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context


async def run(ctx: Context) -> dict[str, Any]:
    plan = IngestPlan(clients=ctx.plan.ingest_clients, updates_per_client=ctx.plan.ingest_updates)
    token = ctx.flavor.ingest_token()
    window = CpuWindow(ctx.server_pid)
    window.start()
    result = await measure_ingest(ctx.url, token, plan)
    measured = window.stop()
    return {
        "clients": plan.clients,
        "per_frame": plan.per_frame,
        "updates": result.updates,
        "updates_seconds": result.seconds,
        "updates_per_s": result.updates_per_second,
        **measured,
    }
