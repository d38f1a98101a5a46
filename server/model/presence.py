"""The presence engine: a pure, deterministic state machine over an ordered event log.

Every change that can affect presence reaches the engine as an event (design.md §3). The
engine applies events one at a time, in log order, and returns the transitions each one
caused. It owns no socket, no task and no clock: time only enters on the events, so every
node of a cluster that applies the same log computes the same transitions.

The invariant
=============

After any sequence of events, an object is *connected* iff

* some live provider has a ``dpv`` pair (realm pattern, id pattern) matching the object's
  realm and id (one matcher for both: `hivectl.core.patterns`), **or**
* a grace period for it is still running.

`apply` returns exactly the changes of that predicate, one `StatusChanged` per change and
never one for a deletion. Within one event the transitions come in a fixed order: realms in
creation order, objects in creation order within their realm.

Rules
=====

Providers are connections; ``ProviderUp`` for a connection that is already live is a token
refresh: its patterns are replaced atomically, so only the *difference* moves. Objects that
the new patterns still cover see nothing; objects nobody covers any more leave with reason
``reauth``; objects newly covered come up.

When the last provider of a connected object leaves at time *t*:

* ``grace == 0``: it goes ``dis`` at once, with the leaving provider's reason;
* ``grace > 0``: it stays connected until *t + grace*. A provider covering it again before
  then cancels the grace silently (no transition at all). Otherwise the first ``Tick`` whose
  ``at`` is at or past the end turns it ``dis``, with the reason of the departure.

Only ``Tick`` ends a grace period. Other events carry a time too, but it only stamps the
ledger: a late Tick must not be overtaken by, say, a ``ProviderUp`` whose ``at`` happens to
be past the end, or nodes that see Ticks at different places in their input would disagree
(design.md §3: time enters the log, a local clock decides nothing). The ``dis`` of an
expired grace is stamped with the Tick's ``at``: the object was connected, by definition,
until that Tick was applied.

======================  ==========================================  ==========================
event                   state change                                transitions
======================  ==========================================  ==========================
ProviderUp (new conn)   provider becomes live, covers every         ``con`` "provider" for each
                        existing object its patterns match          object not connected
                                                                    before (grace: cancelled,
                                                                    silently)
ProviderUp (live conn)  patterns replaced; sub, jti, node updated   ``dis`` "reauth" for dropped
                                                                    objects (subject to grace),
                                                                    ``con`` for newly covered
ProviderDown            provider gone (unknown conn: no-op)         ``dis`` with its reason for
                                                                    objects it covered alone
                                                                    (subject to grace)
NodeLost                every provider of the node goes down        as ProviderDown, reason
                                                                    "node_lost"
ObjectCreated           object exists (existing: no-op; unknown     ``con`` "provider" if a
                        realm: created implicitly)                  live provider covers it
ObjectDeleted           object, its ledger and grace are gone       none
RealmCreated            realm exists (existing: no-op)              none
RealmDeleted            realm and all its objects are gone          none
Tick                    graces ending at or before ``at`` expire    ``dis`` with the departure
                                                                    reason, per expired grace
======================  ==========================================  ==========================

``ObjectCreated`` in an unknown realm creates the realm instead of failing: the engine
follows a log that has already been validated (the realm state decides what may be
created), and refusing here would only make two layers disagree about what exists.

Ledger (per object, kept while the object exists; `load_ledger` seeds it at start-up):

* ``connected_since``: set on each ``con``; kept after a ``dis``, as the start of the last
  connected period (the status says whether it is still running);
* ``last_seen``: stamped by every event that changes the set of providers covering the
  object (the departure time once the last one leaves); `explain` reports ``now`` while a
  provider covers it;
* ``last_disconnected_at``, ``last_reason``: set on each ``dis``.

Indexes
=======

The cost of an event is proportional to the objects it moves, never to the whole state:

* per realm, objects by id in a list sorted by id (`bisect`): an exact id pattern is a dict
  lookup, ``prefix*`` the range of its prefix, ``*`` the realm's whole list, any other
  pattern only the range of its literal prefix, each candidate checked;
* providers by realm pattern, each holding a `PatternIndex` of id patterns, so a new object
  finds its providers without scanning them. A realm caches the indexes of the realm
  patterns that match it; the cache is rebuilt when a new realm pattern appears;
* per covered object, the set of providers covering it; per provider, the set of objects
  it covers (a provider leaving walks only its own objects).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from heapq import heappop, heappush
from itertools import count
from operator import itemgetter
from typing import Literal, TypeAlias, assert_never

from hivectl.core.patterns import IdPattern, PatternIndex, PatternKind, compile_pattern

Status = Literal["con", "dis"]


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderUp:
    """A connection became a data provider, or refreshed its token (same ``conn``)."""

    conn: str
    node: str
    sub: str | None
    jti: str | None
    patterns: tuple[tuple[str, str], ...]  # (realm pattern, id pattern) pairs from ``dpv``
    at: float


@dataclass(frozen=True, slots=True)
class ProviderDown:
    """A provider's connection is gone: ``closed``, ``timeout``, ``expired``, ``shutdown``..."""

    conn: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class NodeLost:
    """A cluster node's lease expired: all its providers are gone (reason ``node_lost``)."""

    node: str
    at: float


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    realm: str
    id: str
    at: float


