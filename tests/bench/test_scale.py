"""`hivectl bench scale`: a tiny realm (500 objects) through the real runner, and the pure parts.

The run starts real servers, one per storage backend, and restarts the SQLite one. Their rate
limit is lifted here (``server_settings``): the scenario keeps the server's default, under
which today one gateway connection is closed (4029) long before 10,000 updates, and this
test checks the counting of a run that goes through -- not the limiter.
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hivectl.bench.plan import QUICK, PlanOptions, parse_sizes, plan_problems
from hivectl.bench.render import render_report
from hivectl.bench.report import FIGURES, build_report, scale_growth
from hivectl.bench.runner import plan_jobs, run_bench
from hivectl.bench.scenarios.scale import frame_size, object_ids, setup_connections
from hivectl.cli import app
from hivectl.core.settings import LimitsSettings

(OBJECTS,) = QUICK.scale_sizes
LIFTED = {"HIVECTL_LIMITS_MESSAGES_PER_SECOND": "10000000", "HIVECTL_LIMITS_BURST": "10000000"}
RESTART_ONLY = {
    "server memory per object, restarted",
    "restart: /readyz",
    "restart: realm readable",
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return build_report(run_bench(["scale"], PlanOptions(quick=True), server_settings=LIFTED))


def results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["storage"]: run["result"] for run in report["runs"]}


def test_scale_runs_once_per_storage_on_hivectl_only(report: dict[str, Any]) -> None:
    assert report["errors"] == []
    ran = [(run["label"], run["target"]) for run in report["runs"]]
    assert ran == [("scale 500 memory", "hivectl"), ("scale 500 sqlite", "hivectl")]
    assert "scale runs against hivectl only: the baseline server has no realms" in report["notes"]


def test_the_report_has_every_figure(report: dict[str, Any]) -> None:
    names = [figure.name for figure in FIGURES["scale"]]
    for label, storage in (("scale 500 memory", "memory"), ("scale 500 sqlite", "sqlite")):
        rows = {row["figure"]: row for row in report["rows"] if row["scenario"] == label}
        assert list(rows) == names
        for name, row in rows.items():
            assert row["baseline"] == "n/a"
            if storage == "memory" and name in RESTART_ONLY:
                assert row["hivectl"] is None, name
            else:
                assert row["hivectl"] is not None, name


def test_the_counts_add_up(report: dict[str, Any]) -> None:
    for result in results(report).values():
        assert result["objects"] == OBJECTS
        assert result["gateway_objects"] == OBJECTS // 2
        count = result["presence_count"]
        assert (count["connected"], count["disconnected"]) == (0, OBJECTS)
        assert count["latency_ms"]["count"] == 5
        for group, size in (("full_state_one", 1), ("full_state_many", QUICK.scale_subscribers)):
            held = result[group]
            assert (held["subscribers"], held["complete"], held["closed"]) == (size, size, 0)
            assert held["fewest_held"] == OBJECTS
            assert held["subscriber_cpu_max_s"] <= held["subscriber_cpu_s"]
        updates = result["updates"]
        assert updates["closed"] is None and updates["rejected"] == 0
        assert updates["applied"] == updates["handled"] == updates["sent"] > 0
        gone = result["transitions"]
        assert gone["complete"] == QUICK.scale_subscribers
        assert gone["lost_events"] == gone["lost_updates"] == gone["closed"] == 0
    restart = results(report)["sqlite"]["restart"]
    assert restart["objects_loaded"] == OBJECTS
    assert 0 < restart["ready_s"] <= restart["readable_s"]
    assert "restart" not in results(report)["memory"]


def test_every_target_is_judged(report: dict[str, Any]) -> None:
    targets = report["targets"]
    assert len(targets) == 2 * 5
    assert all(target["met"] in (True, False) for target in targets)
    transitions = [t for t in targets if "transitions reach" in t["target"]]
    assert [t["detail"] for t in transitions] == ["lost 0, 0 closed"] * 2


def test_the_report_renders_the_scale_table(report: dict[str, Any]) -> None:
    console = Console(record=True, width=200)
    console.print(render_report(report))
    text = console.export_text()
    assert "fleet scale, hivectl only" in text
    assert "500 sqlite" in text
    assert "hivectl vs a bare websockets server" not in text  # nothing to compare


def test_scale_with_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVECTL_AUTH_SECRET", "x" * 32)
    result = CliRunner().invoke(app, ["bench", "scale", "--url", "ws://127.0.0.1:1/ws"])
    assert result.exit_code == 2


# -- pure parts ----------------------------------------------------------------------------


def test_scale_is_one_job_per_size_and_storage_and_not_in_the_default_run() -> None:
    plan = PlanOptions(objects=(10_000, 100_000), rounds=3).plan()
    jobs = plan_jobs(["scale"], plan)
    assert [(job.label, job.target, job.round) for job in jobs] == [
        ("scale 10,000 memory", "hivectl", 0),
        ("scale 10,000 sqlite", "hivectl", 0),
        ("scale 100,000 memory", "hivectl", 0),
        ("scale 100,000 sqlite", "hivectl", 0),
    ]
    assert PlanOptions(objects=(500, 2000)).arguments() == ["--objects", "500,2000"]


def test_sizes_parse_and_are_bounded() -> None:
    assert parse_sizes("10000,100_000") == (10_000, 100_000)
    with pytest.raises(ValueError, match="--objects"):
        parse_sizes("10k")
    assert plan_problems(PlanOptions(objects=(1,)).plan())
    assert plan_problems(PlanOptions(objects=(2_000_000,)).plan())
    assert not plan_problems(PlanOptions(objects=(10_000, 100_000)).plan())


def test_growth_is_per_object_for_totals_and_flat_for_costs_each() -> None:
    # a time over the realm: 10x the objects, 10x the time is linear
    assert scale_growth(1.0, 10.0, 10.0, "total", "lower") == 1.0
    assert scale_growth(1.0, 30.0, 10.0, "total", "lower") == 3.0
    # memory per object: flat is linear; a rate: half the rate is twice the cost per update
    assert scale_growth(800.0, 880.0, 10.0, "each", "lower") == 1.1
    assert scale_growth(20_000.0, 10_000.0, 10.0, "each", "higher") == 2.0
    assert scale_growth(0.0, 1.0, 10.0, "total", "lower") is None


def test_growth_compares_the_smallest_and_largest_realm_per_storage() -> None:
    def run(size: int, per_object: float, slowest: float) -> dict[str, Any]:
        held = {"subscribers": 1, "complete": 1, "slowest_s": None, "closed": 0}
        gone = {"transitions": size // 2, "subscribers": 10, "closed": 0, "slowest_s": slowest}
        return {
            "scenario": "scale",
            "label": f"scale {size:,} memory",
            "target": "hivectl",
            "size": size,
            "storage": "memory",
            "result": {
                "bytes_per_object": per_object,
                "full_state_one": {**held, "close_codes": {}},
                "full_state_many": {**held, "close_codes": {"4008": 1}},
                "updates": {"updates_per_s": 0.0, "rejected": 0, "closed": None},
                "transitions": {**gone, "lost_events": 0, "lost_updates": 0},
            },
        }

    raw = {"machine": {}, "versions": {}, "plan": {}, "runs": [run(10_000, 900.0, 0.5)]}
    raw["runs"].append(run(100_000, 950.0, 9.0))
    growth = {entry["figure"]: entry for entry in build_report(raw)["growth"]}
    assert set(growth) == {"server memory per object", "gateway gone: transitions seen, slowest"}
    memory = growth["server memory per object"]
    assert (memory["objects"], memory["per_object"], memory["linear"]) == (
        [10_000, 100_000],
        1.06,
        True,
    )
    assert growth["gateway gone: transitions seen, slowest"]["per_object"] == 1.8
    assert growth["gateway gone: transitions seen, slowest"]["linear"] is False


def test_setup_stays_under_the_limits() -> None:
    limits = LimitsSettings()
    per_frame = frame_size(150, limits)
    assert per_frame * 150 <= limits.max_message_size // 2
    assert per_frame <= limits.max_messages_per_frame
    assert setup_connections(500, limits) == 1
    assert setup_connections(100_000, limits) == 23
    assert setup_connections(10**7, limits) == 32
    ids = object_ids(10, 4)
    assert ids[:4] == ["g/0", "g/1", "g/2", "g/3"] and ids[4:6] == ["o/4", "o/5"]


def test_busy_subscriber_processes_are_noted() -> None:
    busy = {"seconds": 8.0, "load_cpu_s": 0.01, "server_cpu_s": 3.2}
    gone = {"transitions": 5, "subscribers": 10, "closed": 0, "slowest_s": 8.0}
    result = {
        "full_state_one": {"subscribers": 1, "complete": 1, "slowest_s": 0.1, "closed": 0},
        "full_state_many": {"cpu": busy, "subscriber_cpu_s": 8.8, "subscribers": 10},
        "updates": {"updates_per_s": 0.0, "rejected": 0, "closed": None},
        "transitions": {**gone, "lost_events": 0, "lost_updates": 0, "cpu": busy},
    }
    result["full_state_many"].update(complete=10, slowest_s=8.0, closed=0, close_codes={})
    result["full_state_one"]["close_codes"] = {}
    run = {"scenario": "scale", "label": "scale 9 memory", "target": "hivectl", "size": 9}
    run["storage"] = "memory"
    raw = {"machine": {}, "versions": {}, "plan": {}, "runs": [{**run, "result": result}]}
    notes = build_report(raw)["notes"]
    assert notes[1:] == [
        "scale 9 memory, full state, subscribers at once: the subscriber processes used 110% of"
        " a core together, the server 40%: on a machine of few cores they competed with the"
        " server for CPU"
    ]
