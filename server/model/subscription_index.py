"""Object and realm subscriptions (protocol.md §6.3): who watches what, and the exact deltas.

The hub tells this module about every change (an object written, deleted or changing
presence; a realm created, updated or deleted) and gets back the pushes to make. Nothing
here does I/O or reads a clock; a subscription's `ful` push after ``exe`` is rendered here
but timed by the hub.

Deltas
======

Each object subscription remembers which ids it currently **holds** (the objects it has
told the client about, or would have, in insertion order). A change to one object is
compared with that memory, never guessed from what changed:

========= ======================= ==============================================
held?     matches after change?   push (one per change per subscription)
========= ======================= ==============================================
no        no                      nothing: the change does not touch it
no        yes                     ``dta`` with the object in ``cre``
yes       yes                     ``dta`` with the object in ``upd``
yes       no (or deleted)         ``dta`` with ``{id: {}}`` in ``del``
========= ======================= ==============================================

"Matches" means: inside the subscription's area, passing every ``atr`` filter, and
readable (R) by the subscribing session. A presence transition is a change like any other,
so a held object whose ``cst`` flips gets one ``upd``. Creating an object under a live
provider is one change: the hub settles presence first, so the object arrives in ``cre``
already ``con``.

A ``tar`` subscription's area is the circle of radius ``r`` around its target's current
position. When the target moves (or appears, or is deleted) the whole subscription is
re-evaluated and the difference is one push: objects that came into range in ``cre``, the
target itself in ``upd`` if it stays held, objects now out of range in ``del``; nothing
when the set and the target's entry did not change. Without its target it holds nothing.

``ful`` pushes (after ``exe`` and after every ``upd`` of the options) carry the held set in
``cre``; the client replaces its set with it. Deltas and ``ful`` pushes always carry the
three maps ``cre``, ``upd`` and ``del``, empty ones included.

Initial state of any size
=========================

A held set of 100,000 objects is tens of megabytes as one message: too much to build per
subscriber, and more than a client reading at an ordinary pace takes before a send queue
limit. So the initial state is a *stream* (`SubscriptionIndex.full`): a ``ful`` push with
the first `FULL_CHUNK` held objects, then ``dta`` pushes with the next ones in ``cre``, each
rendered from the current state only when the connection can take it. Only the ids to
send are copied, not the objects. A client that follows the protocol ends with exactly the
held set: deltas go on as usual meanwhile; an object deleted or no longer matching before
its turn has had its ``del`` and is skipped; one changed before its turn is sent as it is
now. A newer ``ful`` (an options update) or the end of the subscription ends the stream.

Options
=======

``sty`` only distinguishes a target scope (``tar``, with ``sta:{id, r}``) from the others.
For every other scope the shape decides: with a ``sha`` the area is that shape (its kind
comes from its keys, as in ``lis``), without one the whole realm; ``rec``, ``cir`` and
``pol`` require a ``sha``. So an ``upd`` that sends ``sty:"rea"`` but no ``sha`` keeps the
shape, as Hivekit clients expect; ``sha:null`` removes it. An update merges key by key into
the options in force, and a present ``atr`` (``[]`` too) replaces the filters.

Index
=====

A change must cost work in proportion to the subscriptions it can touch, not to all of
them. Per realm, a subscription sits in one of three places:

* the grid cells (`cells_for_bounds`) its area's bounding box touches;
* the realm-wide list, for whole-realm scopes and areas too big for the grid;
* nowhere, for a ``tar`` subscription whose target does not exist.

A change to an object at cell *c* (that was at cell *c'*) looks at the realm-wide list and
at the subscriptions in *c* and *c'*: every subscription that holds the object is among
them, because it held it at *c'*. ``tar`` subscriptions are also listed by target id and
re-placed whenever their target moves. A realm without subscriptions costs one dict lookup
per change.

Per realm with subscriptions, the index also keeps its objects by grid cell, so that
re-evaluating a small area (``exe``, an options update, a moving target) reads the objects
near it, not the whole realm. It is built when a realm gets its first subscription and
dropped with its last.

`SubscriptionIndex.checks` counts subscription-against-object evaluations, so tests can
assert on the work a change costs rather than on time.

Realm subscriptions
===================

The realm list (``rea:"sys"``, ``dat.typ:"sys"``) gets one ``dta`` push per realm
created, updated or deleted, for realms its session has any right in; a realm's data
subscription (``dat.typ:"rea"``) gets one ``ful`` push with the realm after each update.
Neither pushes anything at subscribe time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hivectl.core.filters import AttributeFilter, all_match, parse_filters
from hivectl.core.geo import Bounds, Cell, Circle, Shape, cell_of, cells_for_bounds, parse_shape
from hivectl.core.wire import (
    Location,
    Message,
    object_push,
    realm_data_push,
    realm_list_push,
)
from server.model.records import ObjectRecord, RealmRecord
from server.model.session import Session

CELL_DEG = 0.01
"""Grid cell size in degrees (about 1.1 km of latitude)."""
MAX_CELLS = 256
"""Areas touching more cells than this go to the realm-wide list (about 17 km square)."""

FULL_CHUNK = 500
"""Objects per push of an initial state (see "Initial state of any size")."""

SCOPES = ("rea", "rec", "cir", "pol", "tar")
_SHAPE_SCOPES = ("rec", "cir", "pol")

Push = tuple[Session, Message]
StatusOf = Callable[[str, str], str]
"""(realm id, object id) -> ``con`` or ``dis``."""

_NO_PUSHES: Sequence[Push] = ()


class SubscriptionError(ValueError):
    """Options that cannot be used; the message is the error text for the client."""


class Area(Protocol):
    def contains(self, lon: float, lat: float) -> bool: ...

    def bounds(self) -> Bounds: ...


class _Everywhere:
    """The area of a whole-realm subscription."""

    def contains(self, lon: float, lat: float) -> bool:
        return True

    def bounds(self) -> Bounds:
        return (-180.0, -90.0, 180.0, 90.0)


EVERYWHERE = _Everywhere()


# -- options ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    r: float


@dataclass(frozen=True, slots=True)
class ObjectOptions:
    """Parsed options of an object subscription; ``raw`` is what the next update merges into."""

    shape: Shape | None
    target: Target | None
    filters: tuple[AttributeFilter, ...]
    execute: bool
    raw: dict[str, Any]


def parse_options(patch: Mapping[str, Any], current: ObjectOptions | None = None) -> ObjectOptions:
    """The options of a ``sub`` ``dat`` (merged into `current` for an update).

    Raises `ValueError` (`SubscriptionError`, `ShapeError`, `FilterError`) with the text
    for the client.
    """
    raw = {**current.raw, **patch} if current is not None else dict(patch)
    scope = raw.get("sty", "rea")
    if scope not in SCOPES:
        raise SubscriptionError(f"sty must be one of {', '.join(SCOPES)}")
    shape = parse_shape(raw["sha"]) if raw.get("sha") is not None else None
    if scope in _SHAPE_SCOPES and shape is None:
        raise SubscriptionError(f"sha is required for sty {scope}")
    execute = raw.get("exe", False)
    if not isinstance(execute, bool):
        raise SubscriptionError("exe must be true or false")
    return ObjectOptions(
        shape=shape,
        target=_parse_target(raw.get("sta")) if scope == "tar" else None,
        filters=parse_filters(raw["atr"]) if raw.get("atr") is not None else (),
        execute=execute,
        raw=raw,
    )


def _parse_target(value: object) -> Target:
    if not isinstance(value, Mapping):
        raise SubscriptionError("sta must be an object {id, r} for sty tar")
    target_id, radius = value.get("id"), value.get("r")
    if not isinstance(target_id, str) or not target_id:
        raise SubscriptionError("sta.id must be a non-empty object id")
    if (
        isinstance(radius, bool)
        or not isinstance(radius, int | float)
        or not math.isfinite(radius)
        or radius < 0
    ):
        raise SubscriptionError("sta.r must be a number of metres >= 0")
    return Target(target_id, float(radius))


# -- subscriptions ----------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class ObjectSubscription:
    session: Session
    id: str
    realm: str
    options: ObjectOptions
    area: Area | None = None
    """Where matching objects are; None: nowhere (a target that does not exist)."""
    cells: tuple[Cell, ...] = ()
    wide: bool = False
    """Listed realm-wide (whole realm, or an area too big for the grid) instead of by cell."""
    held: dict[str, None] = field(default_factory=dict)
    live: bool = True
    fulls: int = 0
    """``ful`` streams started: only the newest one goes on."""


@dataclass(eq=False, slots=True)
class RealmSubscription:
    session: Session
    id: str
    realm: str | None
    """The realm whose data is watched; None for the realm list."""


Subscription = ObjectSubscription | RealmSubscription

_NO_SUBS: Mapping[ObjectSubscription, None] = {}


@dataclass(eq=False, slots=True)
class _RealmIndex:
    realm: RealmRecord
    subscriptions: dict[ObjectSubscription, None] = field(default_factory=dict)
    wide: dict[ObjectSubscription, None] = field(default_factory=dict)
    cells: dict[Cell, dict[ObjectSubscription, None]] = field(default_factory=dict)
    targets: dict[str, dict[ObjectSubscription, None]] = field(default_factory=dict)
    objects: dict[Cell, dict[str, ObjectRecord]] = field(default_factory=dict)
    """The realm's objects by grid cell."""