@dataclass(frozen=True, slots=True)
class ObjectDeleted:
    realm: str
    id: str
    at: float


@dataclass(frozen=True, slots=True)
class RealmCreated:
    realm: str
    at: float


@dataclass(frozen=True, slots=True)
class RealmDeleted:
    realm: str
    at: float


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passing: the only event that ends grace periods (those ending at or before ``at``)."""

    at: float


Event: TypeAlias = (
    ProviderUp
    | ProviderDown
    | NodeLost
    | ObjectCreated
    | ObjectDeleted
    | RealmCreated
    | RealmDeleted
    | Tick
)


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """One transition. ``reason`` is "provider" for ``con``; for ``dis`` the departure's reason."""

    realm: str
    id: str
    status: Status
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider as `explain` shows it. ``since``: when the connection first came up."""

    conn: str
    sub: str | None
    jti: str | None
    node: str
    since: float


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    connected_since: float | None
    last_seen: float | None
    last_disconnected_at: float | None
    last_reason: str | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an object has its status: providers ordered by ``since``, then ``conn``."""

    status: Status
    providers: tuple[ProviderInfo, ...]
    ledger: LedgerEntry
    grace_until: float | None


# -- internal state ---------------------------------------------------------------------


class _Realm:
    __slots__ = ("by_id", "connected", "indexes", "indexes_generation", "name", "objects", "rank")

    def __init__(self, name: str, rank: int) -> None:
        self.name = name
        self.rank = rank
        self.objects: dict[str, _Object] = {}  # in creation order
        self.by_id: list[_Object] = []  # sorted by id, for ranges of prefixes
        self.connected = 0
        # Provider indexes of the realm patterns matching this realm, valid while
        # `indexes_generation` equals the engine's realm pattern generation.
        self.indexes: list[PatternIndex[_Provider]] = []
        self.indexes_generation = -1


_RANK_BITS = 48
"""An object's rank is its realm's rank, then its own, in one int (a tuple cost 56 bytes
more per object); 2**48 creations last centuries at 10,000 per second."""


class _Object:
    __slots__ = (
        "connected_since",
        "grace_reason",
        "grace_until",
        "id",
        "last_disconnected_at",
        "last_reason",
        "last_seen",
        "providers",
        "rank",
        "realm",
    )

    def __init__(self, realm: _Realm, object_id: str, rank: int) -> None:
        self.realm = realm
        self.id = object_id
        self.rank = realm.rank << _RANK_BITS | rank  # the order transitions are reported in
        # A dict, not a set: an empty one is 64 bytes instead of 216, and most objects
        # have no provider or one (this is the largest per-object cost of the engine).
        self.providers: dict[_Provider, None] = {}
        self.grace_until: float | None = None
        self.grace_reason = ""
        self.connected_since: float | None = None
        self.last_seen: float | None = None
        self.last_disconnected_at: float | None = None
        self.last_reason: str | None = None


