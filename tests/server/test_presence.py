"""The presence engine: one test per rule, index structure, and a brute-force model check."""

from __future__ import annotations

import dataclasses
import re
from functools import cache

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hivectl.core.patterns import IdPattern
from server.model.presence import (
    Event,
    LedgerEntry,
    NodeLost,
    ObjectCreated,
    ObjectDeleted,
    PresenceEngine,
    ProviderDown,
    ProviderInfo,
    ProviderUp,
    RealmCreated,
    RealmDeleted,
    StatusChanged,
    Tick,
    _Object,
    _prefix_range,
    _Realm,
)


def up(conn: str, *patterns: str, at: float = 0.0, node: str = "n1", sub: str = "") -> ProviderUp:
    """A ProviderUp from ``realm:id`` pattern strings."""
    pairs = tuple((realm, oid) for realm, oid in (p.split(":", 1) for p in patterns))
    return ProviderUp(conn, node, sub or conn, f"jti-{conn}", pairs, at)


def engine_with(realm: str, *ids: str, grace: float = 0.0) -> PresenceEngine:
    engine = PresenceEngine(grace=grace)
    engine.apply(RealmCreated(realm, 0.0))
    for object_id in ids:
        assert engine.apply(ObjectCreated(realm, object_id, 0.0)) == []
    return engine


def con(realm: str, oid: str, at: float) -> StatusChanged:
    return StatusChanged(realm, oid, "con", "provider", at)


def dis(realm: str, oid: str, reason: str, at: float) -> StatusChanged:
    return StatusChanged(realm, oid, "dis", reason, at)


# -- providers --------------------------------------------------------------------------


def test_multi_device_publishes_only_first_arrival_and_last_departure() -> None:
    engine = engine_with("london", "riders/jo")
    assert engine.apply(up("phone", "london:riders/jo", at=1)) == [con("london", "riders/jo", 1)]
    assert engine.apply(up("watch", "london:riders/jo", at=2)) == []
    assert engine.apply(ProviderDown("phone", "closed", 3)) == []
    assert engine.is_connected("london", "riders/jo")
    assert engine.apply(ProviderDown("watch", "timeout", 4)) == [
        dis("london", "riders/jo", "timeout", 4)
    ]
    assert not engine.is_connected("london", "riders/jo")
    assert engine.providers == 0


def test_gateway_covers_a_thousand_objects_by_prefix() -> None:
    ids = [f"fleet/{n:04}" for n in range(1000)]
    engine = engine_with("r", *ids, "other/1", "fleetx")
    changes = engine.apply(up("gw", "r:fleet/*", at=5))
    assert changes == [con("r", oid, 5) for oid in ids]
    assert engine.connected_objects == 1000
    assert not engine.is_connected("r", "other/1")
    assert not engine.is_connected("r", "fleetx")
    down = engine.apply(ProviderDown("gw", "closed", 6))
    assert down == [dis("r", oid, "closed", 6) for oid in ids]
    assert engine.connected_objects == 0


def test_gateway_over_a_hundred_thousand_objects() -> None:
    engine = PresenceEngine()
    for n in range(100_000):
        engine.apply(ObjectCreated("r", f"car/{n}", 0))
    assert len(engine.apply(up("gw", "r:car/*", at=1))) == 100_000
    assert engine.apply(ObjectCreated("r", "car/new", 2)) == [con("r", "car/new", 2)]
    assert engine.count("r", "car/1*") == (11_111, 0)
    assert len(engine.apply(ProviderDown("gw", "closed", 3))) == 100_001


def test_unknown_provider_down_and_unknown_node_are_no_ops() -> None:
    engine = engine_with("r", "a")
    assert engine.apply(ProviderDown("nobody", "closed", 1)) == []
    assert engine.apply(NodeLost("nowhere", 1)) == []


def test_overlapping_patterns_of_one_provider_cover_an_object_once() -> None:
    engine = engine_with("r", "car/1")
    assert engine.apply(up("p", "r:car/*", "r:car/1", "*:*", "r:car/*", at=1)) == [
        con("r", "car/1", 1)
    ]
    assert engine.apply(ProviderDown("p", "closed", 2)) == [dis("r", "car/1", "closed", 2)]


