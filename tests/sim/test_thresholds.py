"""`--threshold`: parsing k6-style rules, and judging a report's figures by them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from hivectl.sim.report import LATENCIES, load_generator
from hivectl.sim.thresholds import Threshold, parse_threshold, violations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("presence.p99<500ms", Threshold("presence.p99", False, 500.0)),
        ("connect.p95<=1.5s", Threshold("connect.p95", True, 1500.0)),
        ("update_rtt.max<250", Threshold("update_rtt.max", False, 250.0)),
        (" auth.p50 <= 1m ", Threshold("auth.p50", True, 60_000.0)),
        ("presence_abort.p99<1h30m", Threshold("presence_abort.p99", False, 5_400_000.0)),
        ("lost<=0", Threshold("lost", True, 0.0)),
        ("duplicated<3", Threshold("duplicated", False, 3.0)),
    ],
)
def test_parse(text: str, expected: Threshold) -> None:
    assert parse_threshold(text, LATENCIES) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("presence.p99>500ms", "expected METRIC<LIMIT"),
        ("presence.p98<500ms", "unknown metric 'presence.p98'"),
        ("latency.p99<500ms", "unknown metric 'latency.p99'"),
        ("presence.p99<-5ms", "expected a duration"),
        ("presence.p99<soon", "expected a duration"),
        ("lost<0.5", "lost is a count"),
        ("seen<5", "unknown metric 'seen'"),
        ("", "expected METRIC<LIMIT"),
    ],
)
def test_parse_rejects(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        parse_threshold(text, LATENCIES)


def a_report(**latency: float | None) -> dict[str, Any]:
    summaries = {name: {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 4.0} for name in LATENCIES}
    for name, p99 in latency.items():
        summaries[name]["p99"] = p99  # type: ignore[assignment]
    return {"latency_ms": summaries, "presence": {"lost": 2, "duplicated": 0}}


def test_each_threshold_judges_its_own_figure() -> None:
    report = a_report(presence=612.0, connect=40.0)
    rules = [parse_threshold(text, LATENCIES) for text in ("presence.p99<500ms", "connect.p99<1s")]
    assert violations(report, rules) == ["presence.p99 612 ms, not <500 ms"]
    assert violations(report, [parse_threshold("presence.p99<=612ms", LATENCIES)]) == []
    assert violations(report, [parse_threshold("lost<=1", LATENCIES)]) == ["lost 2, not <=1"]
    assert violations(report, [parse_threshold("duplicated<1", LATENCIES)]) == []


def test_a_latency_without_samples_passes() -> None:
    rule = parse_threshold("auth.p99<1ms", LATENCIES)
    assert violations(a_report(auth=None), [rule]) == []


def test_the_load_generator_is_called_cpu_bound_from_90_percent_of_a_core() -> None:
    busy = load_generator(9.5, 10.0)
    assert busy["cpu_share"] == 0.95
    assert busy["note"] is not None and "95% of a core" in busy["note"]
    assert load_generator(5.0, 10.0)["note"] is None
    assert load_generator(None, 10.0)["cpu_share"] is None
