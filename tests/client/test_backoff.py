"""The reconnect schedule as a pure function: doubling, capped, jittered within [d/2, d],
reset only by a connection that held."""

from __future__ import annotations

import random

import pytest

from hivectl.client.backoff import Backoff, backoff_delay


def test_the_delay_doubles_up_to_the_cap_and_the_draw_spans_its_upper_half() -> None:
    lows = [backoff_delay(n, 0.0, base=1.0, cap=30.0) for n in range(7)]
    highs = [backoff_delay(n, 1.0, base=1.0, cap=30.0) for n in range(7)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert highs == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(3, 0.5, base=1.0, cap=30.0) == 6.0
    assert backoff_delay(10_000, 0.999, base=1.0, cap=30.0) < 30.0
    assert backoff_delay(-1, 0.0, base=1.0, cap=30.0) == 0.5


def test_immediate_closes_keep_growing_the_wait_with_jitter() -> None:
    backoff = Backoff(base=0.5, cap=8.0, stable_after=10.0)
    draw = random.Random(3)
    delays = []
    for _ in range(8):
        delays.append(backoff.next_delay(draw.random()))
        backoff.connection_lost(0.2)  # accepted, then closed at once: no reset
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d / c, 6) for d, c in zip(delays, ceilings, strict=True)}) == 8
    assert backoff.attempt == 8


def test_failed_dials_count_and_only_a_connection_that_held_resets() -> None:
    backoff = Backoff(base=1.0, cap=30.0, stable_after=10.0)
    for _ in range(3):
        backoff.next_delay(0.0)
        backoff.connection_lost(None)
    assert backoff.attempt == 3
    backoff.connection_lost(9.99)
    assert backoff.next_delay(0.0) == pytest.approx(4.0)
    backoff.connection_lost(10.0)
    assert backoff.attempt == 0
    assert backoff.next_delay(1.0) == 1.0