def test_transitions_come_in_realm_then_object_creation_order() -> None:
    engine = PresenceEngine()
    for realm, oid in [("s", "b"), ("r", "z"), ("s", "a"), ("r", "a")]:
        engine.apply(ObjectCreated(realm, oid, 0))
    expected = [con("s", "b", 1), con("s", "a", 1), con("r", "z", 1), con("r", "a", 1)]
    assert engine.apply(up("p", "*:*", at=1)) == expected


# -- objects and realms -----------------------------------------------------------------


def test_object_created_under_a_live_provider_is_connected_at_once() -> None:
    engine = engine_with("r")
    assert engine.apply(up("p", "r:car/*", at=1)) == []
    assert engine.apply(ObjectCreated("r", "car/1", 2)) == [con("r", "car/1", 2)]
    assert engine.apply(ObjectCreated("r", "car/1", 3)) == []  # idempotent
    assert engine.apply(ObjectCreated("r", "bike/1", 3)) == []
    ledger = engine.ledger("r", "car/1")
    assert ledger == LedgerEntry(2, 2, None, None)


def test_realm_created_later_is_covered_by_a_star_realm_pattern() -> None:
    engine = PresenceEngine()
    engine.apply(up("p", "*:car/*", "lon*:bike", at=1))
    assert engine.apply(RealmCreated("london", 2)) == []
    assert engine.apply(ObjectCreated("london", "car/1", 3)) == [con("london", "car/1", 3)]
    assert engine.apply(ObjectCreated("london", "bike", 3)) == [con("london", "bike", 3)]
    assert engine.apply(ObjectCreated("paris", "bike", 3)) == []


def test_object_created_in_an_unknown_realm_creates_the_realm() -> None:
    engine = PresenceEngine()
    engine.apply(ObjectCreated("r", "a", 1))
    assert engine.connected_per_realm() == {"r": 0}
    assert engine.objects == 1


def test_deletions_publish_nothing() -> None:
    engine = engine_with("r", "a", "b")
    engine.apply(ObjectCreated("s", "a", 0))
    engine.apply(up("p", "*:*", at=1))
    assert engine.apply(ObjectDeleted("r", "a", 2)) == []
    assert engine.ledger("r", "a") is None
    assert engine.apply(RealmDeleted("s", 2)) == []
    assert engine.objects == 1
    assert engine.connected_objects == 1
    assert engine.apply(ProviderDown("p", "closed", 3)) == [dis("r", "b", "closed", 3)]
    assert engine.apply(ObjectDeleted("r", "missing", 4)) == []
    assert engine.apply(ObjectDeleted("nowhere", "a", 4)) == []
    assert engine.apply(RealmDeleted("nowhere", 4)) == []


def test_deleted_object_in_grace_never_publishes_and_recreation_starts_fresh() -> None:
    engine = engine_with("r", "a", grace=10)
    engine.apply(up("p", "r:a", at=1))
    engine.apply(ProviderDown("p", "closed", 2))
    assert engine.apply(ObjectDeleted("r", "a", 3)) == []
    assert engine.next_deadline() is None
    assert engine.apply(ObjectCreated("r", "a", 4)) == []
    assert engine.apply(Tick(100)) == []
    assert engine.ledger("r", "a") == LedgerEntry(None, None, None, None)


def test_recreated_realm_is_covered_again() -> None:
    engine = engine_with("r", "a")
    engine.apply(up("p", "r:*", at=1))
    engine.apply(RealmDeleted("r", 2))
    assert engine.connected_per_realm() == {}
    assert engine.apply(ObjectCreated("r", "a", 3)) == [con("r", "a", 3)]


# -- grace ------------------------------------------------------------------------------


def test_return_within_grace_publishes_nothing_at_all() -> None:
    engine = engine_with("r", "a", grace=5)
    assert engine.apply(up("p", "r:a", at=1)) == [con("r", "a", 1)]
    assert engine.apply(ProviderDown("p", "timeout", 2)) == []
    assert engine.is_connected("r", "a")
    assert engine.apply(Tick(6.9)) == []
    assert engine.apply(up("p2", "r:*", at=6.9)) == []
    assert engine.apply(Tick(100)) == []
    assert engine.is_connected("r", "a")
    assert engine.next_deadline() is None


