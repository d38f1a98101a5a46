"""`hivectl simulate riders`: a fleet of simulated delivery riders against a server.

Thin: options -> `hivectl.sim.driver.SimConfig`, progress on stderr while it runs (a Rich
bar and live panel on a terminal, a plain line every few seconds otherwise), the report at
the end (Rich on stdout, or ``--json``). The plan, the measuring and the report are
`hivectl.sim`'s.

Before connecting, the plan's need for file descriptors is checked against the open-file
limit (`hivectl.sim.budget`): a plan this machine cannot hold is refused with what to change.

Exit codes: 0 the run completed; 1 it could not start (server unreachable, realm refused);
2 bad options, no signing key, or too low an open-file limit; 3 a ``--max-*`` threshold was
crossed, or the run could not carry out its plan (objects not created, connections never
made, updates not delivered, objects not cleaned up: one stderr line per reason); 130
interrupted by Ctrl-C -- after the report, which covers the run so far: a script can tell
a cut-short run from a complete one, and a person still gets the numbers. A second Ctrl-C
quits at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape

from hivectl.cli.common import (
    CA_FILE_OPTION,
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    client_tls,
    duration_flag,
    err_console,
    error,
    fail,
    note,
    secret_file_flags,
    settings_from,
)

if TYPE_CHECKING:
    from hivectl.core.tokens import SigningKey
    from hivectl.sim.driver import SimConfig
    from hivectl.sim.report import LiveSnapshot, SetupSnapshot

Snap = TypeVar("Snap")
T = TypeVar("T")
PLAIN_SETUP_EVERY_S = 2.0
PLAIN_PROGRESS_EVERY_S = 10.0

app = typer.Typer(help="Simulated fleets: load and presence checks.", no_args_is_help=True)


@app.command(
    epilog="Examples:\n\n"
    "  hivectl simulate riders --realm london --riders 50 --duration 60s\n\n"
    "  hivectl simulate riders --riders 1000 --ramp-up 30s --churn 0.2 --seed 7 --json\n\n"
    "  hivectl simulate riders --gateways 4 --devices-per-rider 0 --max-p99-ms 250 --max-lost 0\n\n"
    "  hivectl simulate riders --riders 100000 --gateways 10 --update-interval 15s --cleanup"
)
def riders(
    url: str | None = typer.Option(
        None, "--url", help="Server WebSocket URL (default: config client.url)."
    ),
    realm: str = typer.Option("london", "--realm", help="Realm to ride in (created if missing)."),
    riders: int = typer.Option(100, "--riders", "-n", help="Number of riders."),
    devices_per_rider: int | None = typer.Option(
        None,
        "--devices-per-rider",
        help="Connections per rider, all providing its object (default: 1, or 0 with --gateways).",
    ),
    gateways: int = typer.Option(
        0,
        "--gateways",
        help="Spread the riders over this many gateway connections, each providing "
        "riders/g<k>-* and sending its riders' updates in frames.",
    ),
    duration: float = typer.Option(
        "60s",
        "--duration",
        parser=duration_flag,
        metavar="DURATION",
        help="How long to ride: 30s, 5m.",
    ),
    ramp_up: float | None = typer.Option(
        None,
        "--ramp-up",
        parser=duration_flag,
        metavar="DURATION",
        help="Spread the first connects over this (default 10s, or --duration when shorter).",
    ),
    concurrency: int = typer.Option(50, "--concurrency", help="Connects in progress at most."),
    update_interval: float = typer.Option(
        "1s",
        "--update-interval",
        parser=duration_flag,
        metavar="DURATION",
        help="Location updates per object, one per this interval.",
    ),
    churn: float = typer.Option(
        0.1, "--churn", help="Fraction of connections dropping off per minute (0.1 = 10%/min)."
    ),
    offline: str = typer.Option(
        "5..30", "--offline", help="Seconds offline after a drop, MIN..MAX."
    ),
    abort_ratio: float = typer.Option(
        0.3, "--abort-ratio", help="Share of drops that are abrupt (no close frame)."
    ),
    area: str = typer.Option(
        "51.48,-0.20,51.54,-0.05", "--area", help="Bounding box LAT1,LON1,LAT2,LON2."
    ),
    speed: str = typer.Option("10..25", "--speed", help="Rider speeds in km/h, MIN..MAX."),
    seed: int | None = typer.Option(
        None, "--seed", help="Same seed, same routes and churn schedule (default: random)."
    ),
    drain: float = typer.Option(
        "5s",
        "--drain",
        parser=duration_flag,
        metavar="DURATION",
        help="At the end, wait this long at most for outstanding events.",
    ),
    abort_deadline: float = typer.Option(
        "45s",
        "--abort-deadline",
        parser=duration_flag,
        metavar="DURATION",
        help="How long the server may take to notice an abort.",
    ),
    threshold: list[str] = typer.Option(
        [],
        "--threshold",
        metavar="METRIC<LIMIT",
        help="Exit 3 when this figure is not under the limit, k6 style; repeatable:"
        " 'presence.p99<500ms', 'connect.p95<=1s', 'lost<=0' (latencies connect, auth,"
        " update_rtt, presence, presence_abort with .p50 .p95 .p99 .max; counts lost,"
        " duplicated, late, unexpected).",
    ),
    max_p99_ms: float | None = typer.Option(
        None, "--max-p99-ms", help="Exit 3 when any measured p99 is above this (ms)."
    ),
    max_lost: int | None = typer.Option(
        None, "--max-lost", help="Exit 3 when more presence events than this are lost."
    ),
    cleanup: bool = typer.Option(
        False, "--cleanup", help="Delete the rider objects this run created when it ends."
    ),
    rate_per_connection: float = typer.Option(
        800.0,
        "--rate-per-connection",
        help="Messages/s each connection may send (keep under the server's "
        "limits.messages_per_second).",
    ),
    rate_per_object: float = typer.Option(
        1.5,
        "--rate-per-object",
        help="Extra messages/s per object a connection provides (under the server's "
        "limits.messages_per_object; 0 for servers without it).",
    ),
    open_file_limit: int | None = typer.Option(
        None, "--open-file-limit", hidden=True, help="Check against this limit (tests)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    no_progress: bool = typer.Option(
        False, "--no-progress", help="No progress on stderr (bar, live panel or lines)."
    ),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """Ride a fleet of riders that connect, move, send updates, drop off and come back;
    report rates, presence events expected vs seen, and latency percentiles."""
    import secrets

    from hivectl.cli.credentials import signing_key_or_exit
    from hivectl.core.settings import format_duration
    from hivectl.sim.budget import descriptors_needed, open_file_problem
    from hivectl.sim.driver import SimConfig
    from hivectl.sim.plan import DEFAULT_RAMP_UP_S, Area, PlanParams, default_ramp_up, parse_range
    from hivectl.sim.report import LATENCIES
    from hivectl.sim.thresholds import parse_threshold

    loaded = settings_from(
        config,
        {
            "client.url": url,
            "client.ca_file": str(ca_file) if ca_file else None,
            **secret_file_flags(secret_file),
        },
        {**SECRET_FILE_LABELS, "client.ca_file": "--ca-file"},
    )
    if devices_per_rider is None:
        devices_per_rider = 0 if gateways else 1
    if ramp_up is None:
        ramp_up = default_ramp_up(duration)
        if ramp_up < DEFAULT_RAMP_UP_S:
            note(
                f"--ramp-up defaults to {format_duration(DEFAULT_RAMP_UP_S)}, longer than"
                f" --duration {format_duration(duration)}: ramping up over the whole run"
            )
    params = PlanParams(
        riders=riders,
        devices_per_rider=devices_per_rider,
        gateways=gateways,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        duration_s=duration,
        ramp_up_s=ramp_up,
        update_interval_s=update_interval,
        churn_per_min=churn,
        offline_s=_parsed("--offline", parse_range, offline),
        abort_ratio=abort_ratio,
        area=_parsed("--area", Area.parse, area),
        speed_kmh=_parsed("--speed", parse_range, speed),
    )
    sim_config = SimConfig(
        url=loaded.settings.client.url,
        tls=client_tls(loaded.settings.client.ca_file),
        realm=realm,
        params=params,
        concurrency=concurrency,
        drain_s=drain,
        abort_deadline_s=abort_deadline,
        max_p99_ms=max_p99_ms,
        max_lost=max_lost,
        thresholds=tuple(
            _parsed("--threshold", lambda text: parse_threshold(text, LATENCIES), rule)
            for rule in threshold
        ),
        cleanup=cleanup,
        rate_per_connection=rate_per_connection,
        rate_per_object=rate_per_object,
    )
    problems = params.problems() + _config_problems(sim_config)
    if problems:
        for problem in problems:
            error(problem)
        raise typer.Exit(EXIT_USAGE)
    connections = params.riders * params.devices_per_rider + params.gateways
    needed = descriptors_needed(connections)
    soft, hard = _open_file_limits(open_file_limit)
    too_few = open_file_problem(
        needed, soft, hard, connections=connections, gateways=params.gateways
    )
    if too_few is not None:
        fail(too_few, EXIT_USAGE)
    key = signing_key_or_exit(loaded.settings, "simulate riders")
    mode = "off" if no_progress else "live" if err_console.is_terminal else "lines"
    report = _run(sim_config, key, mode)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        from hivectl.sim.render import render_report

        Console().print(render_report(report))
    for violation in report["thresholds"]["violations"]:
        err_console.print(f"[red]threshold crossed:[/red] {violation}", highlight=False)
    for shortfall in report["shortfalls"]:
        err_console.print(
            f"[red]plan not carried out:[/red] {escape(shortfall)}", highlight=False, soft_wrap=True
        )
    if report["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report["thresholds"]["violations"] or report["shortfalls"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _parsed(flag: str, parse: Callable[[str], T], text: str) -> T:
    """`parse`'s value, or a usage error (exit 2) that names the flag."""
    try:
        return parse(text)
    except ValueError as exc:
        fail(f"{flag}: {exc}", EXIT_USAGE)


