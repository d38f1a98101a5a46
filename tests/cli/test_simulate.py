"""`hivectl simulate riders` against real servers: the report's counts add up, presence
events seen equal those expected, every rider ends disconnected, gateways carry many riders
and ``--cleanup`` removes them, thresholds and a plan the server does not let through exit
3, a plan past the open-file limit exits 2 before connecting, Ctrl-C still reports.

The presence checks run the simulator's async entry point against an in-process server
with short ping settings; the exit-code checks run the CLI as its own process against a
`hivectl serve` process, the way an operator runs them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from hivectl.client import HivekitClient
from hivectl.core.tokens import SigningKey
from hivectl.sim.driver import SimConfig, Simulation
from hivectl.sim.plan import PlanParams, build_plan
from server.io.app import HivekitServer
from tests.cli.conftest import ServeProcess, clean_env, invoke, run_cli, words
from tests.conftest import SECRET, mint, running
from tests.server.wsutil import eventually

KEY = SigningKey("HS256", SECRET.encode())


@pytest.fixture
async def server() -> AsyncIterator[HivekitServer]:
    async with running({"limits.ping_interval": 0.5, "limits.ping_timeout": 0.5}) as started:
        yield started


async def final_statuses(server: HivekitServer, realm: str) -> dict[str, str]:
    async with HivekitClient(server.ws_url, mint("checker"), reconnect=False) as client:
        listed = await client.realm.handle(realm).object.list()
    return {oid: entry["cst"] for oid, entry in listed.items()}


def assert_presence_consistent(report: dict[str, Any], riders: int) -> None:
    presence = report["presence"]
    assert presence["expected"] > 0
    assert presence["seen"] == presence["expected"] == presence["matched"]
    assert presence["lost"] == presence["duplicated"] == presence["unexpected"] == 0
    assert presence["abort_unconfirmed"] == 0
    assert presence["objects_connected_once"] == riders
    assert presence["connected_at_end"] == 0


async def test_twenty_churning_riders_report_consistent_counts(server: HivekitServer) -> None:
    params = PlanParams(
        riders=20,
        seed=11,
        duration_s=4.0,
        ramp_up_s=1.0,
        update_interval_s=0.5,
        churn_per_min=30.0,
        offline_s=(0.3, 0.8),
        abort_ratio=0.5,
    )
    plan = build_plan(params)
    sessions = [s for conn in plan.connections for s in conn.sessions]
    assert any(s.ending == "abort" for s in sessions) and any(s.ending == "close" for s in sessions)

    report = await Simulation(SimConfig(server.ws_url, "sim", params, drain_s=3.0), KEY).run()

    connections = report["connections"]
    assert connections["failed"] == 0 and connections["dropped_by_server"] == {}
    assert connections["opened"] == connections["attempts"] == len(sessions)
    assert connections["aborted"] == sum(s.ending == "abort" for s in sessions)
    assert connections["closed"] == len(sessions) - connections["aborted"]
    assert_presence_consistent(report, riders=20)
    # one connect and one disconnect per session: no device shares an object here
    assert report["presence"]["expected"] == 2 * len(sessions)
    updates = report["updates"]
    assert updates["sent"] > 0 and updates["failed"] == 0
    assert updates["acknowledged"] + updates["interrupted"] == updates["sent"]
    for name in ("connect", "auth", "update_rtt", "presence", "presence_abort"):
        assert report["latency_ms"][name]["count"] > 0
    assert (
        report["latency_ms"]["presence"]["count"] + report["latency_ms"]["presence_abort"]["count"]
        == report["presence"]["matched"]
    )

    statuses = await final_statuses(server, "sim")
    assert {oid: statuses[oid] for oid in (r.object_id for r in plan.riders)} == {
        r.object_id: "dis" for r in plan.riders
    }


async def test_devices_and_gateways_share_objects(server: HivekitServer) -> None:
    params = PlanParams(
        riders=12,
        devices_per_rider=2,
        gateways=2,
        seed=3,
        duration_s=3.0,
        ramp_up_s=0.5,
        update_interval_s=0.5,
        churn_per_min=40.0,
        offline_s=(0.2, 0.5),
        abort_ratio=0.5,
    )
    report = await Simulation(SimConfig(server.ws_url, "shared", params, drain_s=3.0), KEY).run()
    assert report["connections"]["opened"] > 26  # 24 devices + 2 gateways, plus reconnects
    assert_presence_consistent(report, riders=12)
    statuses = await final_statuses(server, "shared")
    assert set(statuses.values()) == {"dis"}


async def test_three_hundred_riders_over_three_gateways_then_cleaned_up(
    server: HivekitServer,
) -> None:
    params = PlanParams(
        riders=300,
        devices_per_rider=0,
        gateways=3,
        seed=5,
        duration_s=3.0,
        ramp_up_s=0.3,
        update_interval_s=1.0,
        churn_per_min=0.0,
    )
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("fleet")
        await realm.object.create("depots/x")  # not the run's: cleanup leaves it alone
        await realm.object.create("riders/g0-000", label="there before")
    setups = []
    simulation = Simulation(
        SimConfig(server.ws_url, "fleet", params, drain_s=3.0, cleanup=True),
        KEY,
        on_setup=setups.append,
    )
    report = await simulation.run()

    assert report["shortfalls"] == []
    assert report["setup"] == {
        "objects": 299,
        "existing": 1,
        "done": 299,
        "failed": 0,
        "failures": {},
        "seconds": report["setup"]["seconds"],
    }
    lines = {snap.phase: snap.line() for snap in setups}  # the last line of each phase
    assert lines["creating objects"].startswith("creating objects: 299/299 (")
    assert lines["deleting objects"].startswith("deleting objects: 299/299 (")
    assert all(line.endswith(", done)") for line in lines.values())
    connections = report["connections"]
    assert connections["opened"] == connections["attempts"] == 3
    assert connections["never_connected"] == 0 and connections["dropped_by_server"] == {}
    updates = report["updates"]
    assert updates["failed"] == updates["missed"] == 0
    assert updates["acknowledged"] + updates["interrupted"] == updates["sent"] > 600
    assert_presence_consistent(report, riders=300)
    assert report["presence"]["expected"] == 600
    assert report["cleanup"]["done"] == 299 and report["cleanup"]["failed"] == 0
    assert simulation.cleanup is not None

    statuses = await final_statuses(server, "fleet")
    assert statuses == {"depots/x": "dis", "riders/g0-000": "dis"}


async def test_a_rider_the_server_refuses_is_retried_with_backoff_and_reported() -> None:
    """Room for the watcher and one rider: the other is refused (HTTP 503) at every try.
    With a fixed 1 s retry it would try 9 times in 8 s; the backoff (0.5-1 s, then 1-2,
    2-4, 4-8) allows at most 5, and the run says the rider never connected."""
    async with running({"limits.max_connections": 2}) as server:
        params = PlanParams(riders=2, seed=2, duration_s=8.0, ramp_up_s=0.5, churn_per_min=0.0)
        report = await Simulation(SimConfig(server.ws_url, "full", params), KEY).run()
    connections = report["connections"]
    assert connections["opened"] == 1 and connections["never_connected"] == 1
    assert connections["failures"] == {"http 503": connections["attempts"] - 1}
    assert 3 <= connections["attempts"] <= 1 + 5
    assert report["shortfalls"] == [
        f"1 of 2 planned connections never connected (http 503: {connections['failed']})"
    ]


def test_a_plan_past_the_open_file_limit_exits_2_before_connecting() -> None:
    env = {"HIVECTL_AUTH_SECRET": SECRET}
    nowhere = ("--url", "ws://127.0.0.1:9/ws", "--open-file-limit", "200")
    result = invoke("simulate", "riders", "-n", "500", *nowhere, env=env)
    assert result.exit_code == 2
    said = words(result.stderr)
    assert "needs 565 open files (500 rider connections, 65 spare)" in said
    assert "the limit is 200" in said and "ulimit -n 565" in said and "--gateways" in said

    result = invoke("simulate", "riders", "-n", "500", "--gateways", "5", *nowhere, env=env)
    assert result.exit_code == 1  # past the check: the server is not there
    assert "cannot connect" in result.stderr


def test_bad_options_exit_2() -> None:
    result = invoke("simulate", "riders", "--riders", "0", "--abort-ratio", "2")
    assert result.exit_code == 2
    assert "--riders" in result.stderr and "--abort-ratio" in result.stderr


@pytest.fixture
def serve(tmp_path: Path, serve_process: list[ServeProcess]) -> ServeProcess:
    process = ServeProcess(tmp_path, clean_env(HIVECTL_AUTH_SECRET=SECRET), "--storage", "memory")
    serve_process.append(process)
    return process


async def simulate(
    cwd: Path,
    *args: str,
    interrupt_when: Awaitable[None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """`hivectl simulate riders` as its own process: (exit code, stdout); SIGINT once
    `interrupt_when` is done."""
    code, out, _ = await simulate_with_stderr(
        cwd, "--no-progress", *args, interrupt_when=interrupt_when, env=env
    )
    return code, out


async def simulate_with_stderr(
    cwd: Path,
    *args: str,
    interrupt_when: Awaitable[None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hivectl",
        "simulate",
        "riders",
        "--json",
        *args,
        cwd=cwd,
        env=env or clean_env(HIVECTL_AUTH_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if interrupt_when is not None:
        await interrupt_when
        proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None, err
    return proc.returncode, out.decode(), err.decode()


async def test_a_plan_the_server_does_not_let_through_exits_3_and_says_why(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    strict = clean_env(
        HIVECTL_AUTH_SECRET=SECRET,
        HIVECTL_LIMITS_MESSAGES_PER_SECOND="100",
        HIVECTL_LIMITS_BURST="100",
    )
    serve = ServeProcess(tmp_path, strict, "--storage", "memory")
    serve_process.append(serve)
    code, out, err = await simulate_with_stderr(
        tmp_path,
        *("--url", serve.ws_url, "-n", "300", "--gateways", "3", "--duration", "2s"),
        *("--ramp-up", "200ms", "--churn", "0", "--cleanup", "--rate-per-object", "0"),
    )
    assert code == 3, err
    report = json.loads(out)
    assert report["setup"]["failed"] > 0
    assert "error 429: rate limited" in report["setup"]["failures"]
    lines = err.splitlines()
    assert any(line.startswith("creating objects: ") for line in lines)
    assert any(line.startswith("deleting objects: ") for line in lines)
    reasons = [line for line in lines if line.startswith("plan not carried out: ")]
    assert reasons == [f"plan not carried out: {line}" for line in report["shortfalls"]]
    assert "rider objects were not created (" in reasons[0]
    assert "error 429: rate limited: " in reasons[0]


async def test_an_impossible_threshold_exits_3_after_the_report(
    serve: ServeProcess, tmp_path: Path
) -> None:
    args = ("--url", serve.ws_url, "-n", "5", "--duration", "1s", "--ramp-up", "200ms")
    code, out = await simulate(tmp_path, *args, "--max-p99-ms", "0", "--seed", "1")
    assert code == 3
    report = json.loads(out)
    assert report["thresholds"]["max_p99_ms"] == 0
    assert any(v.startswith("p99 connect") for v in report["thresholds"]["violations"])

    code, out = await simulate(tmp_path, *args, "--max-p99-ms", "60000", "--max-lost", "0")
    assert code == 0
    assert json.loads(out)["thresholds"]["violations"] == []


async def test_ctrl_c_stops_cleanly_reports_and_exits_130(
    serve: ServeProcess, tmp_path: Path
) -> None:
    async def riders_online() -> None:
        async with HivekitClient(serve.ws_url, mint("checker"), reconnect=False) as client:

            async def all_ten() -> bool:
                return bool((await client.system.stats())["providers"] >= 10)

            await eventually(all_ten, interval=0.1)

    code, out = await simulate(
        tmp_path,
        *("--url", serve.ws_url, "-n", "10", "--duration", "60s", "--ramp-up", "200ms"),
        interrupt_when=riders_online(),
    )
    assert code == 130
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["elapsed_s"] < 30
    assert report["presence"]["lost"] == 0
    assert report["presence"]["connected_at_end"] == 0


async def test_per_figure_thresholds_a_short_run_and_the_load_generator_cpu(
    serve: ServeProcess, tmp_path: Path
) -> None:
    """A run shorter than the default ramp-up is ramped over the whole run (and says so);
    each --threshold judges its own figure; the report measures the simulator's own CPU."""
    code, out, err = await simulate_with_stderr(
        tmp_path,
        *("--url", serve.ws_url, "-n", "3", "--duration", "1s", "--seed", "3"),
        *("--threshold", "connect.p99<0.001ms", "--threshold", "presence.max<=1h30m"),
        *("--threshold", "lost<=0", "--no-progress"),
    )
    assert code == 3, err
    assert "note: --ramp-up defaults to 10s, longer than --duration 1s" in err
    report = json.loads(out)
    assert report["plan"]["ramp_up_s"] == 1.0
    thresholds = report["thresholds"]
    assert thresholds["rules"] == ["connect.p99<0.001 ms", "presence.max<=5400000 ms", "lost<=0"]
    (violation,) = thresholds["violations"]
    assert violation.startswith("connect.p99 ") and violation.endswith(" ms, not <0.001 ms")
    assert "threshold crossed: connect.p99" in err
    load = report["load_generator"]
    assert load["cpu_s"] > 0 and load["wall_s"] >= 1.0
    assert abs(load["cpu_share"] - load["cpu_s"] / load["wall_s"]) < 0.002  # each rounded


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--area", "a,b,c,d"), "error: --area: expected four numbers LAT1,LON1,LAT2,LON2"),
        (("--threshold", "presence.p98<5ms"), "error: --threshold: unknown metric"),
        (("--duration", "-5s"), "error: Invalid value for '--duration'"),
        (("--duration", "1h30m", "--ramp-up", "2h"), "error: --ramp-up must be from 0 to"),
    ],
)
def test_bad_flags_are_named_on_one_unwrapped_line(
    tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    result = run_cli("simulate", "riders", "--url", "ws://127.0.0.1:9/ws", *flags, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(named)
