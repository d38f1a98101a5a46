"""What a run may take: descriptors against the open-file limit, messages per second against
the server's rate limit, setup spread over connections."""

from __future__ import annotations

from hivectl.core.pacing import CID_BYTES, split_frames
from hivectl.sim.budget import (
    MAX_FRAME_BYTES,
    MAX_FRAME_MESSAGES,
    MAX_SETUP_LINKS,
    SPARE_DESCRIPTORS,
    allowed_rate,
    descriptors_needed,
    open_file_problem,
    setup_links,
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


def test_setup_spreads_objects_over_a_bounded_number_of_connections() -> None:
    assert setup_links(0) == 1 and setup_links(300) == 1 and setup_links(1_001) == 2
    assert setup_links(100_000) == MAX_SETUP_LINKS == 16


def test_the_simulators_frames_stay_under_the_servers_default_limits() -> None:
    creations = split_frames(
        [200] * 500, max_messages=MAX_FRAME_MESSAGES, max_bytes=MAX_FRAME_BYTES
    )
    assert sum(creations) == 500 and len(creations) == 3  # 500 creations are about 100 KB
    assert all((200 + CID_BYTES) * n <= 48 * 1024 for n in creations)
