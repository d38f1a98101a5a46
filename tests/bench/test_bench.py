"""`hivectl bench`: one quick run of every scenario against both servers, and its report.

The quick run starts real processes (``hivectl serve``, the baseline, the load generators
with two load processes each for connect, churn and fanout, a provider that is stopped with
SIGSTOP), so it is shared by the tests of this module. They check the report's structure
and that its counts are consistent -- never timings, which depend on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets
from rich.console import Console
from typer.testing import CliRunner

from hivectl.bench import baseline
from hivectl.bench.load import main as load_main
from hivectl.bench.plan import QUICK, SCENARIOS, PlanOptions, plan_problems
from hivectl.bench.procstat import cpu_seconds, rss_bytes
from hivectl.bench.render import render_report
from hivectl.bench.report import build_report
from hivectl.bench.runner import plan_jobs
from hivectl.bench.servers import hivectl_server
from hivectl.cli import app
from hivectl.cli.bench import target_line
from server.io.app import LISTEN_BACKLOG
from tests.conftest import SECRET, mint
from tests.server.wsutil import eventually

LOAD_PROCESSES = 2


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["bench", "--quick", "--json", "--load-processes", str(LOAD_PROCESSES)]
    )
    report = dict(json.loads(result.stdout))
    assert result.exit_code == exit_code_for(report), result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("target not met: ")] == [
        f"target not met: {target_line(target)}"
        for target in report["targets"]
        if target["met"] is False
    ]
    return report


def exit_code_for(report: dict[str, Any]) -> int:
    """A quick run on a shared machine may miss a target: then, and only then, it exits 3."""
    return 3 if any(target["met"] is False for target in report["targets"]) else 0


def results(report: dict[str, Any], label: str) -> dict[str, dict[str, Any]]:
    return {run["target"]: run["result"] for run in report["runs"] if run["label"] == label}


def row(report: dict[str, Any], label: str, figure: str) -> dict[str, Any]:
    (found,) = [r for r in report["rows"] if r["scenario"] == label and r["figure"] == figure]
    return found


def test_every_scenario_runs_on_both_servers_except_ingest(report: dict[str, Any]) -> None:
    assert report["errors"] == []
    ran = {(run["scenario"], run["target"]) for run in report["runs"]}
    expected = {(s, t) for s in SCENARIOS for t in ("hivectl", "baseline")}
    assert ran == expected - {("ingest", "baseline")}
    assert {row["scenario"].split()[0] for row in report["rows"]} == set(SCENARIOS)
    churns = {
        (run["label"], run["new_tokens"]) for run in report["runs"] if run["scenario"] == "churn"
    }
    assert churns == {("churn", False), ("churn new tokens", True)}
    ingest = [row for row in report["rows"] if row["scenario"] == "ingest"]
    assert [row["baseline"] for row in ingest] == ["n/a"]


def test_connect_counts_every_provider(report: dict[str, Any]) -> None:
    (size,) = QUICK.connect_sizes
    for result in results(report, f"connect {size}").values():
        assert result["connected"] == result["connections"] == size
        assert result["failures"] == {}
        assert result["connect_ms"]["count"] == size
        assert result["rss_after_bytes"] > 0


def test_latency_sees_every_join_and_leave(report: dict[str, Any]) -> None:
    for result in results(report, "latency").values():
        cycles = result["cycles"]
        assert result["join_ms"]["count"] == result["leave_ms"]["count"] == cycles
        presence = result["presence"]
        assert presence["expected"] == presence["seen"] == presence["matched"] == 2 * cycles
        assert presence["lost"] == presence["duplicated"] == presence["unexpected"] == 0


def test_churn_loses_and_duplicates_nothing_with_reused_or_new_tokens(
    report: dict[str, Any],
) -> None:
    for label, new_tokens in (("churn", False), ("churn new tokens", True)):
        for result in results(report, label).values():
            presence = result["presence"]
            assert result["new_tokens"] is new_tokens
            assert result["failures"] == {}
            assert result["cycles"] > 0
            assert presence["expected"] == presence["seen"] == 2 * result["cycles"]
            assert presence["lost"] == presence["duplicated"] == presence["unexpected"] == 0
            assert presence["matched"] == presence["expected"]


def test_connect_churn_and_fanout_say_how_many_load_processes_drove_them(
    report: dict[str, Any],
) -> None:
    assert report["load"] == {"processes": LOAD_PROCESSES, "pinned": None}
    for run in report["runs"]:
        result = run["result"]
        if run["scenario"] in ("connect", "churn", "fanout"):
            assert result["load_processes"] == LOAD_PROCESSES
            assert result["load_cores"] == len(os.sched_getaffinity(0))
            assert 0 < result["load_cpu_max_s"] <= result["load_cpu_s"]
        else:
            assert "load_processes" not in result


def test_server_cpu_per_operation_is_reported_for_both_servers(report: dict[str, Any]) -> None:
    (size,) = QUICK.connect_sizes
    figures = [
        (f"connect {size}", "server CPU per authenticated connect", "connected", 1e3),
        ("churn", "server CPU per connect + close", "cycles", 1e3),
        ("churn new tokens", "server CPU per connect + close", "cycles", 1e3),
        ("fanout", "server CPU per delivered push", "deliveries", 1e6),
    ]
    for label, figure, count, scale in figures:
        shown = row(report, label, figure)
        for target, result in results(report, label).items():
            assert result["server_cpu_s"] > 0, (label, target)
            per_operation = result["server_cpu_s"] / result[count] * scale
            assert shown[target] == pytest.approx(per_operation, rel=1e-3), (label, target)
            # No server does an operation in less than a microsecond.
            assert shown[target] >= (1e-3 if scale == 1e3 else 1.0)
        assert shown["ratio"] == round(shown["hivectl"] / shown["baseline"], 2)


def test_the_cost_targets_of_issue_19_are_judged(report: dict[str, Any]) -> None:
    judged = [t for t in report["targets"] if "server CPU per" in t["target"]]
    assert [t["target"].split(":")[0] for t in judged] == [
        f"connect {QUICK.connect_sizes[0]}",
        "churn",
        "churn new tokens",
    ]
    assert all(t["met"] in (True, False) for t in judged)


def test_fanout_delivers_every_update_to_every_subscriber(report: dict[str, Any]) -> None:
    for result in results(report, "fanout").values():
        assert result["expected_deliveries"] == result["updates"] * result["subscribers"]
        assert result["deliveries"] == result["expected_deliveries"]
        assert result["latency_ms"]["count"] == result["deliveries"]


def test_ingest_counts_its_updates(report: dict[str, Any]) -> None:
    result = results(report, "ingest")["hivectl"]
    assert result["updates"] == QUICK.ingest_clients * QUICK.ingest_updates


def test_silent_providers_are_all_declared_gone(report: dict[str, Any]) -> None:
    for result in results(report, "silent").values():
        assert result["detection_s"]["count"] == result["providers"] == QUICK.silent_providers
        assert result["presence"]["abort_unconfirmed"] == 0
        assert (result["ping_interval_s"], result["ping_timeout_s"]) == (0.5, 0.5)


def test_ratios_are_computed_from_the_two_figures(report: dict[str, Any]) -> None:
    compared = 0
    for row in report["rows"]:
        hivectl, base = row["hivectl"], row["baseline"]
        if row["ratio"] is not None:
            assert row["ratio"] == round(hivectl / base, 2)
            compared += 1
    assert compared >= 10


def test_targets_are_judged_or_say_why_not(report: dict[str, Any]) -> None:
    targets = {
        target["target"].split(":")[0]: target
        for target in report["targets"]
        if "server CPU per" not in target["target"]
    }
    assert set(targets) >= {"latency", "churn", "ingest", "silent"}
    assert all(target["met"] in (True, False, None) for target in report["targets"])
    silent = targets["silent"]
    assert silent["met"] is None and "not the default" in silent["detail"]
    assert targets["churn"]["detail"] == "lost 0, duplicated 0"


def test_the_machine_and_versions_are_reported(report: dict[str, Any]) -> None:
    assert report["machine"]["cores"] == os.cpu_count()
    assert len(report["machine"]["load_average_end"]) == 3
    assert set(report["versions"]) == {"python", "websockets", "hivectl"}
    assert report["plan"]["ping_interval"] == 0.5


def test_the_report_renders_as_tables(report: dict[str, Any]) -> None:
    console = Console(record=True, width=120)
    console.print(render_report(report))
    text = console.export_text()
    assert "hivectl vs a bare websockets server" in text
    assert "targets" in text
    for scenario in SCENARIOS:
        assert scenario in text
    assert f"load processes: {LOAD_PROCESSES} for connect, churn and fanout" in text
    assert "server CPU per delivered push" in text


def test_a_running_server_is_loaded_with_tokens_from_the_configured_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "bench-test-secret-0123456789abcdef"
    monkeypatch.setenv("HIVECTL_AUTH_SECRET", secret)
    monkeypatch.chdir(tmp_path)  # no hivectl.toml or hivectl.secret of the caller's
    with hivectl_server(tmp_path / "server", secret, QUICK) as served:
        result = CliRunner().invoke(
            app, ["bench", "latency", "--quick", "--url", served.url, "--json"]
        )
    ran = json.loads(result.stdout)
    assert result.exit_code == exit_code_for(ran), result.output
    assert ran["url"] == served.url
    (loaded,) = [run for run in ran["runs"] if run["target"] == "hivectl"]
    assert loaded["result"]["presence"]["lost"] == 0
    assert loaded["result"]["server_cpu_s"] is None  # not started here: no pid to read


@pytest.mark.parametrize(
    "args",
    [
        ["--url", "ws://example.com:8765/ws"],
        ["--connections", "0"],
        ["--duration", "soon"],
        ["--rounds", "0"],
        ["--load-processes", "0"],
        ["--load-processes", "17"],
        ["nosuchscenario"],
    ],
)
def test_bad_options_exit_2(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVECTL_AUTH_SECRET", "x" * 32)
    assert CliRunner().invoke(app, ["bench", *args]).exit_code == 2


# -- pure parts ----------------------------------------------------------------------------


def rate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets but issue 19's on CPU per operation."""
    return [t for t in report["targets"] if "server CPU per" not in t["target"]]


