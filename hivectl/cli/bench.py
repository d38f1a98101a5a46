"""`hivectl bench`: the performance benchmark, side by side with a bare `websockets` server.

Thin: options -> `hivectl.bench.plan.PlanOptions`, `hivectl.bench.runner.run_bench` (which
starts the servers and the load generators), then the report as a Rich table on stdout or
``--json``. Progress lines go to stderr.

Exit codes: 0 the bench ran (whether targets were met is in the report: a benchmark
measures, it does not gate); 1 a scenario could not run; 2 bad options or, with ``--url``,
no signing key.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    err_console,
    error,
    fail,
    secret_file_flags,
    settings_from,
)


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
    duration: str | None = typer.Option(
        None, "--duration", help="Length of churn and fanout (default 10s)."
    ),
    ping_interval: str | None = typer.Option(
        None,
        "--ping-interval",
        help="Keepalive of the servers the bench starts (default: each one's own).",
    ),
    ping_timeout: str | None = typer.Option(
        None, "--ping-timeout", help="Keepalive timeout, likewise (default: each one's own)."
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
    from hivectl.core.settings import parse_duration
    from hivectl.core.tokens import SigningKey

    try:
        options = PlanOptions(
            quick=quick,
            connections=connections,
            duration=parse_duration(duration) if duration is not None else None,
            ping_interval=parse_duration(ping_interval) if ping_interval is not None else None,
            ping_timeout=parse_duration(ping_timeout) if ping_timeout is not None else None,
            rounds=rounds,
            objects=parse_sizes(objects) if objects is not None else None,
            load_processes=load_processes,
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
    if report["errors"]:
        raise typer.Exit(EXIT_FAILURE)


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
