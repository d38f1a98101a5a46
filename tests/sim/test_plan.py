"""The plan: deterministic in the seed, routes inside the area at cyclist speeds, churn
sessions that follow the parameters."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from hivectl.sim.plan import (
    CENTRAL_LONDON,
    MIN_SESSION_S,
    Area,
    PlanParams,
    _coin,
    build_plan,
    make_route,
    make_sessions,
    parse_range,
)


def params(**changes: object) -> PlanParams:
    base = PlanParams(riders=10, duration_s=120, ramp_up_s=10, churn_per_min=3, seed=42)
    return PlanParams(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_same_seed_same_plan_and_another_seed_another() -> None:
    assert build_plan(params()) == build_plan(params())
    other = build_plan(params(seed=43))
    assert other.riders[0].route != build_plan(params()).riders[0].route
    assert other.connections[0].sessions != build_plan(params()).connections[0].sessions


def test_adding_riders_keeps_the_existing_riders_routes() -> None:
    small, large = build_plan(params(riders=10)), build_plan(params(riders=20))
    assert (small.riders[3].name, large.riders[3].name) == ("r3", "r03")  # padded to the fleet
    assert [r.route for r in small.riders] == [r.route for r in large.riders[:10]]


def test_routes_stay_inside_the_area_at_cyclist_speed() -> None:
    plan = build_plan(params(riders=30))
    area = CENTRAL_LONDON
    for rider in plan.riders:
        route = rider.route
        for step in range(0, int(2 * route.one_way_seconds) + 60, 7):
            fix = route.position(float(step))
            assert area.south - 1e-9 <= fix.lat <= area.north + 1e-9
            assert area.west - 1e-9 <= fix.lon <= area.east + 1e-9
            assert 10 / 3.6 - 1e-9 <= fix.speed_mps <= 25 / 3.6 + 1e-9
            assert fix.heading_deg in (0.0, 90.0, 180.0, 270.0)


def test_heading_points_where_the_rider_goes_and_motion_is_continuous() -> None:
    route = make_route(random.Random("x"), CENTRAL_LONDON, (10, 25))
    metres_per_lon = 111_320 * math.cos(math.radians(51.51))
    for t in (1.0, 100.0, route.one_way_seconds + 50.0):
        a, b = route.position(t), route.position(t + 0.5)
        d_north = (b.lat - a.lat) * 111_320
        d_east = (b.lon - a.lon) * metres_per_lon
        moved = math.hypot(d_north, d_east)
        assert moved <= a.speed_mps * 0.5 + 0.01  # never faster than its speed
        if moved > 0.5 * a.speed_mps * 0.5 and a.heading_deg == b.heading_deg:
            expected = math.degrees(math.atan2(d_east, d_north)) % 360
            assert abs((expected - a.heading_deg + 180) % 360 - 180) < 1


def test_location_has_the_wire_keys() -> None:
    fix = make_route(random.Random("y"), CENTRAL_LONDON, (10, 25)).position(3.0)
    assert set(fix.as_location()) == {"lat", "lon", "spe", "hea"}


def test_sessions_follow_the_churn_parameters() -> None:
    rng = random.Random("s")
    sessions = make_sessions(rng, 2.0, 600.0, 6.0, (5.0, 10.0), 0.5)
    assert sessions[0].start == 2.0
    assert sessions[-1].ending == "end" or sessions[-1].end < 600.0
    for before, after in itertools.pairwise(sessions):
        assert before.end - before.start >= MIN_SESSION_S
        assert 5.0 <= after.start - before.end <= 10.0
        assert before.ending in ("close", "abort")
    assert all(s.end <= 600.0 for s in sessions)
    endings = {s.ending for s in sessions[:-1]}
    assert endings == {"close", "abort"}  # 6/min over 10 min: both kinds happen


def test_no_churn_is_one_session_to_the_end() -> None:
    sessions = make_sessions(random.Random(1), 3.0, 60.0, 0.0, (1.0, 2.0), 0.5)
    assert [(s.start, s.end, s.ending) for s in sessions] == [(3.0, 60.0, "end")]


@pytest.mark.parametrize(("ratio", "kind"), [(0.0, "close"), (1.0, "abort")])
def test_abort_ratio_decides_the_kind_of_drop(ratio: float, kind: str) -> None:
    sessions = make_sessions(random.Random(2), 0.0, 3600.0, 10.0, (1.0, 1.0), ratio)
    assert {s.ending for s in sessions[:-1]} == {kind}


def test_ramp_up_spreads_first_connects() -> None:
    plan = build_plan(params(riders=4, ramp_up_s=8, churn_per_min=0))
    assert [c.sessions[0].start for c in plan.connections] == [0.0, 2.0, 4.0, 6.0]


def test_devices_and_gateways() -> None:
    plan = build_plan(params(riders=5, devices_per_rider=2, gateways=2))
    ids = [r.object_id for r in plan.riders]
    assert ids == ["riders/g0-0", "riders/g1-1", "riders/g0-2", "riders/g1-3", "riders/g0-4"]
    devices = [c for c in plan.connections if c.kind == "device"]
    gateways = [c for c in plan.connections if c.kind == "gateway"]
    assert len(devices) == 10 and len(gateways) == 2
    assert {c.objects for c in devices if c.sub == "g0-0"} == {("riders/g0-0",)}
    assert gateways[0].objects == ("riders/g0-0", "riders/g0-2", "riders/g0-4")
    assert gateways[0].claims("london") == {
        "sub": "g0",
        "jti": "sim-g0",
        "per": {"london": {"riders/g0-*": "CU", "riders/*": "R"}},
        "dpv": {"london": ["riders/g0-*"]},
    }
    assert devices[0].claims("london")["dpv"] == {"london": ["riders/g0-0"]}


def test_bad_parameters_are_all_reported() -> None:
    bad = params(riders=0, devices_per_rider=0, abort_ratio=2, offline_s=(5.0, 1.0))
    problems = bad.problems()
    assert any("--riders" in p for p in problems)
    assert any("--abort-ratio" in p for p in problems)
    assert any("--offline" in p for p in problems)
    with pytest.raises(ValueError, match="--riders"):
        build_plan(bad)


def test_area_and_range_parsing() -> None:
    assert Area.parse("51.54,-0.05,51.48,-0.20") == CENTRAL_LONDON
    for text in ("1,2,3", "a,b,c,d", "91,0,92,1", "51.5,0,51.5,0"):
        with pytest.raises(ValueError):
            Area.parse(text)
    assert parse_range("5..30") == (5.0, 30.0)
    assert parse_range("2") == (2.0, 2.0)
    with pytest.raises(ValueError, match=r"MIN\.\.MAX"):
        parse_range("5-30")


def test_the_fast_coin_draws_what_random_choice_draws() -> None:
    """Routes are drawn without `random.Random.choice` for speed; a seed must still give
    the route it always gave."""
    ours, theirs = random.Random(42), random.Random(42)
    assert [_coin(ours.getrandbits) for _ in range(1000)] == [
        theirs.choice((-1.0, 1.0)) for _ in range(1000)
    ]
