"""The load generator: one scenario against one server, its figures as JSON on stdout.

    python -m hivectl.bench.load SCENARIO --url ws://127.0.0.1:PORT/ws
        [--flavor hivectl|baseline] [--server-pid PID] [--quick] [--connections N]
        [--duration SECONDS] [--ping-interval SECONDS] [--ping-timeout SECONDS]
        [--objects N[,N...]] [--load-processes N] [--new-tokens] [--json]

It runs in a process of its own, apart from the server it loads, so that each side's CPU
time is its own and a busy load generator shows as such rather than as a slow server. With
``--server-pid`` (the server must run on this machine) it reads the server's CPU time and
memory from ``/proc`` around the measured phase; its own CPU time comes with them, so the
report can tell which side ran out first. *connect*, *churn* and *fanout* spread their
connections over ``--load-processes`` worker processes (`hivectl.bench.worker`; default:
one per core this process may use, but one), whose CPU time joins its own. ``--new-tokens``
makes *churn* connect with a new token every time.

The signing key (hivectl's, or the baseline's secret) comes on stdin as one JSON line,
``{"algorithm": "HS256", "key": SECRET, "kid": null}`` -- not on the command line, where
``ps`` would show it. The plan options are those of ``hivectl bench`` and mean the same
(`hivectl.bench.plan`).
Exit codes: 0 with the figures printed, 1 when the scenario could not run, 2 bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import sys
from collections.abc import Sequence

import orjson
from websockets.asyncio.server import serve
from websockets.exceptions import WebSocketException

from hivectl.bench.flavors import Flavor, SetupError, flavor_named, key_from
from hivectl.bench.plan import (
    SELECTABLE,
    TARGETS,
    BenchPlan,
    PlanOptions,
    default_load_processes,
    parse_sizes,
    plan_problems,
)
from hivectl.bench.procstat import usable_cores
from hivectl.bench.scenarios import SCENARIO_RUNS
from hivectl.bench.scenarios.common import Context
from hivectl.core.settings import LimitsSettings
from hivectl.sim.driver import raise_open_file_limit

GC_THRESHOLD = (10_000, 10, 10)
"""Fewer garbage collections than CPython's default (700): thousands of open connections
make every full collection long, and the load generator is often what runs out of CPU
first (``hivectl serve`` is tuned alike, `server.io.runner.GC_THRESHOLD`)."""


def keepalive(flavor: str, plan: BenchPlan) -> tuple[float, float]:
    """(ping interval, ping timeout) of the server under test: the plan's, else its default."""
    if flavor == "hivectl":
        limits = LimitsSettings()
        defaults = (limits.ping_interval, limits.ping_timeout)
    else:
        parameters = inspect.signature(serve).parameters
        defaults = (parameters["ping_interval"].default, parameters["ping_timeout"].default)
    interval = plan.ping_interval if plan.ping_interval is not None else defaults[0]
    timeout = plan.ping_timeout if plan.ping_timeout is not None else defaults[1]
    return float(interval), float(timeout)


def _flavor(name: str) -> Flavor:
    try:
        key = key_from(orjson.loads(sys.stdin.readline() or "null"))
    except (ValueError, orjson.JSONDecodeError):
        raise SystemExit("the signing key must come as one JSON line on stdin") from None
    return flavor_named(name, key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hivectl.bench.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("scenario", choices=SELECTABLE)
    parser.add_argument("--url", required=True, help="the server's WebSocket URL")
    parser.add_argument("--flavor", choices=TARGETS, default="hivectl")
    parser.add_argument("--server-pid", type=int, help="the server's pid, for CPU and memory")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--duration", type=float, help="seconds")
    parser.add_argument("--ping-interval", type=float, help="seconds")
    parser.add_argument("--ping-timeout", type=float, help="seconds")
    parser.add_argument("--objects", help="realm sizes of scale, separated by commas")
    parser.add_argument("--load-processes", type=int, help="processes connect/churn/fanout use")
    parser.add_argument("--new-tokens", action="store_true", help="churn: a new token per connect")
    parser.add_argument("--json", action="store_true", help="one compact JSON line")
    args = parser.parse_args(argv)
    try:
        objects = parse_sizes(args.objects) if args.objects is not None else None
    except ValueError as exc:
        parser.error(str(exc))
    plan = PlanOptions(
        args.quick,
        args.connections,
        args.duration,
        args.ping_interval,
        args.ping_timeout,
        objects=objects,
        load_processes=args.load_processes,
    ).plan()
    problems = plan_problems(plan)
    if problems:
        parser.error("; ".join(problems))
    needed = max(*plan.connect_sizes, plan.churn_providers, plan.fanout_riders) + 256
    open_files = raise_open_file_limit(needed + plan.fanout_subscribers)
    if open_files.note:
        print(f"warning: {open_files.note}", file=sys.stderr)
    gc.set_threshold(*GC_THRESHOLD)
    interval, timeout = keepalive(args.flavor, plan)
    processes = plan.load_processes or default_load_processes(len(usable_cores()))
    context = Context(
        _flavor(args.flavor),
        args.url,
        plan,
        args.server_pid,
        interval,
        timeout,
        load_processes=processes,
        new_tokens=args.new_tokens,
    )
    try:
        result = asyncio.run(SCENARIO_RUNS[args.scenario](context))
    except (SetupError, OSError, WebSocketException, TimeoutError) as exc:
        print(f"{args.scenario} on {args.flavor} failed: {exc!r}", file=sys.stderr)
        return 1
    output = {"scenario": args.scenario, "flavor": args.flavor, "result": result}
    option = 0 if args.json else orjson.OPT_INDENT_2
    print(orjson.dumps(output, option=option).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
