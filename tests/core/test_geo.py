import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.geo import (
    EARTH_RADIUS_M,
    EDGE_TOLERANCE_DEG,
    Circle,
    Polygon,
    Rect,
    ShapeError,
    cell_of,
    cells_for_bounds,
    distance_m,
    parse_shape,
)

METRES_PER_DEG_LAT = EARTH_RADIUS_M * math.pi / 180  # about 111,195 m


def north_of(lon: float, lat: float, metres: float) -> tuple[float, float]:
    return lon, lat + metres / METRES_PER_DEG_LAT


def destination(lon: float, lat: float, bearing_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` away from (lon, lat) along the great circle at `bearing_deg`."""
    phi1, lambda1, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = metres / EARTH_RADIUS_M
    sin_phi2 = math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    phi2 = math.asin(max(-1.0, min(1.0, sin_phi2)))
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * sin_phi2,
    )
    return (math.degrees(lambda2) + 540) % 360 - 180, math.degrees(phi2)


def within(bounds: tuple[float, float, float, float], lon: float, lat: float) -> bool:
    min_lon, min_lat, max_lon, max_lat = bounds
    return min_lon <= lon <= max_lon and min_lat <= lat <= max_lat


# --- distance ---------------------------------------------------------------------------


def test_distance_along_a_meridian_is_radius_times_angle() -> None:
    assert distance_m(13.4, 52.0, 13.4, 53.0) == pytest.approx(METRES_PER_DEG_LAT, rel=1e-9)
    assert distance_m(0, 0, 0, 90) == pytest.approx(EARTH_RADIUS_M * math.pi / 2, rel=1e-12)


def test_distance_to_the_antipode_is_half_the_circumference() -> None:
    assert distance_m(0, 0, 180, 0) == pytest.approx(EARTH_RADIUS_M * math.pi, rel=1e-12)
    assert distance_m(30, 45, -150, -45) == pytest.approx(EARTH_RADIUS_M * math.pi, rel=1e-9)


def test_a_degree_of_longitude_shrinks_with_latitude() -> None:
    at_equator = distance_m(0, 0, 1, 0)
    at_sixty = distance_m(0, 60, 1, 60)
    assert at_equator == pytest.approx(METRES_PER_DEG_LAT, rel=1e-9)
    assert at_sixty == pytest.approx(at_equator / 2, rel=1e-4)


def test_distance_is_symmetric_and_zero_for_the_same_point() -> None:
    assert distance_m(2.35, 48.86, -0.13, 51.51) == distance_m(-0.13, 51.51, 2.35, 48.86)
    assert distance_m(2.35, 48.86, -0.13, 51.51) == pytest.approx(343_500, rel=2e-3)
    assert distance_m(2.35, 48.86, 2.35, 48.86) == 0


# --- Rect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corners", [(0, 0, 2, 1), (2, 1, 0, 0), (0, 1, 2, 0), (2, 0, 0, 1)], ids=str
)
def test_rect_corners_in_any_order_make_the_same_box(corners: tuple[int, ...]) -> None:
    rect = Rect(*corners)
    assert rect == Rect(0, 0, 2, 1)
    assert rect.bounds() == (0, 0, 2, 1)
    assert rect.to_wire() == {"x1": 0, "y1": 0, "x2": 2, "y2": 1}
    assert rect.contains(1, 0.5)
    assert not rect.contains(1, 1.5)
    assert not rect.contains(-0.5, 0.5)


def test_rect_edges_and_corners_are_inside() -> None:
    rect = Rect(-1.0, -1.0, 1.0, 1.0)
    for edge in [(-1, -1), (1, 1), (-1, 1), (1, -1), (0, 1), (1, 0), (-1, 0), (0, -1)]:
        assert rect.contains(*edge), edge
    for outside in [(1.000001, 0.0), (0.0, -1.000001), (-1.000001, 1.0)]:
        assert not rect.contains(*outside), outside


def test_rect_does_not_wrap_across_the_antimeridian() -> None:
    rect = Rect(170, 0, -170, 10)
    assert rect.contains(0, 5)
    assert not rect.contains(175, 5)


# --- Circle -----------------------------------------------------------------------------


def test_circle_holds_a_point_69_m_away_and_not_one_138_m_away() -> None:
    circle = Circle(13.4, 52.5, 110)
    assert circle.contains(*north_of(13.4, 52.5, 69))
    assert not circle.contains(*north_of(13.4, 52.5, 138))
    assert circle.contains(13.4, 52.5)


def test_circle_measures_longitude_on_the_sphere_not_in_degrees() -> None:
    # At 60 degrees north 1e-3 degrees of longitude is about 55.6 m, of latitude about 111 m.
    circle = Circle(10.0, 60.0, 60)
    assert circle.contains(10.001, 60.0)
    assert not circle.contains(10.0, 60.001)


def test_circle_boundary_is_inclusive_and_zero_radius_holds_only_the_centre() -> None:
    lon, lat = north_of(5, 5, 100)
    assert Circle(5, 5, distance_m(5, 5, lon, lat)).contains(lon, lat)
    assert Circle(5, 5, 0).contains(5, 5)
    assert not Circle(5, 5, 0).contains(5, 5.000001)


def test_circle_bounds_are_close_to_the_circle() -> None:
    half = 1000 / METRES_PER_DEG_LAT
    min_lon, min_lat, max_lon, max_lat = Circle(0, 0, 1000).bounds()
    assert (min_lon, min_lat, max_lon, max_lat) == pytest.approx((-half, -half, half, half))
    min_lon, min_lat, max_lon, max_lat = Circle(10, 60, 1000).bounds()
    assert max_lat - 60 == pytest.approx(half)
    assert max_lon - 10 == pytest.approx(2 * half, rel=1e-3)  # widened by 1 / cos(60)
    assert 10 - min_lon == pytest.approx(max_lon - 10)


def test_circle_over_a_pole_or_the_antimeridian_spans_every_longitude() -> None:
    polar = Circle(45, 89.99, 5000).bounds()
    assert (polar[0], polar[2], polar[3]) == (-180, 180, 90)
    assert polar[1] == pytest.approx(89.99 - 5000 / METRES_PER_DEG_LAT)
    crossing = Circle(179.999, 0, 1000).bounds()
    assert (crossing[0], crossing[2]) == (-180, 180)
    assert crossing[3] == pytest.approx(1000 / METRES_PER_DEG_LAT)
    assert Circle(0, 0, 3e7).bounds() == (-180, -90, 180, 90)


@given(
    cx=st.floats(-180, 180),
    cy=st.floats(-90, 90),
    r=st.one_of(st.floats(0, 1000), st.floats(0, 2.1e7)),
    bearing=st.floats(0, 360),
    fraction=st.floats(0, 1),
)
def test_circle_bounds_contain_every_point_of_the_circle(
    cx: float, cy: float, r: float, bearing: float, fraction: float
) -> None:
    circle = Circle(cx, cy, r)
    lon, lat = destination(cx, cy, bearing, r * fraction)
    if circle.contains(lon, lat):
        assert within(circle.bounds(), lon, lat), (lon, lat)


# --- Polygon ----------------------------------------------------------------------------

# A U: arms x 0..1 and 2..3 from y 0 to 3, joined by a base from y 0 to 1; the notch is
# x 1..2 above y 1 and open at the top.
U = Polygon(((0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)))


def test_concave_polygon_excludes_its_notch_and_includes_both_arms() -> None:
    assert U.contains(0.5, 2)
    assert U.contains(2.5, 2)
    assert U.contains(1.5, 0.5)
    assert not U.contains(1.5, 2)
    assert not U.contains(1.5, 3)  # the mouth of the notch is not an edge
    assert not U.contains(4, 1)


def test_polygon_ray_through_vertices_counts_crossings_right() -> None:
    # y = 1 and y = 3 pass exactly through vertices of the U.
    assert U.contains(0.5, 1)
    assert U.contains(2.5, 1)
    assert not U.contains(-1, 1)
    assert not U.contains(3.5, 1)
    assert not U.contains(-1, 3)
    assert not U.contains(-1, 0)


def test_polygon_edges_and_vertices_are_inside() -> None:
    for point in [(1.5, 1), (1, 2), (2, 2), (0, 0), (2, 3), (3, 1.5), (1.5, 0), (0.5, 3)]:
        assert U.contains(*point), point


def test_point_on_a_slanted_edge_is_inside_despite_rounding() -> None:
    triangle = Polygon(((0, 0), (1, 3), (2, 0)))
    assert triangle.contains(0.1, 0.3)  # on the edge y = 3x, not exactly in binary
    assert triangle.contains(0.1, 0.29)
    assert not triangle.contains(0.1, 0.31)


def test_polygon_bounds_and_wire_form() -> None:
    assert U.bounds() == pytest.approx((0, 0, 3, 3), abs=1e-8)
    just_beyond_an_edge = (3 + EDGE_TOLERANCE_DEG / 2, 1.5)
    assert U.contains(*just_beyond_an_edge)
    assert within(U.bounds(), *just_beyond_an_edge)
    triangle = Polygon(((0, 0), (1, 3), (2, 0)))
    assert triangle.to_wire() == {"points": [{"x": 0, "y": 0}, {"x": 1, "y": 3}, {"x": 2, "y": 0}]}


def test_polygon_needs_three_points() -> None:
    with pytest.raises(ShapeError, match="at least 3 points"):
        Polygon(((0, 0), (1, 1)))


# --- parse_shape ------------------------------------------------------------------------


def test_parse_shape_infers_the_kind_from_the_keys() -> None:
    assert parse_shape({"x1": 2, "y1": 1, "x2": 0, "y2": 0}) == Rect(0, 0, 2, 1)
    assert parse_shape({"cx": 13.4, "cy": 52.5, "r": 110}) == Circle(13.4, 52.5, 110)
    polygon = parse_shape({"points": [{"x": 0, "y": 0}, {"x": 1, "y": 3}, {"x": 2, "y": 0}]})
    assert polygon == Polygon(((0, 0), (1, 3), (2, 0)))


def test_parse_shape_ignores_extra_keys_and_round_trips_the_wire_form() -> None:
    circle = parse_shape({"cx": 1, "cy": 2, "r": 3, "unit": "m"})
    assert circle == Circle(1, 2, 3)
    assert parse_shape(circle.to_wire()) == circle
    assert parse_shape(U.to_wire()) == U


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "expected a rectangle"),
        ("circle", "expected a rectangle"),
        ({}, "expected a rectangle"),
        ({"lon": 1, "lat": 2}, "expected a rectangle"),
        ({"x1": 0, "y1": 0, "cx": 0, "cy": 0, "r": 1}, "ambiguous shape"),
        ({"x1": 0, "y1": 0, "x2": 1}, "rectangle needs numbers x1, y1, x2, y2"),
        ({"x1": True, "y1": 0, "x2": 1, "y2": 1}, "rectangle needs numbers"),
        ({"cx": "1", "cy": 0, "r": 1}, "circle needs numbers cx, cy, r"),
        ({"cx": 0, "cy": 0, "r": None}, "circle needs numbers cx, cy, r"),
        ({"cx": 0, "cy": 0, "r": math.nan}, "circle needs numbers cx, cy, r"),
        ({"cx": math.inf, "cy": 0, "r": 1}, "circle needs numbers cx, cy, r"),
        ({"cx": 0, "cy": 0, "r": 10**400}, "circle needs numbers cx, cy, r"),
        ({"cx": 0, "cy": 0, "r": -1}, "radius must be a finite number >= 0"),
        ({"cx": 0, "cy": 90.5, "r": 1}, r"latitude 90.5 is outside \[-90, 90\]"),
        ({"cx": -181, "cy": 0, "r": 1}, r"longitude -181.0 is outside \[-180, 180\]"),
        ({"x1": 0, "y1": -91, "x2": 1, "y2": 1}, "latitude -91.0 is outside"),
        ({"points": "abc"}, "polygon needs points"),
        ({"points": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]}, "polygon needs points"),
        ({"points": [[0, 0], [1, 0], [1, 1]]}, "polygon point 0 needs numbers x, y"),
        ({"points": [{"x": 0, "y": 0}, {"x": 1}, {"x": 1, "y": 1}]}, "point 1 needs numbers"),
        ({"points": [{"x": 0, "y": 0}, {"x": 1, "y": 95}, {"x": 1, "y": 1}]}, "latitude 95.0"),
    ],
)
def test_parse_shape_rejects_bad_input_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(ShapeError, match=f"^sha: .*{message}"):
        parse_shape(value)


# --- grid -------------------------------------------------------------------------------


def test_cell_of_floors_so_negative_coordinates_get_their_own_cells() -> None:
    assert cell_of(0.05, 0.05, 0.1) == (0, 0)
    assert cell_of(-0.05, -0.05, 0.1) == (-1, -1)
    assert cell_of(13.4, -52.5, 1.0) == (13, -53)


def test_cells_for_bounds_lists_every_touched_cell() -> None:
    cells = cells_for_bounds((0.05, 0.05, 0.25, 0.15), 0.1)
    assert cells is not None
    assert sorted(cells) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    point = cells_for_bounds(Circle(5.55, 5.55, 0).bounds(), 1.0)
    assert point is not None
    assert list(point) == [(5, 5)]


def test_cells_for_bounds_returns_none_over_the_cap() -> None:
    four_cells = (0.0, 0.0, 0.35, 0.05)
    capped = cells_for_bounds(four_cells, 0.1, max_cells=4)
    assert capped is not None
    assert len(list(capped)) == 4
    assert cells_for_bounds(four_cells, 0.1, max_cells=3) is None
    assert cells_for_bounds((-180, -90, 180, 90), 0.1) is None


@given(
    lon=st.floats(-180, 180),
    lat=st.floats(-90, 90),
    width=st.floats(0, 2),
    height=st.floats(0, 2),
    u=st.floats(0, 1),
    v=st.floats(0, 1),
    cell_deg=st.sampled_from([0.01, 0.1, 0.25, 1.0]),
)
def test_a_point_inside_bounds_falls_in_one_of_their_cells(
    lon: float, lat: float, width: float, height: float, u: float, v: float, cell_deg: float
) -> None:
    bounds = (lon, lat, lon + width, lat + height)
    cells = cells_for_bounds(bounds, cell_deg, max_cells=100_000)
    assert cells is not None
    point_lon, point_lat = min(lon + u * width, bounds[2]), min(lat + v * height, bounds[3])
    assert cell_of(point_lon, point_lat, cell_deg) in set(cells)
