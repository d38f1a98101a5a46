"""The subscription index on its own: delta rules, scopes, options, placement and cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from hivectl.core.permissions import Permissions
from hivectl.core.wire import Location
from server.model.records import ObjectRecord, RealmRecord
from server.model.session import Session
from server.model.subscription_index import (
    FULL_CHUNK,
    ObjectSubscription,
    Push,
    SubscriptionIndex,
    parse_options,
)

M_PER_DEG = 111_195.08
"""Metres per degree along a meridian on the index's sphere."""


def session(per: dict[str, dict[str, str]] | None = None) -> Session:
    made = Session(f"c{id(per)}", None)
    made.permissions = Permissions.unrestricted() if per is None else Permissions.parse(per)
    return made


class World:
    """A realm and an index, changed the way the hub changes them."""

    def __init__(self, **index_options: Any) -> None:
        self.realm = RealmRecord("r")
        self.connected: set[str] = set()
        self.index = SubscriptionIndex(
            lambda realm, oid: "con" if oid in self.connected else "dis", **index_options
        )

    def put(self, oid: str, lon: float = 0.0, lat: float = 0.0, **dat: Any) -> Sequence[Push]:
        record = self.realm.objects.get(oid)
        previous = None if record is None else record.loc
        if record is None:
            record = self.realm.objects[oid] = ObjectRecord(oid)
        record.loc = Location(lon, lat)
        record.dat = {**record.dat, **dat}
        return self.index.object_written("r", record, previous)

    def delete(self, oid: str) -> Sequence[Push]:
        return self.index.object_deleted("r", self.realm.objects.pop(oid))

    def connect(self, oid: str) -> Sequence[Push]:
        self.connected.add(oid)
        return self.index.status_changed("r", oid)

    def subscribe(
        self, sub_id: str = "s", owner: Session | None = None, **options: Any
    ) -> ObjectSubscription:
        return self.index.subscribe(
            owner or session(), sub_id, self.realm, parse_options({"typ": "obj", **options})
        )


def deltas(pushes: Sequence[Push]) -> list[tuple[str, str, list[str]]]:
    """Pushes as (subscription id, section, ids) for the one non-empty section of each."""
    found = []
    for _, message in pushes:
        assert message["typ"] == "sub"
        assert message["uty"] == "dta"
        sections = [(name, list(ids)) for name, ids in message["obj"].items() if ids]
        assert len(sections) == 1, message
        found.append((message["id"], *sections[0]))
    return found


# -- the delta table --------------------------------------------------------------------


def test_whole_realm_created_updated_filtered_out_and_deleted() -> None:
    world = World()
    world.subscribe(sty="rea", atr=["kind=car"])
    assert deltas(world.put("a", kind="car")) == [("s", "cre", ["a"])]
    assert deltas(world.put("a", speed=3)) == [("s", "upd", ["a"])]
    assert deltas(world.put("a", kind="bike")) == [("s", "del", ["a"])]
    assert world.put("a", speed=4) == []
    assert world.delete("a") == []
    assert deltas(world.put("b", kind="car")) == [("s", "cre", ["b"])]
    assert deltas(world.delete("b")) == [("s", "del", ["b"])]


def test_pushes_carry_whole_objects_and_all_three_sections() -> None:
    world = World()
    world.subscribe()
    [(_, message)] = world.put("a", 1.5, 2.5, n=1)
    assert orjson.loads(orjson.dumps(message)) == {
        "typ": "sub",
        "id": "s",
        "uty": "dta",
        "obj": {
            "cre": {
                "a": {
                    "id": "a",
                    "lab": "",
                    "loc": Location(1.5, 2.5).to_wire(),
                    "dat": {"n": 1},
                    "cst": "dis",
                    "tds": [],
                }
            },
            "upd": {},
            "del": {},
        },
    }
    [(_, deleted)] = world.delete("a")
    assert deleted["obj"] == {"cre": {}, "upd": {}, "del": {"a": {}}}


def test_presence_change_is_one_upd_and_cst_filters_see_it() -> None:
    world = World()
    world.put("a")
    world.subscribe("all")
    world.subscribe("online", atr=["$cst=con"])
    pushes = world.connect("a")
    assert sorted(deltas(pushes)) == [("all", "upd", ["a"]), ("online", "cre", ["a"])]
    assert all(
        message["obj"][section]["a"]["cst"] == "con"
        for _, message in pushes
        for section in ("cre", "upd")
        if message["obj"][section]
    )


def test_unreadable_objects_are_never_pushed() -> None:
    world = World()
    reader = session({"r": {"pub/*": "R"}})
    world.subscribe(owner=reader)
    assert world.put("secret/1") == []
    assert world.put("secret/1", moved=True) == []
    assert deltas(world.put("pub/1")) == [("s", "cre", ["pub/1"])]
    assert world.delete("secret/1") == []