class _Provider:
    __slots__ = ("conn", "covered", "jti", "node", "patterns", "since", "sub")

    def __init__(
        self, event: ProviderUp, patterns: tuple[tuple[IdPattern, IdPattern], ...]
    ) -> None:
        self.conn = event.conn
        self.node = event.node
        self.sub = event.sub
        self.jti = event.jti
        self.since = event.at
        self.patterns = patterns
        self.covered: set[_Object] = set()


# A transition before it is reported: the object's rank first, so a C-level key sorts them.
_Change: TypeAlias = tuple[int, _Object, Status, str]
_by_rank = itemgetter(0)
_MAX_CHAR = chr(0x10FFFF)


def _object_id(obj: _Object) -> str:
    return obj.id


def _prefix_range(by_id: list[_Object], prefix: str) -> tuple[int, int]:
    """The slice of `by_id` (sorted by id) holding exactly the ids that start with `prefix`."""
    if not prefix:
        return 0, len(by_id)
    low = bisect_left(by_id, prefix, key=_object_id)
    # The smallest string above every string starting with `prefix`: bump its last
    # character that can still be bumped (none can: the range runs to the end).
    stem = prefix.rstrip(_MAX_CHAR)
    if not stem:
        return low, len(by_id)
    end = stem[:-1] + chr(ord(stem[-1]) + 1)
    return low, bisect_left(by_id, end, lo=low, key=_object_id)


def _matching(realm: _Realm, pattern: IdPattern) -> Iterable[_Object]:
    """The realm's objects whose id `pattern` matches, looking only where they can be."""
    kind = pattern.kind
    if kind is PatternKind.EXACT:
        obj = realm.objects.get(pattern.text)
        return () if obj is None else (obj,)
    if kind is PatternKind.ALL:
        return realm.objects.values()
    low, high = _prefix_range(realm.by_id, pattern.prefix)
    if kind is PatternKind.PREFIX:
        return realm.by_id[low:high]
    return [obj for obj in realm.by_id[low:high] if pattern.matches(obj.id)]


def _connected(obj: _Object) -> bool:
    return bool(obj.providers) or obj.grace_until is not None


def _ledger(obj: _Object, last_seen: float | None) -> LedgerEntry:
    return LedgerEntry(obj.connected_since, last_seen, obj.last_disconnected_at, obj.last_reason)


# -- the engine -------------------------------------------------------------------------


