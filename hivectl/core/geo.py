"""Geography for `lis` and subscriptions: distances, the three shapes of `sha`, a grid index.

Coordinates are WGS84 degrees, x = longitude in [-180, 180], y = latitude in [-90, 90]
(protocol.md §6.2). The earth is a sphere of mean radius `EARTH_RADIUS_M`; distances are
great-circle distances by the haversine formula, which keeps its precision at short range.
The sphere is up to about 0.5 % off the real ellipsoid, which is fine for presence.

Shapes
======

======== ===================== ==========================================================
kind     wire                  a point (lon, lat) is inside when
======== ===================== ==========================================================
Rect     ``{x1,y1,x2,y2}``     it lies between the corners, edges included. The corners
                               may come in any order; they are stored sorted, so
                               ``Rect(2, 2, 0, 0) == Rect(0, 0, 2, 2)``
Circle   ``{cx,cy,r}``         its great-circle distance to the centre is at most ``r``
                               metres
Polygon  ``{points:[{x,y}]}``  an even-odd ray cast says so (concave shapes work), or it
                               lies on an edge (within `EDGE_TOLERANCE_DEG`, so that a
                               point written in decimal on a slanted edge still counts)
======== ===================== ==========================================================

Rectangles and polygons are flat in degrees and never wrap across the antimeridian: a
rectangle from x 170 to x -170 is the 340 degrees between them. Circles are truly round on
the sphere and may cross the antimeridian or cover a pole.

Every shape is validated when it is built (finite numbers, coordinates in range, ``r >= 0``,
at least three polygon points), so a `Shape` in hand is always usable. `parse_shape` turns
untrusted ``sha`` JSON into one; the kind comes from the keys, extra keys are ignored, and
keys of two kinds at once are an error; it also caps polygons at `MAX_POLYGON_POINTS`. Errors
are `ShapeError` with the text the client sees.

Bounds
======

``bounds()`` is a box (min_lon, min_lat, max_lon, max_lat) that holds every point the shape
contains; indexes use it to find candidate shapes for a point. For a circle it is computed
from the angular radius δ = r / 111,195 m per degree (slightly more than the true
111,195.08, so the box errs on the large side): latitude ± δ, and longitude ± asin(sin δ /
cos lat), the exact half-width of a spherical cap. A circle that covers a pole or crosses the
antimeridian gets the full longitude range instead. Circle and polygon boxes are padded by
`BOUNDS_PAD_DEG` against rounding and the polygon edge tolerance.

Grid
====

`cell_of` puts a point in the cell ``(floor(lon / cell_deg), floor(lat / cell_deg))``;
`cells_for_bounds` lists the cells a box touches, so a shape is registered in those cells
and a point looks only at its own. A box touching more than ``max_cells`` cells gets
``None`` instead: such a shape belongs in the realm-wide list that every change is checked
against. The cap bounds the memory one subscription can pin in the index, and a shape that
big is likely to match a large share of the realm anyway.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE = 111_195.0
"""Metres per degree of latitude, rounded down so that boxes derived from it err large."""
EDGE_TOLERANCE_DEG = 1e-9
"""How far (in degrees, about 0.1 mm) a point may be from a polygon edge and still be on it."""
BOUNDS_PAD_DEG = EDGE_TOLERANCE_DEG
"""Padding added to circle and polygon boxes, so that neither rounding nor the edge tolerance
ever puts a contained point outside its shape's box."""
DEFAULT_MAX_CELLS = 1024
"""Default cap on the cells one box may cover in the grid (see `cells_for_bounds`)."""
MAX_POLYGON_POINTS = 1000
"""Most vertices a polygon may have. Every point tested walks every edge, so without a cap
one request of a few kilobytes could make a ``lis`` or a subscription cost seconds."""

Bounds = tuple[float, float, float, float]
Cell = tuple[int, int]


class ShapeError(ValueError):
    """A shape that cannot be used; the message is the error text for the client."""


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two points, by the haversine formula."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    h = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


