"""Bulk sending under the server's limits: frames, the pacer, and the budget read from the
limits, checked against the server's own rate limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.pacing import (
    CID_BYTES,
    Pacer,
    base_rate,
    connection_budget,
    split_frames,
)
from hivectl.core.settings import LimitsSettings, RateSettings
from server.model.ratelimit import RateLimiter


def test_the_pacer_spaces_frames_to_the_rate() -> None:
    pacer = Pacer(800.0)
    assert pacer.delay(500, now=10.0) == 0.0  # the first frame leaves at once
    assert pacer.delay(500, now=10.0) == pytest.approx(0.625)  # then 500 / 800 s later
    assert pacer.delay(100, now=10.1) == pytest.approx(1.15)
    assert pacer.delay(10, now=20.0) == 0.0  # time that passed is not saved up
    sent_by = {}
    pacer = Pacer(800.0)
    at = 0.0
    for n in range(20):
        at += pacer.delay(400, at)
        sent_by[n] = at
    # 20 frames of 400 messages: 8,000 messages over at least 8000/800 - 1 frame = 9.5 s
    assert sent_by[19] == pytest.approx(9.5)
    with pytest.raises(ValueError):
        Pacer(0.0)
    with pytest.raises(ValueError):
        Pacer(1.0, -1.0)


def test_a_burst_lets_frames_run_ahead_of_the_rate_by_that_many_messages() -> None:
    pacer = Pacer(100.0, burst=200.0)
    assert [pacer.delay(100, now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.delay(100, now=0.0) == pytest.approx(1.0)  # 300 booked: 100 ahead of 200
    idle = Pacer(100.0, burst=200.0)
    idle.delay(100, now=0.0)
    assert idle.delay(100, now=50.0) == 0.0  # a rested bucket is full, never more
    assert idle.delay(100, now=50.0) == 0.0
    assert idle.delay(100, now=50.0) == 0.0
    assert idle.delay(100, now=50.0) == pytest.approx(1.0)


def test_frames_stay_under_the_message_and_byte_limits() -> None:
    assert split_frames([], max_messages=3, max_bytes=100) == []
    assert split_frames([10] * 7, max_messages=3, max_bytes=10_000) == [3, 3, 1]
    per = 100 + CID_BYTES
    assert split_frames([100] * 10, max_messages=500, max_bytes=3 * per) == [3, 3, 3, 1]
    assert split_frames([5000, 10], max_messages=500, max_bytes=1000) == [1, 1]


def test_the_rate_is_the_first_matching_rates_entry_else_the_defaults() -> None:
    limits = LimitsSettings(
        messages_per_second=100,
        burst=50,
        rates=(
            RateSettings(sub="bridge-*", messages_per_second=5000, burst=9000),
            RateSettings(sub="*", messages_per_second=7, burst=8),
        ),
    )
    assert base_rate(limits, "bridge-1") == (5000.0, 9000.0)
    assert base_rate(limits, "rider") == (7.0, 8.0)
    assert base_rate(limits, None) == (100.0, 50.0)


def test_the_budget_takes_a_share_of_every_limit() -> None:
    limits = LimitsSettings(
        max_message_size=16 * 1024, max_messages_per_frame=50, messages_per_second=500, burst=400
    )
    budget = connection_budget(limits, "importer")
    assert budget.frame_messages == 50
    assert budget.frame_bytes == 12 * 1024
    assert budget.message_bytes == 16 * 1024
    assert budget.rate == pytest.approx(450.0)
    assert budget.burst == pytest.approx(360.0 - 50)
    tiny = connection_budget(LimitsSettings(burst=10, messages_per_second=10), None)
    assert (tiny.frame_messages, tiny.burst) == (9, 0.0)  # a frame never exceeds the burst


@given(
    rate=st.integers(1, 5000),
    burst=st.integers(1, 5000),
    per_frame=st.integers(1, 1000),
    frames=st.lists(st.integers(1, 1000), min_size=1, max_size=60),
)
def test_a_paced_client_is_never_rate_limited_by_the_server(
    rate: int, burst: int, per_frame: int, frames: list[int]
) -> None:
    limits = LimitsSettings(messages_per_second=rate, burst=burst, max_messages_per_frame=per_frame)
    budget = connection_budget(limits, None)
    pacer = budget.pacer()
    server = RateLimiter(rate, burst)
    now = 0.0
    for wanted in frames:
        count = min(wanted, budget.frame_messages)
        now += pacer.delay(count, now)
        assert all(server.allow(now) for _ in range(count))