class PresenceEngine:
    """Applies presence events in log order and reports the transitions (see module doc)."""

    def __init__(self, grace: float = 0.0) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace}")
        self._grace = grace
        self._ranks = count()  # creation order of realms and objects
        self._realms: dict[str, _Realm] = {}  # in creation order
        self._providers: dict[str, _Provider] = {}
        self._nodes: dict[str, dict[str, None]] = {}  # node -> its conns, in order of arrival
        # Realm pattern text -> the id patterns of the providers using it.
        self._indexes: dict[str, PatternIndex[_Provider]] = {}
        # The same indexes, found from a realm name by its realm pattern.
        self._realm_patterns: PatternIndex[PatternIndex[_Provider]] = PatternIndex()
        self._realm_patterns_generation = 0
        # Running graces as (end, tie-breaker, object). Cancelled ones are left in place and
        # skipped when popped: an entry is live only while its end is the object's grace_until.
        self._graces: list[tuple[float, int, _Object]] = []
        self._grace_pushes = count()

    # -- applying events ----------------------------------------------------------------

    def apply(self, event: Event) -> list[StatusChanged]:
        """Apply one event; return its transitions, realms then objects in creation order."""
        match event:
            case ProviderUp():
                changes = self._provider_up(event)
            case ProviderDown():
                changes = []
                provider = self._providers.get(event.conn)
                if provider is not None:
                    self._drop(provider, event.at, event.reason, changes)
            case NodeLost():
                changes = []
                for conn in list(self._nodes.get(event.node, ())):
                    self._drop(self._providers[conn], event.at, "node_lost", changes)
            case ObjectCreated():
                changes = self._object_created(event)
            case ObjectDeleted():
                self._object_deleted(event)
                return []
            case RealmCreated():
                if event.realm not in self._realms:
                    self._create_realm(event.realm)
                return []
            case RealmDeleted():
                self._realm_deleted(event)
                return []
            case Tick():
                changes = self._tick(event.at)
            case _:
                assert_never(event)
        if len(changes) > 1:
            changes.sort(key=_by_rank)
        at = event.at
        return [
            StatusChanged(obj.realm.name, obj.id, status, why, at)
            for _, obj, status, why in changes
        ]

    def _provider_up(self, event: ProviderUp) -> list[_Change]:
        # Duplicate pairs would be indexed once but unindexed twice: drop them here.
        patterns = tuple(
            dict.fromkeys((compile_pattern(r), compile_pattern(i)) for r, i in event.patterns)
        )
        changes: list[_Change] = []
        provider = self._providers.get(event.conn)
        if provider is None:
            provider = self._providers[event.conn] = _Provider(event, patterns)
            self._nodes.setdefault(event.node, {})[event.conn] = None
            self._index(provider)
            provider.covered = covered = set(self._coverage(patterns))
            for obj in covered:
                self._attach(obj, provider, event.at, changes)
            return changes
        # A token refresh on a live connection.
        if provider.node != event.node:
            self._leave_node(provider)
            self._nodes.setdefault(event.node, {})[event.conn] = None
            provider.node = event.node
        provider.sub = event.sub
        provider.jti = event.jti
        if patterns == provider.patterns:
            return changes
        self._unindex(provider)
        provider.patterns = patterns
        self._index(provider)
        old = provider.covered
        provider.covered = new = set(self._coverage(patterns))
        for obj in old - new:
            self._detach(obj, provider, event.at, "reauth", changes)
        for obj in new - old:
            self._attach(obj, provider, event.at, changes)
        return changes

    def _drop(self, provider: _Provider, at: float, reason: str, changes: list[_Change]) -> None:
        del self._providers[provider.conn]
        self._leave_node(provider)
        self._unindex(provider)
        for obj in provider.covered:
            self._detach(obj, provider, at, reason, changes)

    def _object_created(self, event: ObjectCreated) -> list[_Change]:
        realm = self._realms.get(event.realm) or self._create_realm(event.realm)
        if event.id in realm.objects:
            return []
        obj = realm.objects[event.id] = _Object(realm, event.id, next(self._ranks))
        insort(realm.by_id, obj, key=_object_id)
        for index in self._indexes_for(realm):
            for _, provider in index.match(event.id):
                obj.providers[provider] = None
                provider.covered.add(obj)
        if not obj.providers:
            return []
        obj.last_seen = obj.connected_since = event.at
        realm.connected += 1
        return [(obj.rank, obj, "con", "provider")]

    def _object_deleted(self, event: ObjectDeleted) -> None:
        realm = self._realms.get(event.realm)
        if realm is None:
            return
        obj = realm.objects.pop(event.id, None)
        if obj is None:
            return
        del realm.by_id[bisect_left(realm.by_id, event.id, key=_object_id)]
        if _connected(obj):
            realm.connected -= 1
        self._forget(obj)

    def _realm_deleted(self, event: RealmDeleted) -> None:
        realm = self._realms.pop(event.realm, None)
        if realm is not None:
            for obj in realm.objects.values():
                self._forget(obj)

    def _tick(self, at: float) -> list[_Change]:
        changes: list[_Change] = []
        graces = self._graces
        while graces and graces[0][0] <= at:
            end, _, obj = heappop(graces)
            if obj.grace_until == end:
                obj.grace_until = None
                self._disconnect(obj, at, obj.grace_reason, changes)
        return changes

    # -- coverage -----------------------------------------------------------------------

    def _attach(self, obj: _Object, provider: _Provider, at: float, changes: list[_Change]) -> None:
        """`provider` now covers `obj` (the caller keeps `provider.covered`)."""
        if not obj.providers:
            if obj.grace_until is not None:
                obj.grace_until = None  # back within the grace period: nothing to publish
            else:
                obj.connected_since = at
                obj.realm.connected += 1
                changes.append((obj.rank, obj, "con", "provider"))
        obj.providers[provider] = None
        obj.last_seen = at

    def _detach(
        self, obj: _Object, provider: _Provider, at: float, reason: str, changes: list[_Change]
    ) -> None:
        """`provider` no longer covers `obj` (the caller keeps `provider.covered`)."""
        providers = obj.providers
        providers.pop(provider, None)
        obj.last_seen = at
        if providers:
            return
        if self._grace:
            end = obj.grace_until = at + self._grace
            obj.grace_reason = reason
            heappush(self._graces, (end, next(self._grace_pushes), obj))
        else:
            self._disconnect(obj, at, reason, changes)

    def _disconnect(self, obj: _Object, at: float, reason: str, changes: list[_Change]) -> None:
        obj.last_disconnected_at = at
        obj.last_reason = reason
        obj.realm.connected -= 1
        changes.append((obj.rank, obj, "dis", reason))

    def _forget(self, obj: _Object) -> None:
        """Unlink a deleted object from its providers; its pending grace entry goes stale."""
        for provider in obj.providers:
            provider.covered.discard(obj)
        obj.grace_until = None

    def _coverage(self, patterns: tuple[tuple[IdPattern, IdPattern], ...]) -> Iterator[_Object]:
        """Every existing object the patterns match (an object matched twice comes twice)."""
        for realm_pattern, id_pattern in patterns:
            if realm_pattern.kind is PatternKind.EXACT:
                realm = self._realms.get(realm_pattern.text)
                if realm is not None:
                    yield from _matching(realm, id_pattern)
            else:
                for realm in self._realms.values():
                    if realm_pattern.matches(realm.name):
                        yield from _matching(realm, id_pattern)

    # -- provider indexes ---------------------------------------------------------------

    def _index(self, provider: _Provider) -> None:
        for realm_pattern, id_pattern in provider.patterns:
            index = self._indexes.get(realm_pattern.text)
            if index is None:
                index = self._indexes[realm_pattern.text] = PatternIndex()
                self._realm_patterns.add(realm_pattern, index)
                self._realm_patterns_generation += 1
            index.add(id_pattern, provider)

    def _unindex(self, provider: _Provider) -> None:
        # An index emptied here may stay in realms' caches until the next generation; it
        # can only stay empty (a returning realm pattern gets a fresh index), so it is inert.
        for realm_pattern, id_pattern in provider.patterns:
            index = self._indexes[realm_pattern.text]
            index.remove(id_pattern, provider)
            if not index:
                del self._indexes[realm_pattern.text]
                self._realm_patterns.remove(realm_pattern, index)

    def _indexes_for(self, realm: _Realm) -> list[PatternIndex[_Provider]]:
        if realm.indexes_generation != self._realm_patterns_generation:
            realm.indexes = [index for _, index in self._realm_patterns.match(realm.name)]
            realm.indexes_generation = self._realm_patterns_generation
        return realm.indexes

    def _leave_node(self, provider: _Provider) -> None:
        conns = self._nodes[provider.node]
        del conns[provider.conn]
        if not conns:
            del self._nodes[provider.node]

    def _create_realm(self, name: str) -> _Realm:
        realm = self._realms[name] = _Realm(name, next(self._ranks))
        return realm

    # -- queries ------------------------------------------------------------------------

    def _object(self, realm: str, object_id: str) -> _Object | None:
        state = self._realms.get(realm)
        return None if state is None else state.objects.get(object_id)

    def is_connected(self, realm: str, object_id: str) -> bool:
        """False for unknown objects."""
        obj = self._object(realm, object_id)
        return obj is not None and _connected(obj)

    def status(self, realm: str, object_id: str) -> Status:
        return "con" if self.is_connected(realm, object_id) else "dis"

    def explain(self, realm: str, object_id: str, now: float) -> Explanation | None:
        """Who keeps the object connected and its ledger; None for an unknown object."""
        obj = self._object(realm, object_id)
        if obj is None:
            return None
        providers = sorted(obj.providers, key=lambda p: (p.since, p.conn))
        return Explanation(
            status="con" if _connected(obj) else "dis",
            providers=tuple(ProviderInfo(p.conn, p.sub, p.jti, p.node, p.since) for p in providers),
            ledger=_ledger(obj, now if providers else obj.last_seen),
            grace_until=obj.grace_until,
        )

    def next_deadline(self) -> float | None:
        """The earliest running grace end: when the I/O shell should append a Tick."""
        graces = self._graces
        while graces and graces[0][2].grace_until != graces[0][0]:
            heappop(graces)  # cancelled: drop it now so it cannot wake the shell for nothing
        return graces[0][0] if graces else None

    def load_ledger(self, realm: str, object_id: str, entry: LedgerEntry) -> None:
        """Seed an object's persisted ledger at start-up, before providers come back.

        Raises KeyError for an unknown object: the object must be created first.
        """
        obj = self._object(realm, object_id)
        if obj is None:
            raise KeyError((realm, object_id))
        obj.connected_since = entry.connected_since
        obj.last_seen = entry.last_seen
        obj.last_disconnected_at = entry.last_disconnected_at
        obj.last_reason = entry.last_reason

    def ledger(self, realm: str, object_id: str) -> LedgerEntry | None:
        """The stored ledger (``last_seen`` as last stamped, not ``now``); None if unknown."""
        obj = self._object(realm, object_id)
        return None if obj is None else _ledger(obj, obj.last_seen)

    def count(
        self, realm: str, pattern: str, readable: Callable[[str], bool] | None = None
    ) -> tuple[int, int]:
        """(connected, disconnected) over the realm's objects matching `pattern` and `readable`."""
        state = self._realms.get(realm)
        if state is None:
            return 0, 0
        id_pattern = compile_pattern(pattern)
        if readable is None and id_pattern.kind is PatternKind.ALL:
            return state.connected, len(state.objects) - state.connected
        connected = total = 0
        for obj in _matching(state, id_pattern):
            if readable is None or readable(obj.id):
                total += 1
                if obj.providers or obj.grace_until is not None:
                    connected += 1
        return connected, total - connected

    def connected_ids(self, realm: str) -> list[str]:
        """The realm's connected object ids, sorted."""
        state = self._realms.get(realm)
        return [] if state is None else [obj.id for obj in state.by_id if _connected(obj)]

    @property
    def providers(self) -> int:
        """Live providers."""
        return len(self._providers)

    @property
    def objects(self) -> int:
        return sum(len(realm.objects) for realm in self._realms.values())

    @property
    def connected_objects(self) -> int:
        return sum(realm.connected for realm in self._realms.values())

    def connected_per_realm(self) -> dict[str, int]:
        """Connected objects per existing realm (zeros included), realms in creation order."""
        return {name: realm.connected for name, realm in self._realms.items()}

    def covered(self, conn: str) -> int:
        """How many objects the live provider `conn` covers now (0 when not a provider)."""
        provider = self._providers.get(conn)
        return 0 if provider is None else len(provider.covered)

    def provider_nodes(self) -> list[str]:
        """Nodes with at least one live provider, sorted."""
        return sorted(self._nodes)

    def providers_of_node(self, node: str) -> list[str]:
        """The node's live provider conns, in order of arrival (to re-register them)."""
        return list(self._nodes.get(node, ()))