def a_run(scenario: str, target: str, **result: Any) -> dict[str, Any]:
    return {"scenario": scenario, "label": scenario, "target": target, "result": result}


def a_raw(*runs: dict[str, Any], **plan: Any) -> dict[str, Any]:
    return {
        "machine": {},
        "versions": {},
        "plan": {"ping_interval": None, "ping_timeout": None, **plan},
        "runs": list(runs),
    }


def test_no_ratio_without_a_baseline_figure_and_none_for_counts() -> None:
    churn = {"events_per_s": 100.0, "presence": {"lost": 0, "duplicated": 0}}
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", **churn),
            a_run("churn", "baseline", **{**churn, "events_per_s": 0.0}),
        )
    )
    assert [row["ratio"] for row in report["rows"]] == [None] * 5
    (target,) = rate_targets(report)
    assert target["met"] is None


def test_a_lost_event_fails_the_churn_target_whatever_the_rate() -> None:
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", events_per_s=200.0, presence={"lost": 1, "duplicated": 0}),
            a_run("churn", "baseline", events_per_s=100.0, presence={"lost": 0, "duplicated": 0}),
        )
    )
    (target,) = rate_targets(report)
    assert (target["value"], target["met"]) == (2.0, False)


def test_silent_is_judged_only_with_the_default_keepalive() -> None:
    runs = [a_run("silent", t, detection_s={"min": 21.0, "max": 29.5}) for t in ("hivectl",)]
    (judged,) = build_report(a_raw(*runs))["targets"]
    (unjudged,) = build_report(a_raw(*runs, ping_interval=1.0))["targets"]
    assert (judged["met"], unjudged["met"]) == (True, None)