def test_tick_past_grace_publishes_one_dis_with_the_departure_reason() -> None:
    engine = engine_with("r", "a", "b", grace=5)
    engine.apply(up("p", "r:a", at=1))
    engine.apply(up("q", "r:b", at=1))
    engine.apply(ProviderDown("p", "expired", 2))
    engine.apply(ProviderDown("q", "closed", 3))
    assert engine.next_deadline() == 7
    assert engine.apply(Tick(7)) == [dis("r", "a", "expired", 7)]
    assert engine.next_deadline() == 8
    assert engine.apply(Tick(20)) == [dis("r", "b", "closed", 20)]
    assert engine.apply(Tick(30)) == []
    assert engine.ledger("r", "b") == LedgerEntry(1, 3, 20, "closed")


def test_only_a_tick_ends_a_grace_period() -> None:
    engine = engine_with("r", "a", grace=5)
    engine.apply(up("p", "r:a", at=1))
    engine.apply(ProviderDown("p", "closed", 2))
    # Later events carry later times, but the grace ends only when a Tick says so.
    engine.apply(ObjectCreated("r", "b", 50))
    assert engine.is_connected("r", "a")
    assert engine.apply(up("p", "r:a", at=60)) == []


def test_grace_zero_disconnects_at_once_and_ticks_do_nothing() -> None:
    engine = engine_with("r", "a")
    engine.apply(up("p", "r:a", at=1))
    assert engine.apply(ProviderDown("p", "closed", 2)) == [dis("r", "a", "closed", 2)]
    assert engine.next_deadline() is None
    assert engine.apply(Tick(3)) == []


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace"):
        PresenceEngine(grace=-1)


def test_next_deadline_skips_cancelled_graces() -> None:
    engine = engine_with("r", "a", "b", grace=10)
    assert engine.next_deadline() is None
    engine.apply(up("p", "r:a", at=0))
    engine.apply(up("q", "r:b", at=0))
    engine.apply(ProviderDown("p", "closed", 1))
    engine.apply(ProviderDown("q", "closed", 2))
    assert engine.next_deadline() == 11
    engine.apply(up("p", "r:a", at=3))  # cancels a's grace
    assert engine.next_deadline() == 12


def test_a_cancelled_grace_cannot_end_a_later_one() -> None:
    # No next_deadline() in between: the cancelled entry is still in the heap at the Tick.
    engine = engine_with("r", "a", grace=3)
    engine.apply(up("p", "r:a", at=0))
    engine.apply(ProviderDown("p", "closed", 1))  # grace until 4
    engine.apply(up("p", "r:a", at=2))  # cancelled
    engine.apply(ProviderDown("p", "timeout", 3))  # grace until 6
    assert engine.apply(Tick(4)) == []
    assert engine.apply(Tick(6)) == [dis("r", "a", "timeout", 6)]


def test_leaving_and_returning_at_the_same_instant_publishes_once() -> None:
    engine = engine_with("r", "a", grace=5)
    engine.apply(up("p", "r:a", at=1))
    engine.apply(ProviderDown("p", "closed", 2))
    engine.apply(up("p", "r:a", at=2))
    engine.apply(ProviderDown("p", "timeout", 2))
    assert engine.apply(Tick(7)) == [dis("r", "a", "timeout", 7)]


# -- node loss and re-authentication ----------------------------------------------------


def test_node_lost_drops_every_provider_of_the_node() -> None:
    engine = engine_with("r", "a", "b", "c")
    engine.apply(up("p1", "r:a", "r:b", node="n1", at=1))
    engine.apply(up("p2", "r:b", node="n1", at=1))
    engine.apply(up("p3", "r:c", node="n2", at=1))
    assert engine.provider_nodes() == ["n1", "n2"]
    assert engine.providers_of_node("n1") == ["p1", "p2"]
    assert engine.apply(NodeLost("n1", 2)) == [
        dis("r", "a", "node_lost", 2),
        dis("r", "b", "node_lost", 2),
    ]
    assert engine.is_connected("r", "c")
    assert engine.provider_nodes() == ["n2"]
    assert engine.providers_of_node("n1") == []
    assert engine.providers == 1


