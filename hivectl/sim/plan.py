"""The simulation plan: who connects, where they ride, and when they drop off -- from a seed.

Everything here is a pure function of `PlanParams`: the same seed gives the same riders, the
same routes and the same churn schedule, so a run that showed a problem can be run again.
Each rider and each connection draws from its own `random.Random` seeded with a string
(``"<seed>:route:<rider number>"``); string seeds hash with SHA-512, independent of
``PYTHONHASHSEED``, and adding riders does not change the existing riders' routes. A
rider's route is drawn when first asked for, not with the plan: at 100,000 riders drawing
every route takes seconds, which the plan would spend before the run could say anything.

Routes
======

A rider rides a street grid: legs of 150-900 m, alternately north-south and east-west (a turn
at every junction), each at its own speed within the rider's range, reflected back into the
area when a leg would leave it. The route is ridden out and back again forever, so a position
exists for any time. Distances use a flat-earth approximation around the area's centre,
plenty for a few kilometres. A `Fix` carries what goes into ``loc``: ``lat``/``lon`` in
degrees, ``spe`` in metres per second and ``hea`` in degrees clockwise from north (the W3C
geolocation units Hivekit's clients send).

Connections and churn
=====================

A rider has ``devices_per_rider`` device connections, each a data provider for
``riders/<id>`` (several devices: a phone and a watch). With gateways, rider ids are
``g<k>-<n>`` and gateway ``k`` is one connection providing ``riders/g<k>-*``, every rider
behind it. Each connection sends location updates for the objects it provides.

Connections start one after the other over ``ramp_up`` seconds. Each then lives through
sessions: online for an exponentially distributed time (mean ``60 / churn`` seconds, at least
`MIN_SESSION_S`), then it drops -- an abrupt abort with probability ``abort_ratio``, else a
clean close -- and stays offline for a uniform delay in ``offline`` before reconnecting. The
last session ends with the run (a clean close).
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from typing import Literal

OBJECT_PREFIX = "riders/"
MIN_SESSION_S = 1.0
"""Shortest time online: a session shorter than a connect makes no sense to model."""
MAX_SESSIONS = 10_000
"""Sessions per connection are bounded, whatever the churn and duration."""
LEG_COUNT = 24
LEG_LENGTH_M = (150.0, 900.0)
METRES_PER_DEGREE = 111_320.0

Ending = Literal["close", "abort", "end"]
Kind = Literal["device", "gateway"]


@dataclass(frozen=True)
class Area:
    """A bounding box in degrees; corners in any order, stored sorted."""

    south: float
    west: float
    north: float
    east: float

    def __post_init__(self) -> None:
        south, north = sorted((self.south, self.north))
        west, east = sorted((self.west, self.east))
        object.__setattr__(self, "south", south)
        object.__setattr__(self, "north", north)
        object.__setattr__(self, "west", west)
        object.__setattr__(self, "east", east)

    @classmethod
    def parse(cls, text: str) -> Area:
        """``"LAT1,LON1,LAT2,LON2"`` (two opposite corners); ValueError when malformed."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"expected LAT1,LON1,LAT2,LON2, got {text!r}")
        try:
            lat1, lon1, lat2, lon2 = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"expected four numbers LAT1,LON1,LAT2,LON2, got {text!r}") from None
        area = cls(lat1, lon1, lat2, lon2)
        if area.problems():
            raise ValueError("; ".join(area.problems()))
        return area

    def problems(self) -> list[str]:
        found = []
        if not all(math.isfinite(v) for v in (self.south, self.west, self.north, self.east)):
            found.append("area corners must be finite numbers")
        elif not (-85 <= self.south <= self.north <= 85 and -180 <= self.west <= self.east <= 180):
            found.append("area must lie within latitudes -85..85 and longitudes -180..180")
        elif self.north - self.south < 1e-4 or self.east - self.west < 1e-4:
            found.append("area must be at least about 10 m on each side")
        return found


CENTRAL_LONDON = Area(51.48, -0.20, 51.54, -0.05)


