"""The latency recorder: nearest-rank percentiles within 1 %, exact merging, bounded memory."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.sim.recorder import RELATIVE_ERROR, LatencyRecorder, WindowedRecorder


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def recorded(values: list[float]) -> LatencyRecorder:
    recorder = LatencyRecorder()
    for value in values:
        recorder.record(value)
    return recorder


@given(
    st.lists(st.floats(min_value=1e-5, max_value=100.0), min_size=1, max_size=300),
    st.sampled_from([1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]),
)
def test_percentiles_are_nearest_rank_within_the_relative_error(
    values: list[float], p: float
) -> None:
    exact = nearest_rank(values, p)
    got = recorded(values).percentile(p)
    assert got is not None
    assert exact * (1 - 1e-9) <= got <= exact * (1 + RELATIVE_ERROR) + 1e-12


def test_min_max_count_mean_are_exact() -> None:
    recorder = recorded([0.003, 0.001, 0.002])
    summary = recorder.summary_ms()
    p50 = summary.pop("p50")
    assert summary == {"count": 3, "min": 1.0, "mean": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert isinstance(p50, float) and 2.0 <= p50 <= 2.02


def test_merging_equals_recording_everything_in_one() -> None:
    rng = random.Random(5)
    parts = [[rng.lognormvariate(-5, 1.5) for _ in range(rng.randint(1, 500))] for _ in range(4)]
    merged = LatencyRecorder()
    for part in parts:
        merged.merge(recorded(part))
    whole = recorded([value for part in parts for value in part])
    for p in (50, 95, 99, 99.9):
        assert merged.percentile(p) == whole.percentile(p)
    assert (merged.count, merged.minimum, merged.maximum) == (
        whole.count,
        whole.minimum,
        whole.maximum,
    )


def test_memory_is_bounded_by_buckets_not_samples() -> None:
    recorder = recorded([0.001 + (i % 1000) * 1e-6 for i in range(100_000)])
    assert recorder.count == 100_000
    assert len(recorder._buckets) < 200


def test_empty_and_negative() -> None:
    empty = LatencyRecorder()
    assert empty.percentile(99) is None
    assert empty.summary_ms()["p99"] is None and empty.summary_ms()["count"] == 0
    clamped = recorded([-0.5])
    assert clamped.percentile(50) == 0.0


def test_windowed_recorder_forgets_the_old_past() -> None:
    window = WindowedRecorder(window_s=5.0)
    window.record(1.0, now=0.0)
    window.record(0.010, now=6.0)  # the first window is now the previous one
    assert window.recent(now=6.0).maximum == 1.0
    assert window.recent(now=11.0).maximum == 0.010  # rolled again: the 1.0 is gone
    assert window.recent(now=30.0).count == 0


@given(st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=200))
def test_a_recorder_survives_json_and_merges_as_if_it_never_left(values: list[float]) -> None:
    half = len(values) // 2
    travelled = LatencyRecorder.from_state(json.loads(json.dumps(recorded(values[half:]).state())))
    merged = recorded(values[:half])
    merged.merge(travelled)
    whole = recorded(values)
    assert (merged.count, merged.minimum, merged.maximum) == (
        whole.count,
        whole.minimum,
        whole.maximum,
    )
    assert merged.total == pytest.approx(whole.total)
    for p in (50.0, 90.0, 99.0, 100.0):
        assert merged.percentile(p) == whole.percentile(p)