def test_reauth_moves_only_the_difference() -> None:
    engine = engine_with("r", "car/1", "car/2", "bike/1", "bike/2")
    engine.apply(up("p", "r:car/*", "r:bike/1", at=1))
    assert engine.apply(up("p", "r:bike/*", at=2)) == [
        dis("r", "car/1", "reauth", 2),
        dis("r", "car/2", "reauth", 2),
        con("r", "bike/2", 2),
    ]
    # The same patterns again: a metadata refresh, nothing moves.
    assert engine.apply(up("p", "r:bike/*", at=3)) == []
    assert engine.providers == 1


def test_reauth_keeps_objects_another_provider_still_covers() -> None:
    engine = engine_with("r", "a", "b")
    engine.apply(up("p", "r:a", "r:b", at=1))
    engine.apply(up("q", "r:b", at=1))
    assert engine.apply(up("p", "r:a", at=2)) == []
    assert engine.apply(ProviderDown("q", "closed", 3)) == [dis("r", "b", "closed", 3)]


def test_reauth_drop_is_subject_to_grace() -> None:
    engine = engine_with("r", "a", grace=5)
    engine.apply(up("p", "r:a", at=1))
    assert engine.apply(up("p", "r:zzz", at=2)) == []
    assert engine.explain("r", "a", now=3) is not None
    assert engine.apply(Tick(7)) == [dis("r", "a", "reauth", 7)]


def test_reauth_updates_identity_and_node_but_not_since() -> None:
    engine = engine_with("r", "a")
    engine.apply(up("p", "r:a", node="n1", sub="old", at=1))
    engine.apply(ProviderUp("p", "n2", "new", "jti-2", (("r", "a"),), 5))
    assert engine.providers_of_node("n1") == []
    assert engine.providers_of_node("n2") == ["p"]
    explanation = engine.explain("r", "a", now=6)
    assert explanation is not None
    assert explanation.providers == (ProviderInfo("p", "new", "jti-2", "n2", 1),)


# -- queries ----------------------------------------------------------------------------


def test_explain_lists_providers_and_ledger() -> None:
    engine = engine_with("r", "a", grace=5)
    assert engine.explain("r", "missing", now=0) is None
    assert engine.explain("nowhere", "a", now=0) is None
    engine.apply(up("z", "r:*", at=2, node="n2"))
    engine.apply(up("b", "r:a", at=3))
    engine.apply(up("a", "r:a", at=3))
    explanation = engine.explain("r", "a", now=9)
    assert explanation is not None
    assert explanation.status == "con"
    assert [p.conn for p in explanation.providers] == ["z", "a", "b"]
    assert explanation.providers[0] == ProviderInfo("z", "z", "jti-z", "n2", 2)
    assert explanation.ledger == LedgerEntry(2, 9, None, None)
    assert explanation.grace_until is None

    for conn in ("z", "a", "b"):
        engine.apply(ProviderDown(conn, "closed", 10))
    explanation = engine.explain("r", "a", now=11)
    assert explanation is not None
    assert explanation.status == "con"
    assert explanation.providers == ()
    assert explanation.ledger == LedgerEntry(2, 10, None, None)
    assert explanation.grace_until == 15

    engine.apply(Tick(16))
    explanation = engine.explain("r", "a", now=17)
    assert explanation is not None
    assert explanation.status == "dis"
    assert explanation.ledger == LedgerEntry(2, 10, 16, "closed")
    assert explanation.grace_until is None


def test_status_and_is_connected_of_unknown_objects() -> None:
    engine = PresenceEngine()
    assert engine.status("r", "a") == "dis"
    assert not engine.is_connected("r", "a")
    assert engine.ledger("r", "a") is None


def test_load_ledger_seeds_an_existing_object() -> None:
    engine = engine_with("r", "a")
    seeded = LedgerEntry(1, 2, 2, "shutdown")
    engine.load_ledger("r", "a", seeded)
    assert engine.ledger("r", "a") == seeded
    engine.apply(up("p", "r:a", at=10))
    assert engine.ledger("r", "a") == LedgerEntry(10, 10, 2, "shutdown")
    with pytest.raises(KeyError):
        engine.load_ledger("r", "missing", seeded)


