"""`hivectl bench`: the performance benchmark, side by side with a bare `websockets` server.

Thin: options -> `hivectl.bench.plan.PlanOptions`, `hivectl.bench.runner.run_bench` (which
starts the servers and the load generators), then the report as a Rich table on stdout or
``--json``. Progress lines go to stderr.

Exit codes: 0 the bench ran and every target it could judge was met; 3 a target was not
met (after the report, one ``target not met:`` line each on stderr), as `simulate` does
for its thresholds, so CI can gate on it; 1 a scenario could not run; 2 bad options or,
with ``--url``, no signing key; 130 interrupted by Ctrl-C, after the report of the runs
that finished.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    duration_flag,
    err_console,
    error,
    fail,
    secret_file_flags,
    settings_from,
)
from hivectl.cli.serve import LogLevel


class Scenario(StrEnum):
    connect = "connect"
    latency = "latency"
    churn = "churn"
    fanout = "fanout"
    ingest = "ingest"
    silent = "silent"
    scale = "scale"


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Scenarios: connect (connections/s, memory per idle connection, server CPU"
        " per authenticated connect), latency (join/leave p50-p99), churn (presence events/s,"
        " none lost, server CPU per connect + close; with reused and with new tokens), fanout"
        " (deliveries/s to realm subscribers, server CPU per delivered push), ingest (durable"
        " updates/s), silent (time to notice a stopped provider). Named only, not in the"
        " default run: scale (realms of 10,000 and 100,000 objects, in memory and in SQLite:"
        " memory per object, restart, full state, presence count, one gateway's updates, a"
        " mass disconnect; hivectl only).\n\nExamples:\n\n"
        "  hivectl bench\n\n  hivectl bench --quick\n\n"
        "  hivectl bench connect churn fanout --pin --load-processes 2\n\n"
        "  hivectl bench churn fanout --connections 2000 --duration 30s --json\n\n"
        "  hivectl bench scale --objects 10000,100000"
    )(bench)


def bench(
    scenarios: list[Scenario] | None = typer.Argument(
        None, help="Scenarios to run (default: all but scale).", show_default=False
    ),
    quick: bool = typer.Option(False, "--quick", help="Small sizes: a smoke run in seconds."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Load this running hivectl on this machine instead of starting one; tokens are"
        " signed with the configured key (--secret-file, $HIVECTL_AUTH_SECRET).",
    ),
    connections: int | None = typer.Option(
        None,
        "--connections",
        help="Providers for connect (instead of 1,000 and 5,000), churn and fanout riders.",
    ),
    duration: float | None = typer.Option(
        None,
        "--duration",
        parser=duration_flag,
        metavar="DURATION",
        help="Length of churn and fanout (default 10s).",
    ),
    ping_interval: float | None = typer.Option(
        None,
        "--ping-interval",
        parser=duration_flag,
        metavar="DURATION",
        help="Keepalive of the servers the bench starts (default: each one's own).",
    ),
    ping_timeout: float | None = typer.Option(
        None,
        "--ping-timeout",
        parser=duration_flag,
        metavar="DURATION",
        help="Keepalive timeout, likewise (default: each one's own).",
    ),
    rounds: int | None = typer.Option(
        None,
        "--rounds",
        help="Runs of each scenario per server, taking turns; the report gives medians"
        " (default 3, 1 with --quick; silent always runs once).",
    ),
    objects: str | None = typer.Option(
        None,
        "--objects",
        help="Realm sizes for scale, separated by commas (default 10000,100000).",
    ),
    load_processes: int | None = typer.Option(
        None,
        "--load-processes",
        help="Processes that drive connect, churn and fanout (default: one per core but one).",
    ),
    log_level: LogLevel | None = typer.Option(
        None,
        "--log-level",
        help="Log level of the hivectl the bench starts (default warning; info, the"
        " server's default, shows what logging costs).",
    ),
    pin: bool = typer.Option(
        False,
        "--pin",
        help="Run each server on one core of its own and the load processes on the others.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Measure the server beside a bare websockets server, in the same run: connections/s,
    memory per connection, presence latency, churn, fan-out, durable ingest, dead peers;
    and, named alone, how the server holds up with large realms (scale)."""
    import json

    from rich.console import Console

    from hivectl.bench.plan import SCALE, SCENARIOS, PlanOptions, parse_sizes, plan_problems
    from hivectl.bench.render import render_report
    from hivectl.bench.report import build_report
    from hivectl.bench.runner import Job, PinError, run_bench
    from hivectl.core.tokens import SigningKey

    try:
        options = PlanOptions(
            quick=quick,
            connections=connections,
            duration=duration,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            rounds=rounds,
            objects=parse_sizes(objects) if objects is not None else None,
            load_processes=load_processes,
            log_level=log_level.value if log_level is not None else None,
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    plan = options.plan()
    problems = plan_problems(plan)
    if problems:
        for problem in problems:
            error(problem)
        raise typer.Exit(EXIT_USAGE)
    chosen = [s.value for s in scenarios] if scenarios else list(SCENARIOS)
    key: SigningKey | None = None
    if url is not None:
        if SCALE in chosen:
            fail("scale starts and restarts servers of its own: not with --url", EXIT_USAGE)
        from hivectl.cli.credentials import signing_key_or_exit

        if not _is_loopback(url):
            fail(f"--url must name a server on this machine (loopback), not {url}", EXIT_USAGE)

        loaded = settings_from(config, secret_file_flags(secret_file), SECRET_FILE_LABELS)
        key = signing_key_or_exit(loaded.settings, "bench --url")

    def progress(job: Job) -> None:
        several = plan.rounds > 1 and job.scenario not in ("silent", SCALE)
        turn = f" (round {job.round + 1} of {plan.rounds})" if several else ""
        text = f"running {job.label} on {job.target}{turn}"
        err_console.print(f"[dim]{text}[/dim]", highlight=False)

    try:
        raw = run_bench(chosen, options, url=url, key=key, progress=progress, pin=pin)
    except PinError as exc:
        fail(str(exc), EXIT_USAGE)
    report = build_report(raw)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        Console().print(render_report(report))
    if report["interrupted"]:
        finished = len(report["runs"])
        fail(f"interrupted: the report covers the {finished} runs that finished", EXIT_INTERRUPTED)
    if report["errors"]:
        raise typer.Exit(EXIT_FAILURE)
    missed = [target for target in report["targets"] if target["met"] is False]
    for target in missed:
        err_console.print(
            f"[red]target not met:[/red] {escape(target_line(target))}", highlight=False
        )
    if missed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def target_line(target: dict[str, Any]) -> str:
    """``connect 1,000: connections/s >= 0.8x the baseline's (0.71x)``."""
    value = target["value"]
    shown = "no figure" if value is None else f"{value:g}{target['unit'] and ' ' + target['unit']}"
    detail = f"; {target['detail']}" if target.get("detail") else ""
    return f"{target['target']} ({shown}{detail})"


def _is_loopback(url: str) -> bool:
    """The bench only loads servers on this machine: thousands of connections are no way to
    test someone's production server, and CPU and memory figures need the same machine."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