def test_full_lists_the_held_set_and_nothing_after_the_end() -> None:
    world = World()
    world.put("a", 10, 50)
    world.put("b", 20, 50)
    sub = world.subscribe(sty="cir", sha={"cx": 10, "cy": 50, "r": 100})
    (message,) = list(world.index.full(sub))
    assert message["uty"] == "ful"
    assert list(message["obj"]["cre"]) == ["a"]
    assert message["obj"]["upd"] == message["obj"]["del"] == {}
    world.index.unsubscribe(sub)
    assert list(world.index.full(sub)) == []
    assert sub.session.subscriptions == {}


def test_an_empty_held_set_is_one_empty_full_push() -> None:
    world = World()
    sub = world.subscribe()
    (message,) = list(world.index.full(sub))
    assert (message["uty"], message["obj"]["cre"]) == ("ful", {})


def test_a_large_full_state_is_a_full_push_then_created_deltas_in_chunks() -> None:
    world = World()
    ids = [f"o{n:05}" for n in range(FULL_CHUNK * 2 + 7)]
    for oid in ids:
        world.put(oid)
    messages = list(world.index.full(world.subscribe()))
    assert [m["uty"] for m in messages] == ["ful", "dta", "dta"]
    assert [len(m["obj"]["cre"]) for m in messages] == [FULL_CHUNK, FULL_CHUNK, 7]
    assert [oid for m in messages for oid in m["obj"]["cre"]] == ids


def apply_push(client: dict[str, Any], message: dict[str, Any]) -> None:
    """What a Hivekit client does with an object subscription push (as JSON)."""
    message = orjson.loads(orjson.dumps(message))
    if message["uty"] == "ful":
        client.clear()
    for section in ("cre", "upd"):
        client.update(message["obj"][section])
    for oid in message["obj"]["del"]:
        client.pop(oid, None)


def test_changes_while_a_full_state_streams_leave_the_client_with_the_held_set() -> None:
    """Deltas go on while the stream is drawn from: deleted, moved-away, changed and new
    objects all end up as the index holds them, whatever the interleaving."""
    world = World()
    for n in range(FULL_CHUNK * 3):
        world.put(f"o{n:05}", 1.0, 1.0)
    sub = world.subscribe(sty="rec", sha={"x1": 0, "y1": 0, "x2": 2, "y2": 2})
    client: dict[str, Any] = {}
    stream = world.index.full(sub)
    apply_push(client, next(stream))
    changes = [
        world.delete("o00010"),  # already sent
        world.delete(f"o{FULL_CHUNK * 2 + 1:05}"),  # not sent yet
        world.put(f"o{FULL_CHUNK + 3:05}", 5.0, 5.0),  # moved away before its turn
        world.put(f"o{FULL_CHUNK + 4:05}", 1.5, 1.5, v=2),  # changed before its turn
        world.put("new", 1.0, 1.0),  # created meanwhile
        world.connect("o00001"),
    ]
    for pushes in changes:
        for _, message in pushes:
            apply_push(client, message)
    for message in stream:
        apply_push(client, message)
    assert set(client) == set(sub.held)
    for oid, body in client.items():
        wire = world.realm.objects[oid].to_wire("con" if oid == "o00001" else "dis")
        assert body == orjson.loads(orjson.dumps(wire))


def test_a_newer_full_state_ends_the_stream_before_it() -> None:
    world = World()
    for n in range(FULL_CHUNK * 2):
        world.put(f"o{n:05}")
    sub = world.subscribe()
    first = world.index.full(sub)
    assert next(first)["uty"] == "ful"
    second = world.index.full(sub)
    assert list(first) == []
    assert [m["uty"] for m in second] == ["ful", "dta"]


# -- scopes -----------------------------------------------------------------------------

SCOPES: dict[str, dict[str, Any]] = {
    "rec": {"sty": "rec", "sha": {"x1": 9.99, "y1": 49.99, "x2": 10.01, "y2": 50.01}},
    "cir": {"sty": "cir", "sha": {"cx": 10, "cy": 50, "r": 1000}},
    "pol": {
        "sty": "pol",
        "sha": {
            "points": [{"x": 9.99, "y": 49.99}, {"x": 10.01, "y": 49.99}, {"x": 10, "y": 50.01}]
        },
    },
    "tar": {"sty": "tar", "sta": {"id": "anchor", "r": 1000}},
}


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_moving_in_within_and_out_of_an_area(scope: str) -> None:
    world = World()
    world.put("anchor", 10, 50)
    world.subscribe(**SCOPES[scope])
    assert world.put("m", 11, 51) == []
    assert deltas(world.put("m", 10.001, 50.001)) == [("s", "cre", ["m"])]
    assert deltas(world.put("m", 10.002, 49.999)) == [("s", "upd", ["m"])]
    assert deltas(world.put("m", 12, 52)) == [("s", "del", ["m"])]
    assert world.put("m", 11, 51) == []