@dataclass(frozen=True)
class Fix:
    """Where a rider is at some moment: the ``loc`` of a location update."""

    lat: float
    lon: float
    speed_mps: float
    heading_deg: float

    def as_location(self) -> dict[str, float]:
        return {
            "lat": round(self.lat, 6),
            "lon": round(self.lon, 6),
            "spe": round(self.speed_mps, 2),
            "hea": round(self.heading_deg, 1),
        }


LEG_FIELDS = 7
"""A leg is seven doubles: start ``lat``, ``lon``, its ``d_lat``, ``d_lon`` (degrees), speed
(m/s), duration (s) and heading (degrees)."""
SECONDS_FIELD = 5


@dataclass(frozen=True)
class Route:
    """Grid legs ridden out and back: `position` is defined for every time.

    The legs are kept as one flat array of doubles, `LEG_FIELDS` per leg: a rider's route
    is about 2 KB that way instead of 6 KB of float objects, which is the difference
    between 200 MB and 600 MB at 100,000 riders.
    """

    data: array[float]
    _ends: array[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seconds = self.data[SECONDS_FIELD::LEG_FIELDS]
        object.__setattr__(self, "_ends", array("d", accumulate(seconds)))

    @property
    def one_way_seconds(self) -> float:
        return self._ends[-1]

    def position(self, t: float) -> Fix:
        """The fix `t` seconds after the rider set off (negative `t` is the start)."""
        one_way = self.one_way_seconds
        t = max(0.0, t) % (2 * one_way)
        back = t >= one_way
        if back:
            t = 2 * one_way - t
        index = min(bisect_right(self._ends, t), len(self._ends) - 1)
        start = index * LEG_FIELDS
        lat, lon, d_lat, d_lon, speed, seconds, heading = self.data[start : start + LEG_FIELDS]
        begun = self._ends[index] - seconds
        share = min(1.0, max(0.0, (t - begun) / seconds))
        if back:
            heading = (heading + 180.0) % 360.0
        return Fix(
            lat=lat + d_lat * share,
            lon=lon + d_lon * share,
            speed_mps=speed,
            heading_deg=heading,
        )


def make_route(rng: random.Random, area: Area, speed_kmh: tuple[float, float]) -> Route:
    """A street-grid route starting at a random point of `area`.

    Written for speed (100,000 riders draw 2.4 million legs) but drawing exactly what
    ``rng.uniform`` and ``rng.choice`` would, in the same order, so a seed gives the same
    route as it always did.
    """
    mid_lat = math.radians((area.south + area.north) / 2)
    metres_lat = METRES_PER_DEGREE
    metres_lon = METRES_PER_DEGREE * math.cos(mid_lat)
    lat = rng.uniform(area.south, area.north)
    lon = rng.uniform(area.west, area.east)
    low, high = sorted(speed_kmh)
    base = rng.uniform(low, high)
    north_south = rng.random() < 0.5
    draw, bits = rng.random, rng.getrandbits
    shortest, longest = LEG_LENGTH_M
    data = array("d")
    for _ in range(LEG_COUNT):
        length = shortest + (longest - shortest) * draw()
        sign = _coin(bits)
        speed_kmh_leg = min(high, max(low, base * (0.85 + (1.15 - 0.85) * draw())))
        if north_south:
            d_lat = _reflect(lat, sign * length / metres_lat, area.south, area.north)
            d_lon = 0.0
            heading = 0.0 if d_lat >= 0 else 180.0
            metres = abs(d_lat) * metres_lat
        else:
            d_lon = _reflect(lon, sign * length / metres_lon, area.west, area.east)
            d_lat = 0.0
            heading = 90.0 if d_lon >= 0 else 270.0
            metres = abs(d_lon) * metres_lon
        speed = speed_kmh_leg / 3.6
        data.extend((lat, lon, d_lat, d_lon, speed, max(metres / speed, 1e-3), heading))
        lat, lon = lat + d_lat, lon + d_lon
        north_south = not north_south
    return Route(data)


def _coin(bits: Callable[[int], int]) -> float:
    """``rng.choice((-1.0, 1.0))`` as `random.Random` draws it (two bits, redrawn when 2 or
    3), without the generic machinery around it."""
    drawn = bits(2)
    while drawn >= 2:
        drawn = bits(2)
    return (-1.0, 1.0)[drawn]


def _reflect(start: float, delta: float, low: float, high: float) -> float:
    """`delta` turned back (and shortened if need be) so that start + delta stays in range."""
    if not low <= start + delta <= high:
        delta = -delta
    return min(high, max(low, start + delta)) - start


@dataclass(frozen=True)
class Session:
    """Online from `start` to `end` (seconds after the run started), then `ending`."""

    start: float
    end: float
    ending: Ending


def make_sessions(
    rng: random.Random,
    first_start: float,
    duration: float,
    churn_per_min: float,
    offline_s: tuple[float, float],
    abort_ratio: float,
) -> tuple[Session, ...]:
    """The online sessions of one connection (see the module docstring for the model)."""
    rate = churn_per_min / 60.0
    sessions: list[Session] = []
    start = first_start
    while start < duration and len(sessions) < MAX_SESSIONS:
        if sessions and start + MIN_SESSION_S > duration:
            break  # no reconnect just before the end: it would be gone before it arrived
        online = max(MIN_SESSION_S, rng.expovariate(rate)) if rate > 0 else math.inf
        end = start + online
        if end >= duration:
            sessions.append(Session(start, duration, "end"))
            break
        ending: Ending = "abort" if rng.random() < abort_ratio else "close"
        sessions.append(Session(start, end, ending))
        start = end + rng.uniform(*offline_s)
    return tuple(sessions)


DEFAULT_RAMP_UP_S = 10.0


def default_ramp_up(duration_s: float) -> float:
    """The ramp-up when none is asked for: `DEFAULT_RAMP_UP_S`, or the whole run when that
    is shorter (a 5 s run ramps up over 5 s rather than being refused)."""
    return min(DEFAULT_RAMP_UP_S, duration_s)


@dataclass(frozen=True)
class PlanParams:
    riders: int = 100
    devices_per_rider: int = 1
    gateways: int = 0
    seed: int = 0
    duration_s: float = 60.0
    ramp_up_s: float = DEFAULT_RAMP_UP_S
    update_interval_s: float = 1.0
    churn_per_min: float = 0.1
    offline_s: tuple[float, float] = (5.0, 30.0)
    abort_ratio: float = 0.3
    area: Area = CENTRAL_LONDON
    speed_kmh: tuple[float, float] = (10.0, 25.0)

    def problems(self) -> list[str]:
        """Every reason these parameters cannot make a plan (empty when fine)."""
        found = []
        if not 1 <= self.riders <= 1_000_000:
            found.append("--riders must be from 1 to 1000000")
        if not 0 <= self.devices_per_rider <= 16:
            found.append("--devices-per-rider must be from 0 to 16")
        if not 0 <= self.gateways <= self.riders:
            found.append("--gateways must be from 0 to the number of riders")
        if self.devices_per_rider == 0 and self.gateways == 0:
            found.append("riders need a device (--devices-per-rider) or a gateway (--gateways)")
        if not 0 < self.duration_s <= 7 * 86400:
            found.append("--duration must be more than 0 and at most 7 days")
        if not 0 <= self.ramp_up_s <= self.duration_s:
            found.append("--ramp-up must be from 0 to --duration")
        if not 0.01 <= self.update_interval_s <= 3600:
            found.append("--update-interval must be from 10ms to 1h")
        if not 0 <= self.churn_per_min <= 60:
            found.append("--churn must be from 0 to 60 (a fraction of connections per minute)")
        low, high = self.offline_s
        if not 0 < low <= high <= 86400:
            found.append("--offline must be MIN..MAX seconds with 0 < MIN <= MAX <= 1 day")
        if not 0 <= self.abort_ratio <= 1:
            found.append("--abort-ratio must be from 0 to 1")
        low, high = self.speed_kmh
        if not 0 < low <= high <= 200:
            found.append("speeds must be 0 < MIN <= MAX <= 200 km/h")
        return found + self.area.problems()


@dataclass(frozen=True)
class RiderPlan:
    object_id: str
    name: str
    label: str
    gateway: int | None
    route_seed: str
    area: Area
    speed_kmh: tuple[float, float]

    @cached_property
    def route(self) -> Route:
        return make_route(random.Random(self.route_seed), self.area, self.speed_kmh)


@dataclass(frozen=True)
class ConnectionPlan:
    """One WebSocket connection: a rider's device or a gateway."""

    key: str
    kind: Kind
    sub: str
    provides: str
    """The ``dpv`` (and ``CU``) id pattern: one rider's id, or a gateway's prefix."""
    objects: tuple[str, ...]
    """The rider objects it provides and sends updates for."""
    sessions: tuple[Session, ...]
    phase_s: float
    """Offset of its update clock within the interval, so the fleet does not send in step."""

    def claims(self, realm: str) -> dict[str, object]:
        """``sub``, ``jti``, ``per`` and ``dpv`` of its token: writes its own, reads all riders."""
        return {
            "sub": self.sub,
            "jti": f"sim-{self.key}",
            "per": {realm: {self.provides: "CU", f"{OBJECT_PREFIX}*": "R"}},
            "dpv": {realm: [self.provides]},
        }


@dataclass(frozen=True)
class Plan:
    params: PlanParams
    riders: tuple[RiderPlan, ...]
    connections: tuple[ConnectionPlan, ...]

    @property
    def planned_drops(self) -> int:
        return sum(s.ending != "end" for c in self.connections for s in c.sessions)


def build_plan(params: PlanParams) -> Plan:
    """The whole run, deterministic in `params` (ValueError lists the problems)."""
    problems = params.problems()
    if problems:
        raise ValueError("; ".join(problems))
    width = len(str(params.riders - 1))
    riders = []
    for index in range(params.riders):
        gateway = index % params.gateways if params.gateways else None
        number = f"{index:0{width}d}"
        name = f"g{gateway}-{number}" if gateway is not None else f"r{number}"
        riders.append(
            RiderPlan(
                f"{OBJECT_PREFIX}{name}",
                name,
                f"Rider {number}",
                gateway,
                f"{params.seed}:route:{index}",
                params.area,
                params.speed_kmh,
            )
        )

    # (key, draw key, kind, sub, provides, objects); draws are keyed by rider number, not by
    # the padded name, so that adding riders leaves the others' draws alone
    pending: list[tuple[str, str, Kind, str, str, tuple[str, ...]]] = []
    for index, rider in enumerate(riders):
        for device in range(params.devices_per_rider):
            key, draw = f"{rider.name}.d{device}", f"{index}.d{device}"
            pending.append((key, draw, "device", rider.name, rider.object_id, (rider.object_id,)))
    behind: list[list[str]] = [[] for _ in range(params.gateways)]
    for rider in riders:
        if rider.gateway is not None:
            behind[rider.gateway].append(rider.object_id)
    for gateway in range(params.gateways):
        objects = tuple(behind[gateway])
        name = f"g{gateway}"
        pending.append((name, name, "gateway", name, f"{OBJECT_PREFIX}{name}-*", objects))

    count = len(pending)
    connections = []
    for index, (key, draw, kind, sub, provides, objects) in enumerate(pending):
        rng = random.Random(f"{params.seed}:churn:{draw}")
        first = params.ramp_up_s * index / count
        phase = rng.uniform(0.0, params.update_interval_s)
        sessions = make_sessions(
            rng,
            first,
            params.duration_s,
            params.churn_per_min,
            params.offline_s,
            params.abort_ratio,
        )
        connections.append(ConnectionPlan(key, kind, sub, provides, objects, sessions, phase))
    return Plan(params, tuple(riders), tuple(connections))


def parse_range(text: str) -> tuple[float, float]:
    """``"5..30"`` -> (5.0, 30.0); a single number is a range of one value."""
    low, sep, high = text.partition("..")
    try:
        values = (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError:
        raise ValueError(f"expected MIN..MAX, got {text!r}") from None
    return values