@dataclass(frozen=True, slots=True)
class Rect:
    """A longitude/latitude box, edges included; the corners are stored sorted."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        _check_point(self.x1, self.y1)
        _check_point(self.x2, self.y2)
        x1, x2 = sorted((self.x1, self.x2))
        y1, y2 = sorted((self.y1, self.y2))
        object.__setattr__(self, "x1", x1)
        object.__setattr__(self, "y1", y1)
        object.__setattr__(self, "x2", x2)
        object.__setattr__(self, "y2", y2)

    def contains(self, lon: float, lat: float) -> bool:
        return self.x1 <= lon <= self.x2 and self.y1 <= lat <= self.y2

    def bounds(self) -> Bounds:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_wire(self) -> dict[str, object]:
        return {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2}


@dataclass(frozen=True, slots=True)
class Circle:
    """The points within ``r`` metres (great-circle) of the centre (cx, cy)."""

    cx: float
    cy: float
    r: float

    def __post_init__(self) -> None:
        _check_point(self.cx, self.cy)
        if not (math.isfinite(self.r) and self.r >= 0):
            raise ShapeError(f"sha: circle radius must be a finite number >= 0, got {self.r}")

    def contains(self, lon: float, lat: float) -> bool:
        return distance_m(self.cx, self.cy, lon, lat) <= self.r

    def bounds(self) -> Bounds:
        delta = self.r / METRES_PER_DEGREE
        half_width = _cap_half_width(self.cy, delta)
        min_lon, max_lon = -180.0, 180.0
        if half_width is not None and -180 <= self.cx - half_width <= self.cx + half_width <= 180:
            min_lon, max_lon = self.cx - half_width, self.cx + half_width
        return _pad((min_lon, self.cy - delta, max_lon, self.cy + delta))

    def to_wire(self) -> dict[str, object]:
        return {"cx": self.cx, "cy": self.cy, "r": self.r}


@dataclass(frozen=True, slots=True)
class Polygon:
    """A simple polygon (concave allowed) given by its vertices, boundary included."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise ShapeError(f"sha: a polygon needs at least 3 points, got {len(self.points)}")
        for lon, lat in self.points:
            _check_point(lon, lat)

    def contains(self, lon: float, lat: float) -> bool:
        inside = False
        previous = self.points[-1]
        for current in self.points:
            if _on_segment(lon, lat, previous, current):
                return True
            if _crosses_ray(lon, lat, previous, current):
                inside = not inside
            previous = current
        return inside

    def bounds(self) -> Bounds:
        lons = [lon for lon, _ in self.points]
        lats = [lat for _, lat in self.points]
        return _pad((min(lons), min(lats), max(lons), max(lats)))

    def to_wire(self) -> dict[str, object]:
        return {"points": [{"x": lon, "y": lat} for lon, lat in self.points]}


Shape = Rect | Circle | Polygon

_EXPECTED = "sha: expected a rectangle {x1,y1,x2,y2}, a circle {cx,cy,r} or a polygon {points}"
_KIND_KEYS = {
    "rectangle": ("x1", "y1", "x2", "y2"),
    "circle": ("cx", "cy", "r"),
    "polygon": ("points",),
}


def parse_shape(value: object) -> Shape:
    """The shape described by a ``sha`` JSON value; raises `ShapeError`."""
    if not isinstance(value, Mapping):
        raise ShapeError(_EXPECTED)
    kinds = [kind for kind, keys in _KIND_KEYS.items() if any(key in value for key in keys)]
    if not kinds:
        raise ShapeError(_EXPECTED)
    if len(kinds) > 1:
        raise ShapeError(f"sha: ambiguous shape, it has keys of a {' and a '.join(kinds)}")
    kind = kinds[0]
    if kind == "polygon":
        return _parse_polygon(value["points"])
    keys = _KIND_KEYS[kind]
    numbers = _numbers(value, keys, f"sha: {kind} needs numbers {', '.join(keys)}")
    return Rect(*numbers) if kind == "rectangle" else Circle(*numbers)


