"""What a run may take: descriptors against the open-file limit, messages per second against
the server's rate limit, setup spread over connections."""

from __future__ import annotations

import pytest

from hivectl.sim.budget import (
    CID_BYTES,
    MAX_SETUP_LINKS,
    SPARE_DESCRIPTORS,
    Pacer,
    allowed_rate,
    descriptors_needed,
    open_file_problem,
    setup_links,
    split_frames,
)


def test_descriptors_are_the_connections_the_watcher_and_a_margin() -> None:
    assert descriptors_needed(10) == 10 + 1 + SPARE_DESCRIPTORS


def test_a_plan_within_the_hard_limit_is_fine() -> None:
    needed = descriptors_needed(100_000)
    assert open_file_problem(needed, 1024, None, connections=100_000, gateways=0) is None
    assert open_file_problem(needed, 1024, needed, connections=100_000, gateways=0) is None


def test_a_plan_over_the_hard_limit_says_what_to_change() -> None:
    needed = descriptors_needed(100_000)
    problem = open_file_problem(needed, 20_000, 20_000, connections=100_000, gateways=0)
    assert problem is not None
    assert f"needs {needed} open files (100000 rider connections" in problem
    assert "the limit is 20000" in problem and f"ulimit -n {needed}" in problem
    assert "--gateways" in problem
    with_gateways = open_file_problem(needed, 10, 10, connections=100_000, gateways=5)
    assert with_gateways is not None and "--gateways" not in with_gateways


def test_rate_allowance_grows_with_the_objects_provided() -> None:
    assert allowed_rate(0) == 800.0
    assert allowed_rate(10_000) == 800.0 + 15_000.0
    assert allowed_rate(100, per_connection=500.0, per_object=0.0) == 500.0


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


def test_setup_spreads_objects_over_a_bounded_number_of_connections() -> None:
    assert setup_links(0) == 1 and setup_links(300) == 1 and setup_links(1_001) == 2
    assert setup_links(100_000) == MAX_SETUP_LINKS == 16


def test_frames_stay_under_the_message_and_byte_limits() -> None:
    assert split_frames([]) == []
    assert split_frames([10] * 7, max_messages=3, max_bytes=10_000) == [3, 3, 1]
    per = 100 + CID_BYTES
    assert split_frames([100] * 10, max_messages=500, max_bytes=3 * per) == [3, 3, 3, 1]
    assert split_frames([5000, 10], max_messages=500, max_bytes=1000) == [1, 1]
    creations = split_frames([200] * 500)  # 500 creations are about 100 KB
    assert sum(creations) == 500 and len(creations) == 3
    assert all((200 + CID_BYTES) * n <= 48 * 1024 for n in creations)
