"""The report (the --json schema), thresholds, and the Rich renderings of report and panel."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from hivectl.sim.ledger import PresenceLedger
from hivectl.sim.plan import PlanParams, build_plan
from hivectl.sim.render import progress_line, render_progress, render_report, render_setup
from hivectl.sim.report import (
    LATENCIES,
    BulkStats,
    LiveSnapshot,
    OpenFiles,
    RunStats,
    SetupSnapshot,
    build_report,
    shortfalls,
    threshold_violations,
)


def a_report(**limits: Any) -> dict[str, Any]:
    plan = build_plan(PlanParams(riders=2, duration_s=10, ramp_up_s=1, seed=9))
    stats = RunStats()
    stats.connect_attempts = 3
    stats.opened()
    stats.opened()
    stats.connect_failures["refused"] += 1
    stats.updates_due = stats.updates_sent = 20
    stats.updates_acked = 19
    stats.update_failures["timeout"] += 1
    for name in LATENCIES[:-1]:
        stats.latency[name].record(0.004)
    ledger = PresenceLedger()
    ledger.provider_up("r0.d0", ("riders/r0",), at=0.0)
    ledger.seen("riders/r0", "con", at=0.002)
    ledger.provider_up("r1.d0", ("riders/r1",), at=0.0)
    return build_report(
        plan=plan,
        realm="london",
        url="ws://127.0.0.1:1/ws",
        stats=stats,
        presence=ledger.summary(),
        elapsed_s=10.0,
        interrupted=False,
        connected_at_start=0,
        connected_at_end=0,
        open_files=OpenFiles(1024, 4096, 66, None),
        **limits,
    )


def test_report_schema_is_plain_json() -> None:
    report = a_report()
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {
        "realm",
        "url",
        "seed",
        "plan",
        "elapsed_s",
        "interrupted",
        "connections",
        "updates",
        "presence",
        "latency_ms",
        "open_files",
        "setup",
        "cleanup",
        "load_generator",
        "thresholds",
        "shortfalls",
    }
    assert report["connections"]["failures"] == {"refused": 1}
    assert report["updates"]["sent_per_s"] == 2.0
    assert report["presence"]["expected"] == 2 and report["presence"]["lost"] == 1
    assert set(report["latency_ms"]) == set(LATENCIES)
    assert set(report["latency_ms"]["connect"]) == {
        "count",
        "min",
        "mean",
        "p50",
        "p95",
        "p99",
        "max",
    }
    assert report["latency_ms"]["presence_abort"]["p99"] is None


def test_thresholds() -> None:
    assert a_report()["thresholds"]["violations"] == []
    report = a_report(max_p99_ms=1.0, max_lost=0)
    assert report["thresholds"]["violations"] == [
        "p99 connect 4 ms > 1 ms",
        "p99 auth 4 ms > 1 ms",
        "p99 update_rtt 4 ms > 1 ms",
        "p99 presence 4 ms > 1 ms",
        "lost presence events 1 > 0",
    ]
    assert threshold_violations(report, max_p99_ms=5.0, max_lost=1) == []


def rendered(renderable: Any) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


def test_report_rendering_names_the_numbers() -> None:
    text = rendered(render_report(a_report(max_p99_ms=1.0)))
    assert "realm london  seed 9" in text
    assert "refused: 1" in text and "timeout: 1" in text
    assert "lost 1" in text
    assert "✗ p99 connect 4 ms > 1 ms" in text
    connect_row = next(line for line in text.splitlines() if "connect (TCP" in line)
    assert connect_row.split()[-5:] == ["1", "4", "4", "4", "4"]


def test_progress_panel() -> None:
    snap = LiveSnapshot(
        elapsed_s=75,
        duration_s=300,
        realm="london",
        planned_connections=100,
        open_connections=97,
        objects_online=95,
        objects=100,
        connects=120,
        connect_failures=2,
        updates_sent=5000,
        updates_acked=4990,
        updates_failed=1,
        updates_late=3,
        updates_per_s=96.5,
        presence_expected=240,
        presence_matched=238,
        presence_pending=2,
        update_p95_ms=3.25,
        presence_p95_ms=None,
        stopping=True,
    )
    text = rendered(render_progress(snap))
    assert "london  1:15 / 5:00  stopping…" in text
    assert "97/100 open" in text and "objects online 95/100" in text
    assert "96.5/s" in text and "late 3" in text
    assert "seen 238/240" in text and "pending 2" in text
    assert "update 3.2 ms" in text and "presence -" in text
    assert progress_line(snap) == (
        "1:15/5:00 connections 97/100 open, objects online 95/100, updates 96/s (failed 1), "
        "presence seen 238/240, stopping"
    )


def test_shortfalls_say_what_of_the_plan_was_not_carried_out() -> None:
    setup = BulkStats(2)
    setup.done = 1
    setup.fail("error 429: rate limited", 1)
    cleanup = BulkStats(1)
    cleanup.fail("connection lost", 1)
    report = a_report(setup=setup, cleanup=cleanup, never_connected=1)
    assert report["setup"]["failures"] == {"error 429: rate limited": 1}
    assert report["shortfalls"] == [
        "1 of 2 rider objects were not created (error 429: rate limited: 1)",
        "1 of 2 planned connections never connected (refused: 1)",
        "1 of 20 location updates were not delivered: 1 failed (timeout: 1)",
        "1 of 1 objects created by the run were not deleted (connection lost: 1)",
    ]
    assert "✗ 1 of 2 rider objects were not created" in words_of(render_report(report))


def test_a_few_missed_updates_are_tolerated_many_are_not() -> None:
    report = a_report()
    report["updates"].update(due=1000, missed=10, failed=0, failures={})
    assert shortfalls(report) == []
    report["updates"]["missed"] = 11
    assert shortfalls(report) == [
        "11 of 1000 location updates were not delivered: 11 missed "
        "(the senders fell a whole interval behind)"
    ]
    report["updates"].update(missed=0, failed=20, failures={"error 429: rate limited": 20})
    (line,) = shortfalls(report)
    assert line.startswith("20 of 1000 location updates were not delivered: 20 failed (error 429")
    assert line.endswith("or lengthen --update-interval")


def test_setup_progress_line_and_bar() -> None:
    snap = SetupSnapshot("creating objects", done=4000, failed=0, total=10000, elapsed_s=2.0)
    assert snap.line() == "creating objects: 4000/10000 (2000/s)"
    done = SetupSnapshot("deleting objects", done=9990, failed=10, total=10000, elapsed_s=5.0)
    assert done.finished and done.line() == "deleting objects: 9990/10000 (1998/s, 10 failed, done)"
    assert "creating objects" in words_of(render_setup(snap))
    assert "4000/10000 (2000/s)" in words_of(render_setup(snap))


def words_of(renderable: object) -> str:
    console = Console(record=True, width=160)
    console.print(renderable)
    return " ".join(console.export_text().split())