def test_count_by_pattern_and_readability() -> None:
    engine = engine_with("r", "car/1", "car/2", "car/3", "bike/1", "bike/2")
    engine.apply(up("p", "r:car/1", "r:car/2", "r:bike/1", at=1))
    assert engine.count("r", "*") == (3, 2)
    assert engine.count("r", "car/*") == (2, 1)
    assert engine.count("r", "*/1") == (2, 0)
    assert engine.count("r", "bike/2") == (0, 1)
    assert engine.count("r", "car/*", readable=lambda oid: oid != "car/1") == (1, 1)
    assert engine.count("r", "*", readable=lambda oid: oid.startswith("bike")) == (1, 1)
    assert engine.count("nowhere", "*") == (0, 0)


def test_stats_and_connected_ids() -> None:
    engine = engine_with("r", "b", "a", "c")
    engine.apply(RealmCreated("s", 0))
    engine.apply(up("p", "r:a", "r:b", at=1))
    assert engine.connected_ids("r") == ["a", "b"]
    assert engine.connected_ids("nowhere") == []
    assert engine.providers == 1
    assert engine.objects == 3
    assert engine.connected_objects == 2
    assert engine.connected_per_realm() == {"r": 2, "s": 0}


# -- index structure --------------------------------------------------------------------


def _sorted_objects(ids: list[str]) -> list[_Object]:
    realm = _Realm("r", 0)
    return [_Object(realm, oid, n) for n, oid in enumerate(sorted(ids))]


@pytest.mark.parametrize(
    ("prefix", "ids"),
    [
        ("car/", ["bike/1", "car/", "car/1", "car/10", "car0", "cat", "ca"]),
        ("", ["a", "b"]),
        ("z", ["a", "b"]),
        ("a\U0010ffff", ["a", "a\U0010ffff", "a\U0010ffffb", "b", "a\U0010fffe"]),
        ("\U0010ffff", ["a", "\U0010ffff", "\U0010ffff\U0010ffff"]),
    ],
)
def test_prefix_range_holds_exactly_the_ids_with_the_prefix(prefix: str, ids: list[str]) -> None:
    objects = _sorted_objects(ids)
    low, high = _prefix_range(objects, prefix)
    assert [o.id for o in objects[low:high]] == sorted(i for i in ids if i.startswith(prefix))


@pytest.fixture
def match_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every id checked one by one with `IdPattern.matches` (the thing indexes avoid)."""
    calls: list[str] = []
    original = IdPattern.matches

    def counting(self: IdPattern, value: str) -> bool:
        calls.append(value)
        return original(self, value)

    monkeypatch.setattr(IdPattern, "matches", counting)
    return calls


def test_other_pattern_checks_only_the_range_of_its_literal_prefix(match_calls: list[str]) -> None:
    engine = engine_with("r", *(f"car/{n}" for n in range(2000)), "zone/a/x", "zone/b/y", "zoo")
    assert engine.apply(up("p", "r:zone/*/x", at=1)) == [con("r", "zone/a/x", 1)]
    assert sorted(match_calls) == ["zone/a/x", "zone/b/y"]


def test_prefix_and_exact_patterns_check_no_id_one_by_one(match_calls: list[str]) -> None:
    engine = engine_with("r", *(f"car/{n}" for n in range(2000)))
    assert len(engine.apply(up("p", "r:car/1*", "r:car/7", at=1))) == 1112
    assert match_calls == []


def test_new_object_finds_its_providers_without_scanning_them(match_calls: list[str]) -> None:
    engine = engine_with("r")
    for n in range(1000):
        engine.apply(up(f"dev{n}", f"r:car/{n}", f"fleet{n % 7}:*", at=1))
    engine.apply(up("gw", "r:car/*", at=1))
    engine.apply(up("elsewhere", "other:*", at=1))
    assert engine.apply(ObjectCreated("r", "car/5", 2)) == [con("r", "car/5", 2)]
    explanation = engine.explain("r", "car/5", now=3)
    assert explanation is not None
    assert [p.conn for p in explanation.providers] == ["dev5", "gw"]
    assert match_calls == []


def test_realm_pattern_cache_sees_realm_patterns_added_later() -> None:
    engine = engine_with("london")
    engine.apply(ObjectCreated("london", "a", 0))  # fills the realm's cache
    engine.apply(up("p", "lon*:b", at=1))
    assert engine.apply(ObjectCreated("london", "b", 2)) == [con("london", "b", 2)]
    engine.apply(ProviderDown("p", "closed", 3))
    engine.apply(up("q", "lon*:c", at=4))  # the same realm pattern, back with a fresh index
    assert engine.apply(ObjectCreated("london", "c", 5)) == [con("london", "c", 5)]


# -- the invariant, against a brute-force model -----------------------------------------


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    """protocol.md §3, written independently of the engine's matcher."""
    return re.compile(".*".join(re.escape(piece) for piece in pattern.split("*")), re.DOTALL)