def test_a_busy_load_generator_is_named_as_the_bottleneck() -> None:
    busy = {"seconds": 10.0, "load_cpu_s": 9.5, "server_cpu_s": 6.0, "events_per_s": 1.0}
    calm = {**busy, "load_cpu_s": 5.0}
    presence = {"lost": 0, "duplicated": 0}
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", **busy, presence=presence),
            a_run("churn", "baseline", **calm, presence=presence),
        )
    )
    (note,) = report["notes"]
    assert note.startswith("churn on hivectl: the load generator used 95% of a core")


def test_connect_sizes_are_jobs_of_their_own_and_ingest_skips_the_baseline() -> None:
    jobs = plan_jobs(["connect", "ingest"], PlanOptions(rounds=1).plan())
    assert [(job.label, job.target) for job in jobs] == [
        ("connect 1,000", "hivectl"),
        ("connect 1,000", "baseline"),
        ("connect 5,000", "hivectl"),
        ("connect 5,000", "baseline"),
        ("ingest", "hivectl"),
    ]


def test_rounds_alternate_which_target_goes_first_and_silent_runs_once() -> None:
    jobs = plan_jobs(["churn", "silent"], PlanOptions(rounds=3).plan())
    assert [(job.label, job.round, job.target) for job in jobs] == [
        ("churn", 0, "hivectl"),
        ("churn", 0, "baseline"),
        ("churn", 1, "baseline"),
        ("churn", 1, "hivectl"),
        ("churn", 2, "hivectl"),
        ("churn", 2, "baseline"),
        ("churn new tokens", 0, "hivectl"),
        ("churn new tokens", 0, "baseline"),
        ("churn new tokens", 1, "baseline"),
        ("churn new tokens", 1, "hivectl"),
        ("churn new tokens", 2, "hivectl"),
        ("churn new tokens", 2, "baseline"),
        ("silent", 0, "hivectl"),
        ("silent", 0, "baseline"),
    ]