def _open_file_limits(assumed: int | None) -> tuple[int, int | None]:
    """(soft, hard) RLIMIT_NOFILE, hard None when unlimited; `assumed` stands for both."""
    if assumed is not None:
        return assumed, assumed
    try:
        import resource
    except ImportError:  # no such limit on this platform
        return 0, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, None if hard == resource.RLIM_INFINITY else hard


def _config_problems(config: SimConfig) -> list[str]:
    problems = []
    if not 1 <= config.concurrency <= 10_000:
        problems.append("--concurrency must be from 1 to 10000")
    if not 1 <= config.rate_per_connection <= 1_000_000 or not 0 <= config.rate_per_object <= 1000:
        problems.append("--rate-per-connection must be 1 to 1000000, --rate-per-object 0 to 1000")
    if config.drain_s > 600 or config.abort_deadline_s > 3600:
        problems.append("--drain is at most 10m and --abort-deadline at most 1h")
    if config.max_p99_ms is not None and config.max_p99_ms < 0:
        problems.append("--max-p99-ms must not be negative")
    if config.max_lost is not None and config.max_lost < 0:
        problems.append("--max-lost must not be negative")
    return problems


def _run(config: SimConfig, key: SigningKey, mode: str) -> dict[str, Any]:
    """Run the simulation in its own event loop, with Ctrl-C as a clean stop. `mode` says
    how progress shows on stderr: ``live`` (a Rich bar, then the live panel), ``lines``
    (a plain line every few seconds) or ``off``."""
    import asyncio
    import contextlib
    import signal

    from rich.live import Live

    from hivectl.sim.driver import SetupError, Simulation
    from hivectl.sim.render import progress_line, render_progress, render_setup

    live = (
        Live(console=err_console, refresh_per_second=4, transient=True) if mode == "live" else None
    )
    on_progress: Callable[[LiveSnapshot], None] | None = None
    on_setup: Callable[[SetupSnapshot], None] | None = None
    if live is not None:
        on_progress = lambda snap: live.update(render_progress(snap))  # noqa: E731
        on_setup = lambda snap: live.update(render_setup(snap))  # noqa: E731
    elif mode == "lines":
        on_progress = _every(PLAIN_PROGRESS_EVERY_S, progress_line, lambda snap: snap.stopping)
        on_setup = _every(PLAIN_SETUP_EVERY_S, lambda snap: snap.line(), lambda s: s.finished)

    async def main() -> dict[str, Any]:
        simulation = Simulation(config, key, on_progress=on_progress, on_setup=on_setup)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal() -> None:
            if simulation.interrupted and task is not None:
                task.cancel()
            else:
                err_console.print("stopping: closing every rider (Ctrl-C again to quit now)")
                simulation.interrupt()

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, on_signal)
        return await simulation.run()

    try:
        with live or contextlib.nullcontext():
            return asyncio.run(main())
    except SetupError as exc:
        fail(str(exc), EXIT_FAILURE)
    except (KeyboardInterrupt, asyncio.CancelledError):
        fail("interrupted", EXIT_INTERRUPTED)


def _every(
    seconds: float, line: Callable[[Snap], str], final: Callable[[Snap], bool]
) -> Callable[[Snap], None]:
    """A progress callback that prints `line` on stderr at most every `seconds`, and when a
    snapshot turns `final` (a phase finished, the run stopping), so a log shows where the
    run is without repeating itself."""
    import time

    last = [-float("inf")]
    was_final = [False]

    def emit(snap: Snap) -> None:
        now = time.monotonic()
        is_final = final(snap)
        if (is_final and not was_final[0]) or (not is_final and now - last[0] >= seconds):
            last[0] = now
            err_console.print(line(snap), highlight=False, markup=False, soft_wrap=True)
        was_final[0] = is_final

    return emit