def test_circle_radius_is_great_circle_metres() -> None:
    world = World()
    world.put("near", 10, 50 + 69 / M_PER_DEG)
    world.put("far", 10, 50 + 138 / M_PER_DEG)
    sub = world.subscribe(sty="cir", sha={"cx": 10, "cy": 50, "r": 110})
    assert list(sub.held) == ["near"]


def test_concave_polygon_excludes_its_notch() -> None:
    world = World()
    u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
    world.put("notch", 1.5, 2)
    world.put("arm", 0.5, 2)
    world.put("base", 1.5, 0.5)
    sub = world.subscribe(sty="pol", sha={"points": [{"x": x, "y": y} for x, y in u_shape]})
    assert list(sub.held) == ["arm", "base"]


def test_target_subscription_follows_its_target_in_one_push() -> None:
    world = World()
    world.put("rider", 10, 50)
    world.put("p1", 10, 50.001)
    world.put("p2", 11, 50.001)
    sub = world.subscribe(sty="tar", sta={"id": "rider", "r": 200}, atr=['$id!="rider"'])
    assert list(sub.held) == ["p1"]
    [(_, message)] = world.put("rider", 11, 50)
    assert message["obj"] == {
        "cre": {"p2": message["obj"]["cre"]["p2"]},
        "upd": {},
        "del": {"p1": {}},
    }
    assert list(sub.held) == ["p2"]
    assert deltas(world.put("p2", 11.0001, 50.001)) == [("s", "upd", ["p2"])]
    assert world.put("rider", 11, 50, note="still") == []


def test_target_itself_is_updated_created_and_deleted() -> None:
    world = World()
    sub = world.subscribe(sty="tar", sta={"id": "rider", "r": 200})
    assert world.put("p1", 10, 50.001) == []
    [(_, created)] = world.put("rider", 10, 50)
    assert set(created["obj"]["cre"]) == {"rider", "p1"}
    assert created["obj"]["upd"] == created["obj"]["del"] == {}
    [(_, moved)] = world.put("rider", 10, 50.0005)
    assert moved["obj"]["upd"].keys() == {"rider"}
    assert moved["obj"]["cre"] == moved["obj"]["del"] == {}
    [(_, gone)] = world.delete("rider")
    assert gone["obj"]["del"].keys() == {"rider", "p1"}
    assert sub.held == {}
    assert world.put("p1", 10, 50.0001) == []


# -- options ----------------------------------------------------------------------------


