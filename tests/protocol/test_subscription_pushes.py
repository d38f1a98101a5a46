"""Subscription pushes: one per change per subscription, and presence settled first.

The rule (`server.protocol.hub`): every change to an object or realm (presence transitions
included) is handed to `server.model.subscription_index`, which answers with the
subscription pushes to make: one per change per subscription it touches. A new object's
presence is settled before, so it arrives in ``cre`` already ``con``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import mint
from tests.protocol.driver import (
    PROPERTY,
    Client,
    HubDriver,
    Message,
    obj,
    presence_events,
    realm_create,
    subscribe,
    subscription_pushes,
    watch_presence,
)

RECT = {"x1": 0, "y1": 0, "x2": 10, "y2": 10}


def delta(push: Message) -> list[tuple[str, str]]:
    """A ``dta`` push as (map, object id) pairs, ``cre`` then ``upd`` then ``del``."""
    assert push["uty"] == "dta"
    return [(kind, oid) for kind in ("cre", "upd", "del") for oid in push["obj"][kind]]


def by_subscription(messages: list[Message]) -> dict[str, list[Message]]:
    grouped: dict[str, list[Message]] = {}
    for push in subscription_pushes(messages):
        grouped.setdefault(push["id"], []).append(push)
    return grouped


def setup(*subscriptions: Message) -> tuple[HubDriver, Client, Client]:
    driver = HubDriver()
    writer = driver.connect(sub="writer")
    watcher = driver.connect(sub="watcher")
    writer.send(realm_create("r"))
    answer = watcher.send(*subscriptions, watch_presence("r", cid="presence"))
    assert all(m["res"] == "suc" for m in answer), answer
    return driver, writer, watcher


def test_a_new_object_under_a_live_provider_arrives_in_cre_already_con() -> None:
    driver, writer, watcher = setup(subscribe("all", "r", 1))
    driver.connect(dpv={"r": ["o*"]})
    writer.send(obj("cre", "r", "o1", lab="first"))
    received = watcher.take()
    (push,) = subscription_pushes(received)  # one change, one push: not cre then upd
    assert delta(push) == [("cre", "o1")]
    assert push["obj"]["cre"]["o1"]["cst"] == "con"
    assert presence_events(received) == [("r", "o1", "con")]  # and the transition published


def test_a_presence_transition_is_one_push_per_subscription_holding_the_object() -> None:
    driver, writer, watcher = setup(
        subscribe("all", "r", 1),
        subscribe("online", "r", 2, atr=["$cst=con"]),
        subscribe("elsewhere", "r", 3, sty="rec", sha=RECT),
    )
    writer.send(obj("cre", "r", "o1", loc={"lon": 50, "lat": 50}))
    watcher.take()

    device = driver.connect(dpv={"r": ["*"]})
    pushes = by_subscription(watcher.take())
    assert {sid: [delta(p) for p in ps] for sid, ps in pushes.items()} == {
        "all": [[("upd", "o1")]],
        "online": [[("cre", "o1")]],  # starts matching
    }
    assert pushes["all"][0]["obj"]["upd"]["o1"]["cst"] == "con"

    driver.close(device)
    pushes = by_subscription(watcher.take())
    assert {sid: [delta(p) for p in ps] for sid, ps in pushes.items()} == {
        "all": [[("upd", "o1")]],
        "online": [[("del", "o1")]],
    }


def test_writes_and_deletes_are_one_push_each_per_subscription() -> None:
    _, writer, watcher = setup(
        subscribe("all", "r", 1), subscribe("near", "r", 2, sty="rec", sha=RECT)
    )
    steps: list[tuple[Message, dict[str, list[tuple[str, str]]]]] = [
        (
            obj("cre", "r", "o", loc={"lon": 5, "lat": 5}),
            {"all": [("cre", "o")], "near": [("cre", "o")]},
        ),
        (
            obj("upd", "r", "o", loc={"lon": 50, "lat": 5}),
            {"all": [("upd", "o")], "near": [("del", "o")]},
        ),
        (obj("upd", "r", "o", dat={"k": 1}), {"all": [("upd", "o")]}),
        (
            obj("set", "r", "o", loc={"lon": 1, "lat": 1}),
            {"all": [("upd", "o")], "near": [("cre", "o")]},
        ),
        (obj("del", "r", "o"), {"all": [("del", "o")], "near": [("del", "o")]}),
    ]
    for message, expected in steps:
        writer.send(message)
        pushes = by_subscription(watcher.take())
        assert {sid: [pair for p in ps for pair in delta(p)] for sid, ps in pushes.items()} == (
            expected
        ), message
        assert all(len(ps) == 1 for ps in pushes.values())


def test_realm_changes_push_to_realm_subscriptions_once_each() -> None:
    driver = HubDriver()
    admin = driver.connect(sub="admin")
    watcher = driver.connect(sub="watcher")
    admin.send(realm_create("r"))
    answer = watcher.send(
        {"typ": "sub", "act": "cre", "id": "list", "rea": "sys", "dat": {"typ": "sys"}, "cid": 1},
        {"typ": "sub", "act": "cre", "id": "data", "rea": "r", "dat": {"typ": "rea"}, "cid": 2},
    )
    assert [m["res"] for m in answer] == ["suc", "suc"]  # nothing at subscribe time

    admin.send(realm_create("q"))
    assert subscription_pushes(watcher.take()) == [
        {"typ": "sub", "id": "list", "uty": "dta", "dat": {"typ": "rea", "id": "q", "act": "cre"}}
    ]
    admin.send({"typ": "rea", "act": "upd", "id": "r", "lab": "renamed", "dat": {"a": 1}})
    assert subscription_pushes(watcher.take()) == [
        {"typ": "sub", "id": "list", "uty": "dta", "dat": {"typ": "rea", "id": "r", "act": "upd"}},
        {
            "typ": "sub",
            "id": "data",
            "uty": "ful",
            "rea": {"id": "r", "lab": "renamed", "dat": {"a": 1}},
        },
    ]
    admin.send(obj("cre", "r", "o"))
    assert subscription_pushes(watcher.take()) == []  # object changes are not realm changes
    admin.send({"typ": "rea", "act": "del", "id": "q"})
    assert [p["dat"] for p in subscription_pushes(watcher.take())] == [
        {"typ": "rea", "id": "q", "act": "del"}
    ]


def test_exe_pushes_the_full_set_in_a_later_frame_than_the_reply() -> None:
    driver = HubDriver()
    writer = driver.connect(sub="writer")
    watcher = driver.connect(sub="watcher")
    driver.connect(dpv={"r": ["a"]})
    writer.send(realm_create("r"), obj("cre", "r", "a"), obj("cre", "r", "b"))
    frames = len(watcher.frames)
    assert [m["res"] for m in watcher.send(subscribe("s", "r", 1, exe=True))] == ["suc"]
    assert len(watcher.frames) == frames + 1  # the reply alone
    driver.run_timers()
    (push,) = watcher.take()
    assert len(watcher.frames) == frames + 2
    assert push["uty"] == "ful"
    assert {oid: entry["cst"] for oid, entry in push["obj"]["cre"].items()} == {
        "a": "con",
        "b": "dis",
    }


# -- the property -----------------------------------------------------------------------

OBJECT_IDS = ["o1", "o2", "p1"]
"""The provider covers ``o*``: o1 and o2 change presence with it, p1 never does."""


class Model:
    """What each subscription should hold, from the objects as the model knows them."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # id -> {"k": ..., "lon": ...}
        self.provider = False

    def status(self, oid: str) -> str:
        return "con" if self.provider and oid.startswith("o") else "dis"

    def matches(self, sid: str, oid: str) -> bool:
        state = self.objects.get(oid)
        if state is None:
            return False
        return {
            "all": True,
            "k1": state.get("k") == 1,
            "near": 0 <= state["lon"] <= 10,
            "online": self.status(oid) == "con",
        }[sid]

    def holding(self) -> dict[str, set[str]]:
        return {sid: {o for o in self.objects if self.matches(sid, o)} for sid in SUBSCRIPTIONS}