def cell_of(lon: float, lat: float, cell_deg: float) -> Cell:
    """The grid cell holding a point."""
    return (math.floor(lon / cell_deg), math.floor(lat / cell_deg))


def cells_for_bounds(
    bounds: Bounds, cell_deg: float, max_cells: int = DEFAULT_MAX_CELLS
) -> Iterator[Cell] | None:
    """Every cell the box touches, or None when that is more than `max_cells` cells.

    None means "too big to index by cell: keep it in the realm-wide list".
    """
    min_x, min_y = cell_of(bounds[0], bounds[1], cell_deg)
    max_x, max_y = cell_of(bounds[2], bounds[3], cell_deg)
    if (max_x - min_x + 1) * (max_y - min_y + 1) > max_cells:
        return None
    return itertools.product(range(min_x, max_x + 1), range(min_y, max_y + 1))


def _check_point(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise ShapeError(f"sha: longitude {lon} is outside [-180, 180]")
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise ShapeError(f"sha: latitude {lat} is outside [-90, 90]")


def _cap_half_width(lat: float, delta: float) -> float | None:
    """Longitude half-width in degrees of a cap of angular radius `delta` centred at `lat`.

    None when the cap reaches a pole (it then spans every longitude).
    """
    if abs(lat) + delta >= 90:
        return None
    ratio = math.sin(math.radians(delta)) / math.cos(math.radians(lat))
    return math.degrees(math.asin(min(1.0, ratio)))


def _pad(bounds: Bounds) -> Bounds:
    min_lon, min_lat, max_lon, max_lat = bounds
    return (
        max(-180.0, min_lon - BOUNDS_PAD_DEG),
        max(-90.0, min_lat - BOUNDS_PAD_DEG),
        min(180.0, max_lon + BOUNDS_PAD_DEG),
        min(90.0, max_lat + BOUNDS_PAD_DEG),
    )


def _on_segment(
    lon: float, lat: float, start: tuple[float, float], end: tuple[float, float]
) -> bool:
    """Whether the point lies within `EDGE_TOLERANCE_DEG` of the segment start-end."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    length_sq = dx * dx + dy * dy
    t = 0.0 if length_sq == 0 else ((lon - x1) * dx + (lat - y1) * dy) / length_sq
    t = min(1.0, max(0.0, t))
    return math.hypot(lon - (x1 + t * dx), lat - (y1 + t * dy)) <= EDGE_TOLERANCE_DEG


def _crosses_ray(
    lon: float, lat: float, start: tuple[float, float], end: tuple[float, float]
) -> bool:
    """Whether the edge crosses the ray going east from the point (half-open in latitude,
    so a ray through a vertex counts the two edges meeting there consistently)."""
    (x1, y1), (x2, y2) = start, end
    if (y1 > lat) == (y2 > lat):
        return False
    crossing_lon = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
    return lon < crossing_lon


def _real(value: object) -> float | None:
    """`value` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _numbers(value: Mapping[object, object], keys: tuple[str, ...], error: str) -> list[float]:
    """The finite numbers under `keys`, in order; `ShapeError(error)` if any is not one."""
    numbers = []
    for key in keys:
        number = _real(value.get(key))
        if number is None:
            raise ShapeError(error)
        numbers.append(number)
    return numbers


def _parse_polygon(points: object) -> Polygon:
    if not isinstance(points, list) or len(points) < 3:
        raise ShapeError("sha: polygon needs points, a list of at least 3 {x, y}")
    if len(points) > MAX_POLYGON_POINTS:
        raise ShapeError(f"sha: a polygon has at most {MAX_POLYGON_POINTS} points")
    parsed = []
    for index, point in enumerate(points):
        if not isinstance(point, Mapping):
            raise ShapeError(f"sha: polygon point {index} needs numbers x, y")
        x, y = _numbers(point, ("x", "y"), f"sha: polygon point {index} needs numbers x, y")
        parsed.append((x, y))
    return Polygon(tuple(parsed))