def test_update_merges_options() -> None:
    circle = {"cx": 10, "cy": 50, "r": 100}
    current = parse_options({"typ": "obj", "sty": "cir", "sha": circle, "atr": ["a=1"]})
    kept = parse_options({"sty": "rea", "atr": []}, current)
    assert kept.shape == current.shape
    assert kept.filters == ()
    unfiltered = parse_options({"sty": "rea"}, current)
    assert unfiltered.filters == current.filters
    assert parse_options({"sty": "rea", "sha": None}, current).shape is None
    with pytest.raises(ValueError, match="sha is required for sty cir"):
        parse_options({"sha": None}, current)
    assert parse_options({"sty": "tar", "sta": {"id": "x", "r": 5}}, current).target is not None


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"sty": "box"}, "sty must be one of"),
        ({"sty": "cir"}, "sha is required for sty cir"),
        ({"sty": "cir", "sha": {"cx": 1}}, "sha: circle needs numbers"),
        ({"sty": "tar"}, "sta must be an object"),
        ({"sty": "tar", "sta": {"id": "", "r": 1}}, "sta.id"),
        ({"sty": "tar", "sta": {"id": "x", "r": -1}}, "sta.r"),
        ({"sty": "tar", "sta": {"id": "x", "r": True}}, "sta.r"),
        ({"atr": ["speed>>5"]}, "atr: cannot parse"),
        ({"atr": "a=1"}, "atr: expected a list"),
        ({"exe": 1}, "exe must be"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        parse_options(options)


def test_update_reevaluates_and_keeps_placement_consistent() -> None:
    world = World()
    world.put("a", 10, 50, kind="x")
    world.put("b", 10, 50.0005, kind="y")
    world.put("far", 10.5, 50, kind="x")  # 35.8 km east
    sub = world.subscribe(sty="cir", sha={"cx": 10, "cy": 50, "r": 100})
    assert list(sub.held) == ["a", "b"]
    world.index.update(sub, parse_options({"atr": ["kind=x"]}, sub.options))
    assert list(sub.held) == ["a"]
    world.index.update(
        sub,
        parse_options({"sha": {"cx": 10, "cy": 50, "r": 50_000}, "atr": ["kind=x"]}, sub.options),
    )
    assert set(sub.held) == {"a", "far"}
    assert deltas(world.put("far", 10.8, 50)) == [("s", "del", ["far"])]  # 57 km
    assert world.put("far", 11, 50) == []


# -- realm subscriptions ----------------------------------------------------------------


def test_realm_list_and_realm_data() -> None:
    index = SubscriptionIndex(lambda realm, oid: "dis")
    everyone, limited = session(), session({"x": {"*": "R"}})
    index.watch_realms(everyone, "all")
    index.watch_realms(limited, "mine")
    index.watch_realm(everyone, "data", "x")
    x = RealmRecord("x", "X", {"k": 1})
    assert [(m["id"], m["dat"]["act"]) for _, m in index.realm_created("x")] == [
        ("all", "cre"),
        ("mine", "cre"),
    ]
    assert [m["id"] for _, m in index.realm_created("y")] == ["all"]
    updated = [m for _, m in index.realm_updated(x)]
    assert updated == [
        {"typ": "sub", "id": "all", "uty": "dta", "dat": {"typ": "rea", "id": "x", "act": "upd"}},
        {"typ": "sub", "id": "mine", "uty": "dta", "dat": {"typ": "rea", "id": "x", "act": "upd"}},
        {"typ": "sub", "id": "data", "uty": "ful", "rea": {"id": "x", "lab": "X", "dat": {"k": 1}}},
    ]
    assert len(index.realm_deleted("x")) == 2
    assert "data" not in everyone.subscriptions
    assert [m["id"] for _, m in index.realm_updated(RealmRecord("x"))] == ["all", "mine"]


def test_realm_deletion_and_session_end_leave_nothing_behind() -> None:
    world = World()
    owner = session()
    world.put("anchor", 10, 50)
    world.subscribe("a", owner, sty="cir", sha={"cx": 10, "cy": 50, "r": 100})
    world.subscribe("b", owner, sty="tar", sta={"id": "anchor", "r": 100})
    world.index.watch_realms(owner, "c")
    world.index.realm_deleted("r")
    assert list(owner.subscriptions) == ["c"]
    assert world.index._realms == {}
    world.index.drop_session(owner)
    assert owner.subscriptions == {}
    assert world.index.realm_created("r") == []


# -- cost -------------------------------------------------------------------------------


def test_a_realm_without_subscriptions_costs_nothing() -> None:
    world = World()
    world.subscribe(sty="rea")
    world.realm = RealmRecord("other")
    before = world.index.checks
    for n in range(100):
        assert not world.index.object_written("other", ObjectRecord(f"o{n}"), None)
    assert world.index.checks == before


def test_an_update_costs_the_subscriptions_near_it_not_all_of_them() -> None:
    world = World()
    # 2,000 circles of 50 m, one every 0.005 degrees (about 550 m) on a 40 x 50 grid.
    for i in range(40):
        for j in range(50):
            centre = {"cx": 10 + i * 0.005, "cy": 50 + j * 0.005, "r": 50}
            world.subscribe(f"s{i}-{j}", sty="cir", sha=centre)
    # A 0.01-degree cell is reached by at most the 3 x 3 circles centred on or around it.
    near = 9
    world.put("m", 10.1, 50.1)
    assert world.index.checks <= near
    before = world.index.checks
    pushes = world.put("m", 10.1 + 0.0001, 50.1)
    assert deltas(pushes) == [("s20-20", "upd", ["m"])]
    assert world.index.checks - before <= near
    before = world.index.checks
    far = world.put("m", 10.1 + 0.05, 50.1 + 0.0001)  # out of s20-20, into s30-20
    assert sorted(deltas(far)) == [("s20-20", "del", ["m"]), ("s30-20", "cre", ["m"])]
    assert world.index.checks - before <= 2 * near
    # A realm-wide subscription is looked at by every change, but only it is added.
    world.subscribe("wide")
    before = world.index.checks
    world.put("m", 10.1 + 0.05, 50.1 + 0.0002)
    assert world.index.checks - before <= near + 1


def test_a_moving_target_reads_objects_near_it_only() -> None:
    world = World()
    for n in range(2000):
        world.put(f"o{n}", 10 + (n % 50) * 0.01, 50 + (n // 50) * 0.01)
    world.put("rider", 10.005, 50.005)
    world.subscribe(sty="tar", sta={"id": "rider", "r": 100})
    before = world.index.checks
    world.put("rider", 10.205, 50.205)
    assert world.index.checks - before <= 10