SUBSCRIPTIONS = {
    "all": {},
    "k1": {"atr": ["k=1"]},
    "near": {"sty": "rec", "sha": RECT},
    "online": {"atr": ["$cst=con"]},
}

writes = st.tuples(
    st.sampled_from(["cre", "upd", "set", "del", "provider"]),
    st.sampled_from(OBJECT_IDS),
    st.sampled_from([None, 0, 1]),
    st.sampled_from([None, 5, 50]),
)


@PROPERTY
@given(st.lists(writes, min_size=3, max_size=20))
def test_each_change_is_one_push_per_subscription_it_touches(plan: list[Any]) -> None:
    subscriptions = [subscribe(sid, "r", sid, **options) for sid, options in SUBSCRIPTIONS.items()]
    driver, writer, watcher = setup(*subscriptions)
    model = Model()
    device: list[Client] = []

    for act, oid, k, lon in plan:
        held = model.holding()
        if act == "provider":
            # Each object whose presence flips is one change.
            changed = [o for o in model.objects if o.startswith("o")]
            if device:
                driver.close(device.pop())
            else:
                device.append(driver.connect(mint("device", dpv={"r": ["o*"]})))
            model.provider = not model.provider
        else:
            fields: dict[str, Any] = {}
            if k is not None:
                fields["dat"] = {"k": k}
            if lon is not None:
                fields["loc"] = {"lon": lon, "lat": 5}
            answer = writer.send(obj(act, "r", oid, "w", **fields))
            if act in ("upd", "del") and oid not in model.objects:
                changed = []  # 404: no change
            elif act == "del":
                changed = [oid]
                del model.objects[oid]
            else:
                changed = [oid]
                state = model.objects.setdefault(oid, {"lon": 0})
                state.update({"k": k} if k is not None else {})
                state.update({"lon": lon} if lon is not None else {})
            outcome = "err" if not changed else None if act == "set" else "suc"
            assert [m["res"] for m in answer] == ([] if outcome is None else [outcome]), answer

        pushes = by_subscription(watcher.take())
        for sid in SUBSCRIPTIONS:
            expected: list[tuple[str, str]] = []
            for o in changed:
                before, after = o in held[sid], model.matches(sid, o)
                if before or after:
                    expected.append(("upd" if before and after else "cre" if after else "del", o))
            got = pushes.get(sid, [])
            assert [pair for p in got for pair in delta(p)] == expected, (act, oid, sid)
            assert len(got) == len(expected)  # one push per change
            for push in got:
                for o, entry in {**push["obj"]["cre"], **push["obj"]["upd"]}.items():
                    assert entry["cst"] == model.status(o)  # presence settled before the push