def test_over_rounds_a_figure_is_the_median_and_a_failure_count_the_worst() -> None:
    def churn(target: str, rate: float, lost: int) -> dict[str, Any]:
        return a_run("churn", target, events_per_s=rate, presence={"lost": lost, "duplicated": 0})

    report = build_report(
        a_raw(
            churn("hivectl", 90.0, 0),
            churn("baseline", 100.0, 0),
            churn("baseline", 130.0, 0),
            churn("hivectl", 40.0, 2),
            churn("hivectl", 110.0, 0),
            churn("baseline", 120.0, 0),
        )
    )
    rate, lost, *_ = report["rows"]
    assert (rate["hivectl"], rate["baseline"], rate["ratio"]) == (90.0, 120.0, 0.75)
    assert rate["rounds"] == {"hivectl": [90.0, 40.0, 110.0], "baseline": [100.0, 130.0, 120.0]}
    assert (lost["hivectl"], lost["baseline"]) == (2.0, 0.0)
    (target,) = rate_targets(report)
    assert target["met"] is False


def test_a_load_generator_bottleneck_is_one_note_over_rounds() -> None:
    presence = {"lost": 0, "duplicated": 0}
    busy = {"seconds": 10.0, "load_cpu_s": 9.5, "server_cpu_s": 6.0, "presence": presence}
    busier = {**busy, "load_cpu_s": 9.9}
    calm = {**busy, "load_cpu_s": 5.0}
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", **busy),
            a_run("churn", "hivectl", **busier),
            a_run("churn", "hivectl", **calm),
        )
    )
    assert report["notes"] == [
        "churn on hivectl: the load generator used 99% of a core, the server 60% -- the load"
        " generator was the bottleneck (in 2 of 3 rounds)"
    ]


def test_plan_options_reach_the_load_generator_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = PlanOptions(quick=True, connections=7, duration=1.5, ping_interval=0.25)
    plan = options.plan()
    assert (plan.connect_sizes, plan.churn_providers, plan.fanout_riders) == ((7,), 7, 7)
    assert (plan.churn_seconds, plan.ping_interval, plan.ping_timeout) == (1.5, 0.25, 0.5)
    seen = []
    monkeypatch.setattr("hivectl.bench.load.plan_problems", lambda p: seen.append(p) or ["x"])
    with pytest.raises(SystemExit):
        load_main(["churn", "--url", "ws://127.0.0.1:1/ws", *options.arguments()])
    assert seen == [plan]


def test_counts_and_durations_are_bounded() -> None:
    assert plan_problems(PlanOptions(connections=0).plan())
    assert plan_problems(PlanOptions(connections=100_000).plan())
    assert plan_problems(PlanOptions(duration=3600).plan())
    assert plan_problems(PlanOptions(ping_timeout=0.0).plan())
    assert plan_problems(PlanOptions(rounds=0).plan())
    assert plan_problems(PlanOptions(rounds=10).plan())
    assert not plan_problems(PlanOptions().plan())


def test_the_baseline_listens_with_hivectls_backlog() -> None:
    assert baseline.BACKLOG == LISTEN_BACKLOG


def test_process_figures_come_from_proc() -> None:
    assert (cpu_seconds(os.getpid()) or 0) > 0
    assert (rss_bytes(os.getpid()) or 0) > 0
    assert cpu_seconds(2**22 + 1) is None  # above the kernel's largest pid


def test_a_target_not_met_is_one_line_with_the_figure() -> None:
    target = {
        "target": "connect 1,000: connections/s >= 0.8x the baseline's",
        "value": 0.71,
        "unit": "x",
        "met": False,
        "detail": None,
    }
    assert target_line(target) == "connect 1,000: connections/s >= 0.8x the baseline's (0.71 x)"
    assert target_line({**target, "value": None, "detail": "lost 2"}).endswith(
        "(no figure; lost 2)"
    )


def test_ctrl_c_prints_the_report_of_the_runs_that_finished_and_exits_130(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hivectl", "bench", "connect", "--quick", "--rounds", "3", "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
    )
    try:
        assert process.stderr is not None
        started = 0
        for line in process.stderr:
            started += line.startswith("running connect")
            if started == 2:  # the first run finished
                break
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    assert 1 <= len(report["runs"]) < 6
    assert all("result" in run for run in report["runs"])
    assert f"interrupted: the report covers the {len(report['runs'])} runs that finished" in err


def test_the_server_log_level_is_the_plans_and_named_in_the_report() -> None:
    assert PlanOptions().plan().log_level == "warning"
    assert PlanOptions(quick=True, log_level="info").plan().log_level == "info"
    assert not build_report(a_raw(log_level="warning"))["notes"]
    (note,) = build_report(a_raw(log_level="info"))["notes"]
    assert "log.level info" in note


async def test_a_hivectl_started_at_info_logs_its_connections(tmp_path: Path) -> None:
    plan = PlanOptions(quick=True, log_level="info").plan()
    log_path = tmp_path / "server.log"
    with hivectl_server(tmp_path, SECRET, plan) as served:
        async with websockets.connect(served.url) as client:
            await client.send(f"Bearer {mint('bench-probe')}")
            await client.recv()

        async def logged() -> bool:
            return "sub bench-probe" in log_path.read_text()

        await eventually(logged)