class SubscriptionIndex:
    """Every object and realm subscription of one server; see the module docstring."""

    def __init__(
        self, status: StatusOf, *, cell_deg: float = CELL_DEG, max_cells: int = MAX_CELLS
    ) -> None:
        self._status = status
        self.cell_deg = cell_deg
        self.max_cells = max_cells
        self._realms: dict[str, _RealmIndex] = {}
        self._realm_list: dict[RealmSubscription, None] = {}
        self._realm_data: dict[str, dict[RealmSubscription, None]] = {}
        self.checks = 0
        """Subscription-against-object evaluations so far."""

    # -- subscribing ---------------------------------------------------------------------

    def subscribe(
        self, session: Session, sub_id: str, realm: RealmRecord, options: ObjectOptions
    ) -> ObjectSubscription:
        """Start an object subscription; it holds the current matching set at once."""
        index = self._realms.get(realm.id) or self._index_realm(realm)
        sub = ObjectSubscription(session, sub_id, realm.id, options)
        index.subscriptions[sub] = None
        self._add_target(index, sub)
        self._settle(index, sub)
        session.subscriptions[sub_id] = sub
        return sub

    def update(self, sub: ObjectSubscription, options: ObjectOptions) -> None:
        """Replace the options (already merged by `parse_options`) and re-evaluate."""
        index = self._realms[sub.realm]
        self._remove_target(index, sub)
        sub.options = options
        self._add_target(index, sub)
        self._settle(index, sub)

    def full(self, sub: ObjectSubscription) -> Iterator[Message]:
        """The held set as a stream of pushes (see "Initial state of any size"); it ends any
        earlier one of `sub`, and ends itself with the subscription."""
        sub.fulls += 1
        return self._full_stream(sub, sub.fulls)

    def _full_stream(self, sub: ObjectSubscription, number: int) -> Iterator[Message]:
        if not sub.live:
            return
        objects = self._realms[sub.realm].realm.objects
        ids = list(sub.held)
        kind = "ful"
        for start in range(0, len(ids) or 1, FULL_CHUNK):
            if not sub.live or sub.fulls != number:
                return
            held = sub.held
            created = {
                oid: self._render(sub.realm, objects[oid])
                for oid in ids[start : start + FULL_CHUNK]
                if oid in held
            }
            if created or kind == "ful":
                yield object_push(sub.id, kind, created, {}, {})
            kind = "dta"

    def watch_realms(self, session: Session, sub_id: str) -> RealmSubscription:
        sub = RealmSubscription(session, sub_id, None)
        self._realm_list[sub] = None
        session.subscriptions[sub_id] = sub
        return sub

    def watch_realm(self, session: Session, sub_id: str, realm_id: str) -> RealmSubscription:
        sub = RealmSubscription(session, sub_id, realm_id)
        self._realm_data.setdefault(realm_id, {})[sub] = None
        session.subscriptions[sub_id] = sub
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        del sub.session.subscriptions[sub.id]
        if isinstance(sub, RealmSubscription):
            self._unwatch(sub)
            return
        sub.live = False
        index = self._realms[sub.realm]
        self._unplace(index, sub)
        self._remove_target(index, sub)
        del index.subscriptions[sub]
        if not index.subscriptions:
            del self._realms[sub.realm]

    def drop_session(self, session: Session) -> None:
        for sub in list(session.subscriptions.values()):
            self.unsubscribe(sub)

    # -- object changes ------------------------------------------------------------------

    def object_written(
        self, realm_id: str, record: ObjectRecord, previous: Location | None
    ) -> Sequence[Push]:
        """An object was created (`previous` None) or updated from location `previous`."""
        index = self._realms.get(realm_id)
        if index is None:
            return _NO_PUSHES
        loc = record.loc
        new_cell = self._cell(loc)
        old_cell = None if previous is None else self._cell(previous)
        if old_cell != new_cell:
            if old_cell is not None:
                del index.objects[old_cell][record.id]
                if not index.objects[old_cell]:
                    del index.objects[old_cell]
            index.objects.setdefault(new_cell, {})[record.id] = record
        moved = previous is None or (previous.lon, previous.lat) != (loc.lon, loc.lat)
        pushes: list[Push] = []
        retargeted = self._retarget(index, record.id, pushes) if moved else _NO_SUBS
        candidates = self._candidates(index, old_cell, new_cell)
        self._fan_out(record, (sub for sub in candidates if sub not in retargeted), pushes)
        return pushes

    def status_changed(self, realm_id: str, object_id: str) -> Sequence[Push]:
        """An object's ``cst`` changed."""
        index = self._realms.get(realm_id)
        record = index.realm.objects.get(object_id) if index is not None else None
        if index is None or record is None:
            return _NO_PUSHES
        pushes: list[Push] = []
        cell = self._cell(record.loc)
        self._fan_out(record, self._candidates(index, cell, cell), pushes)
        return pushes

    def object_deleted(self, realm_id: str, record: ObjectRecord) -> Sequence[Push]:
        """An object was deleted (it is no longer among its realm's objects)."""
        index = self._realms.get(realm_id)
        if index is None:
            return _NO_PUSHES
        cell = self._cell(record.loc)
        bucket = index.objects[cell]
        del bucket[record.id]
        if not bucket:
            del index.objects[cell]
        pushes: list[Push] = []
        retargeted = self._retarget(index, record.id, pushes)
        for sub in self._candidates(index, cell, cell):
            self.checks += 1
            if sub not in retargeted and record.id in sub.held:
                del sub.held[record.id]
                pushes.append((sub.session, object_push(sub.id, "dta", {}, {}, {record.id: {}})))
        return pushes

    # -- realm changes -------------------------------------------------------------------

    def realm_created(self, realm_id: str) -> list[Push]:
        return self._realm_list_pushes(realm_id, "cre")

    def realm_updated(self, realm: RealmRecord) -> list[Push]:
        pushes = self._realm_list_pushes(realm.id, "upd")
        body = realm.to_wire()
        for sub in self._realm_data.get(realm.id, ()):
            pushes.append((sub.session, realm_data_push(sub.id, body)))
        return pushes

    def realm_deleted(self, realm_id: str) -> list[Push]:
        """Ends the realm's subscriptions (without pushes to them) and tells realm lists."""
        index = self._realms.get(realm_id)
        for sub in list(index.subscriptions if index is not None else ()):
            self.unsubscribe(sub)
        for watcher in list(self._realm_data.get(realm_id, ())):
            self.unsubscribe(watcher)
        return self._realm_list_pushes(realm_id, "del")

    def _realm_list_pushes(self, realm_id: str, act: str) -> list[Push]:
        return [
            (sub.session, realm_list_push(sub.id, realm_id, act))
            for sub in self._realm_list
            if sub.session.permissions.has_any(realm_id)
        ]

    def _unwatch(self, sub: RealmSubscription) -> None:
        if sub.realm is None:
            del self._realm_list[sub]
            return
        watchers = self._realm_data[sub.realm]
        del watchers[sub]
        if not watchers:
            del self._realm_data[sub.realm]

    # -- matching ------------------------------------------------------------------------

    def _fan_out(
        self, record: ObjectRecord, subs: Iterable[ObjectSubscription], pushes: list[Push]
    ) -> None:
        """One change to `record` against each of `subs`: the delta table of the docstring."""
        wire: dict[str, Any] | None = None
        for sub in subs:
            held = record.id in sub.held
            if self._matches(sub, record):
                sub.held[record.id] = None
                if wire is None:
                    wire = self._render(sub.realm, record)
                entry = {record.id: wire}
                created, updated = ({}, entry) if held else (entry, {})
                pushes.append((sub.session, object_push(sub.id, "dta", created, updated, {})))
            elif held:
                del sub.held[record.id]
                pushes.append((sub.session, object_push(sub.id, "dta", {}, {}, {record.id: {}})))

    def _matches(self, sub: ObjectSubscription, record: ObjectRecord) -> bool:
        self.checks += 1
        area = sub.area
        if area is None or not area.contains(record.loc.lon, record.loc.lat):
            return False
        filters = sub.options.filters
        if filters and not all_match(
            filters, record.id, record.lab, self._status(sub.realm, record.id), record.dat
        ):
            return False
        return sub.session.permissions.allows("R", sub.realm, record.id)

    def _render(self, realm_id: str, record: ObjectRecord) -> dict[str, Any]:
        return record.to_wire(self._status(realm_id, record.id))

    def _retarget(
        self, index: _RealmIndex, object_id: str, pushes: list[Push]
    ) -> Mapping[ObjectSubscription, None]:
        """Re-evaluate the ``tar`` subscriptions following `object_id`, which moved."""
        followers = index.targets.get(object_id)
        if followers is None:
            return _NO_SUBS
        for sub in followers:
            before = self._settle(index, sub)
            after = sub.held
            objects = index.realm.objects
            created = {
                oid: self._render(sub.realm, objects[oid]) for oid in after if oid not in before
            }
            updated = (
                {object_id: self._render(sub.realm, objects[object_id])}
                if object_id in before and object_id in after
                else {}
            )
            deleted: dict[str, Any] = {oid: {} for oid in before if oid not in after}
            if created or updated or deleted:
                pushes.append((sub.session, object_push(sub.id, "dta", created, updated, deleted)))
        return followers

    # -- placement -----------------------------------------------------------------------

    def _index_realm(self, realm: RealmRecord) -> _RealmIndex:
        index = self._realms[realm.id] = _RealmIndex(realm)
        for record in realm.objects.values():
            index.objects.setdefault(self._cell(record.loc), {})[record.id] = record
        return index

    def _cell(self, loc: Location) -> Cell:
        return cell_of(loc.lon, loc.lat, self.cell_deg)

    def _settle(self, index: _RealmIndex, sub: ObjectSubscription) -> dict[str, None]:
        """Recompute the area, placement and held set; returns the held set before."""
        self._unplace(index, sub)
        sub.area = self._area(index, sub.options)
        self._place(index, sub)
        before, sub.held = sub.held, self._matching(index, sub)
        return before

    def _area(self, index: _RealmIndex, options: ObjectOptions) -> Area | None:
        target = options.target
        if target is None:
            return options.shape or EVERYWHERE
        record = index.realm.objects.get(target.id)
        if record is None:
            return None
        return Circle(record.loc.lon, record.loc.lat, target.r)

    def _matching(self, index: _RealmIndex, sub: ObjectSubscription) -> dict[str, None]:
        if sub.wide:
            records: Iterator[ObjectRecord] = iter(index.realm.objects.values())
        else:
            records = (
                record for cell in sub.cells for record in index.objects.get(cell, {}).values()
            )
        return {record.id: None for record in records if self._matches(sub, record)}

    def _place(self, index: _RealmIndex, sub: ObjectSubscription) -> None:
        if sub.area is None:
            return
        cells = cells_for_bounds(sub.area.bounds(), self.cell_deg, self.max_cells)
        if cells is None:
            sub.wide = True
            index.wide[sub] = None
            return
        sub.cells = tuple(cells)
        for cell in sub.cells:
            index.cells.setdefault(cell, {})[sub] = None

    def _unplace(self, index: _RealmIndex, sub: ObjectSubscription) -> None:
        if sub.wide:
            del index.wide[sub]
            sub.wide = False
        for cell in sub.cells:
            bucket = index.cells[cell]
            del bucket[sub]
            if not bucket:
                del index.cells[cell]
        sub.cells = ()

    def _add_target(self, index: _RealmIndex, sub: ObjectSubscription) -> None:
        if sub.options.target is not None:
            index.targets.setdefault(sub.options.target.id, {})[sub] = None

    def _remove_target(self, index: _RealmIndex, sub: ObjectSubscription) -> None:
        target = sub.options.target
        if target is None:
            return
        followers = index.targets[target.id]
        del followers[sub]
        if not followers:
            del index.targets[target.id]

    def _candidates(
        self, index: _RealmIndex, old_cell: Cell | None, new_cell: Cell
    ) -> Iterator[ObjectSubscription]:
        """Every subscription that may hold the object or may start to: see "Index"."""
        yield from index.wide
        here = index.cells.get(new_cell, _NO_SUBS)
        yield from here
        if old_cell is not None and old_cell != new_cell:
            for sub in index.cells.get(old_cell, _NO_SUBS):
                if sub not in here:
                    yield sub