def _model_matches(pattern: str, value: str) -> bool:
    return _regex(pattern).fullmatch(value) is not None


class Model:
    """The invariant computed the slow way: every object checked against every pattern."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        # conn -> (node, patterns, since): since is the first ProviderUp of a live conn.
        self.providers: dict[str, tuple[str, tuple[tuple[str, str], ...], float]] = {}
        self.realms: dict[str, list[str]] = {}  # both in creation order
        self.graces: dict[tuple[str, str], tuple[float, str]] = {}

    def objects(self) -> list[tuple[str, str]]:
        return [(realm, oid) for realm, ids in self.realms.items() for oid in ids]

    def covering(self, realm: str, oid: str) -> list[str]:
        """The conns covering the object, ordered as `explain` lists them."""
        return [
            conn
            for since, conn, patterns in sorted(
                (since, conn, patterns) for conn, (_, patterns, since) in self.providers.items()
            )
            if any(_model_matches(rp, realm) and _model_matches(ip, oid) for rp, ip in patterns)
        ]

    def connected(self, key: tuple[str, str]) -> bool:
        return bool(self.covering(*key)) or key in self.graces

    def step(self, event: Event) -> list[StatusChanged]:
        before = {key: (self.connected(key), bool(self.covering(*key))) for key in self.objects()}
        reasons: dict[tuple[str, str], str] = {}
        reason = "reauth"
        match event:
            case ProviderUp():
                previous = self.providers.get(event.conn)
                since = event.at if previous is None else previous[2]
                self.providers[event.conn] = (event.node, event.patterns, since)
            case ProviderDown():
                self.providers.pop(event.conn, None)
                reason = event.reason
            case NodeLost():
                for conn, (node, _, _) in list(self.providers.items()):
                    if node == event.node:
                        del self.providers[conn]
                reason = "node_lost"
            case ObjectCreated():
                ids = self.realms.setdefault(event.realm, [])
                if event.id not in ids:
                    ids.append(event.id)
            case ObjectDeleted():
                if event.id in self.realms.get(event.realm, []):
                    self.realms[event.realm].remove(event.id)
                self.graces.pop((event.realm, event.id), None)
            case RealmCreated():
                self.realms.setdefault(event.realm, [])
            case RealmDeleted():
                for oid in self.realms.pop(event.realm, []):
                    self.graces.pop((event.realm, oid), None)
            case Tick():
                for key, (end, why) in list(self.graces.items()):
                    if end <= event.at:
                        del self.graces[key]
                        reasons[key] = why
        expected: list[StatusChanged] = []
        for key in self.objects():
            covered = bool(self.covering(*key))
            if key not in before:
                if covered:
                    expected.append(StatusChanged(*key, "con", "provider", event.at))
                continue
            was_connected, was_covered = before[key]
            if covered:
                self.graces.pop(key, None)
            elif was_covered and self.grace:
                self.graces[key] = (event.at + self.grace, reason)
            if self.connected(key) != was_connected:
                if was_connected:
                    why = reasons.get(key, reason)
                    expected.append(StatusChanged(*key, "dis", why, event.at))
                else:
                    expected.append(StatusChanged(*key, "con", "provider", event.at))
        return expected


# Small alphabets, weighted so that patterns match often: most generated events move
# something. Free text on top of the common shapes keeps the odd cases coming.
REALMS = st.sampled_from(["r", "r", "r", "s", "rs"])
REALM_PATTERNS = st.sampled_from(["r", "r", "*", "*", "r*", "*s", "s", "rs", "x"])
IDS = st.one_of(
    st.sampled_from(["a", "b", "ab", "a/b", "b/a", "a/", "aa"]), st.text("ab/", max_size=3)
)
ID_PATTERNS = st.one_of(
    st.sampled_from(["*", "a*", "b*", "a", "ab", "*b", "a/*", "*/*", "a*b", ""]),
    st.text("ab/*", max_size=4),
)
CONNS = st.sampled_from(["c1", "c2", "c3"])
NODES = st.sampled_from(["n1", "n2"])
AT = st.just(0.0)  # replaced by the running time when the steps are applied

PROVIDER_UP = st.builds(
    ProviderUp,
    conn=CONNS,
    node=NODES,
    sub=st.none(),
    jti=st.none(),
    patterns=st.lists(st.tuples(REALM_PATTERNS, ID_PATTERNS), max_size=3).map(tuple),
    at=AT,
)
PROVIDER_DOWN = st.builds(
    ProviderDown, conn=CONNS, reason=st.sampled_from(["closed", "timeout", "expired"]), at=AT
)
OBJECT_CREATED = st.builds(ObjectCreated, realm=REALMS, id=IDS, at=AT)
TICK = st.builds(Tick, at=AT)
# Weighted: providers, objects and ticks are what presence is made of.
_WEIGHTED_EVENTS: list[st.SearchStrategy[Event]] = [
    PROVIDER_UP,
    PROVIDER_UP,
    PROVIDER_UP,
    PROVIDER_DOWN,
    PROVIDER_DOWN,
    OBJECT_CREATED,
    OBJECT_CREATED,
    OBJECT_CREATED,
    TICK,
    TICK,
    st.builds(NodeLost, node=NODES, at=AT),
    st.builds(ObjectDeleted, realm=REALMS, id=IDS, at=AT),
    st.builds(RealmCreated, realm=REALMS, at=AT),
    st.builds(RealmDeleted, realm=REALMS, at=AT),
]
EVENTS = st.sampled_from(_WEIGHTED_EVENTS).flatmap(lambda strategy: strategy)


class EngineVersusModel(RuleBasedStateMachine):
    """Random event logs, applied to the engine and to the model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = PresenceEngine()
        self.model = Model(0.0)
        self.now = 0.0

    @initialize(grace=st.sampled_from([0.0, 1.0, 3.0]))
    def start(self, grace: float) -> None:
        self.engine = PresenceEngine(grace=grace)
        self.model = Model(grace)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]), template=EVENTS)
    def step(self, dt: float, template: Event) -> None:
        """Time never goes back; every event gets the running time."""
        self.now += dt
        event = dataclasses.replace(template, at=self.now)
        expected = self.model.step(event)
        changes = self.engine.apply(event)
        assert changes == expected
        for change in changes:
            ledger = self.engine.ledger(change.realm, change.id)
            assert ledger is not None
            if change.status == "con":
                assert ledger.connected_since == self.now
            else:
                assert (ledger.last_disconnected_at, ledger.last_reason) == (
                    self.now,
                    change.reason,
                )

    @invariant()
    def agrees_with_the_model(self) -> None:
        engine, model = self.engine, self.model
        objects = model.objects()
        for key in objects:
            assert engine.is_connected(*key) == model.connected(key), key
            explanation = engine.explain(*key, now=self.now)
            assert explanation is not None
            assert [p.conn for p in explanation.providers] == model.covering(*key)
        assert engine.objects == len(objects)
        assert engine.connected_objects == sum(model.connected(key) for key in objects)
        assert engine.providers == len(model.providers)
        for realm, ids in model.realms.items():
            connected = sorted(oid for oid in ids if model.connected((realm, oid)))
            assert engine.connected_ids(realm) == connected
            assert engine.count(realm, "*") == (len(connected), len(ids) - len(connected))
            in_a = [oid for oid in ids if oid.startswith("a")]
            connected_in_a = sum(model.connected((realm, oid)) for oid in in_a)
            assert engine.count(realm, "a*") == (connected_in_a, len(in_a) - connected_in_a)
        ends = [end for end, _ in model.graces.values()]
        assert engine.next_deadline() == (min(ends) if ends else None)


EngineVersusModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
test_engine_agrees_with_brute_force_model = EngineVersusModel.TestCase
