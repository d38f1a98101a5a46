"""`hivectl simulate riders`: a fleet of simulated delivery riders against a server.

Thin: options -> `hivectl.sim.driver.SimConfig`, a Rich live panel on stderr while it runs,
the report at the end (Rich on stdout, or ``--json``). The plan, the measuring and the
report are `hivectl.sim`'s.

Exit codes: 0 the run completed; 1 it could not start (server unreachable, realm refused);
2 bad options or no signing key; 3 a ``--max-*`` threshold was crossed; 130 interrupted by
Ctrl-C -- after the report, which covers the run so far: a script can tell a cut-short run
from a complete one, and a person still gets the numbers. A second Ctrl-C quits at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
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

if TYPE_CHECKING:
    from hivectl.core.tokens import SigningKey
    from hivectl.sim.driver import SimConfig

EXIT_INTERRUPTED = 130

app = typer.Typer(help="Simulated fleets: load and presence checks.", no_args_is_help=True)


@app.command(
    epilog="Examples:\n\n"
    "  hivectl simulate riders --realm london --riders 50 --duration 60s\n\n"
    "  hivectl simulate riders --riders 1000 --ramp-up 30s --churn 0.2 --seed 7 --json\n\n"
    "  hivectl simulate riders --gateways 4 --devices-per-rider 0 --max-p99-ms 250 --max-lost 0"
)
def riders(
    url: str | None = typer.Option(
        None, "--url", help="Server WebSocket URL (default: config client.url)."
    ),
    realm: str = typer.Option("london", "--realm", help="Realm to ride in (created if missing)."),
    riders: int = typer.Option(100, "--riders", "-n", help="Number of riders."),
    devices_per_rider: int = typer.Option(
        1, "--devices-per-rider", help="Connections per rider, all providing its object."
    ),
    gateways: int = typer.Option(
        0, "--gateways", help="Gateway connections, each providing riders/g<k>-* (its riders)."
    ),
    duration: str = typer.Option("60s", "--duration", help="How long to ride: 30s, 5m."),
    ramp_up: str = typer.Option("10s", "--ramp-up", help="Spread the first connects over this."),
    concurrency: int = typer.Option(50, "--concurrency", help="Connects in progress at most."),
    update_interval: str = typer.Option(
        "1s", "--update-interval", help="Location updates per object, one per this interval."
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
    drain: str = typer.Option(
        "5s", "--drain", help="At the end, wait this long at most for outstanding events."
    ),
    abort_deadline: str = typer.Option(
        "45s", "--abort-deadline", help="How long the server may take to notice an abort."
    ),
    max_p99_ms: float | None = typer.Option(
        None, "--max-p99-ms", help="Exit 3 when any measured p99 is above this."
    ),
    max_lost: int | None = typer.Option(
        None, "--max-lost", help="Exit 3 when more presence events than this are lost."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No live panel on stderr."),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Ride a fleet of riders that connect, move, send updates, drop off and come back;
    report rates, presence events expected vs seen, and latency percentiles."""
    import secrets

    from hivectl.cli.credentials import signing_key_or_exit
    from hivectl.core.settings import parse_duration
    from hivectl.sim.driver import SimConfig
    from hivectl.sim.plan import Area, PlanParams, parse_range

    loaded = settings_from(
        config, {"client.url": url, **secret_file_flags(secret_file)}, SECRET_FILE_LABELS
    )
    try:
        params = PlanParams(
            riders=riders,
            devices_per_rider=devices_per_rider,
            gateways=gateways,
            seed=secrets.randbelow(2**31) if seed is None else seed,
            duration_s=parse_duration(duration),
            ramp_up_s=parse_duration(ramp_up),
            update_interval_s=parse_duration(update_interval),
            churn_per_min=churn,
            offline_s=parse_range(offline),
            abort_ratio=abort_ratio,
            area=Area.parse(area),
            speed_kmh=parse_range(speed),
        )
        sim_config = SimConfig(
            url=loaded.settings.client.url,
            realm=realm,
            params=params,
            concurrency=concurrency,
            drain_s=parse_duration(drain),
            abort_deadline_s=parse_duration(abort_deadline),
            max_p99_ms=max_p99_ms,
            max_lost=max_lost,
        )
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    problems = params.problems() + _config_problems(sim_config)
    if problems:
        for problem in problems:
            error(problem)
        raise typer.Exit(EXIT_USAGE)
    key = signing_key_or_exit(loaded.settings, "simulate riders")
    report = _run(sim_config, key, progress=not no_progress and err_console.is_terminal)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        from hivectl.sim.render import render_report

        Console().print(render_report(report))
    for violation in report["thresholds"]["violations"]:
        err_console.print(f"[red]threshold crossed:[/red] {violation}", highlight=False)
    if report["interrupted"]:
        raise typer.Exit(EXIT_INTERRUPTED)
    if report["thresholds"]["violations"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _config_problems(config: SimConfig) -> list[str]:
    problems = []
    if not 1 <= config.concurrency <= 10_000:
        problems.append("--concurrency must be from 1 to 10000")
    if config.drain_s > 600 or config.abort_deadline_s > 3600:
        problems.append("--drain is at most 10m and --abort-deadline at most 1h")
    if config.max_p99_ms is not None and config.max_p99_ms < 0:
        problems.append("--max-p99-ms must not be negative")
    if config.max_lost is not None and config.max_lost < 0:
        problems.append("--max-lost must not be negative")
    return problems


def _run(config: SimConfig, key: SigningKey, *, progress: bool) -> dict[str, Any]:
    """Run the simulation in its own event loop, with Ctrl-C as a clean stop."""
    import asyncio
    import contextlib
    import signal

    from rich.live import Live

    from hivectl.sim.driver import SetupError, Simulation
    from hivectl.sim.render import render_progress

    live = Live(console=err_console, refresh_per_second=4, transient=True) if progress else None

    async def main() -> dict[str, Any]:
        simulation = Simulation(
            config,
            key,
            on_progress=(lambda snap: live.update(render_progress(snap))) if live else None,
        )
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
