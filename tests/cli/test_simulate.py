"""`hivectl simulate riders` against real servers: the report's counts add up, presence
events seen equal those expected, every rider ends disconnected, thresholds exit 3, Ctrl-C
still reports.

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
from server.app import HivekitServer
from tests.cli.conftest import ServeProcess, clean_env, invoke
from tests.conftest import SECRET, make_settings, mint
from tests.server.wsutil import eventually

KEY = SigningKey("HS256", SECRET.encode())


@pytest.fixture
async def server() -> AsyncIterator[HivekitServer]:
    running = HivekitServer(
        make_settings(**{"limits.ping_interval": 0.5, "limits.ping_timeout": 0.5})
    )
    await running.start()
    try:
        yield running
    finally:
        await running.close()


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
    cwd: Path, *args: str, interrupt_when: Awaitable[None] | None = None
) -> tuple[int, str]:
    """`hivectl simulate riders` as its own process: (exit code, stdout); SIGINT once
    `interrupt_when` is done."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hivectl",
        "simulate",
        "riders",
        "--json",
        "--no-progress",
        *args,
        cwd=cwd,
        env=clean_env(HIVECTL_AUTH_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if interrupt_when is not None:
        await interrupt_when
        proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None, err
    return proc.returncode, out.decode()


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
