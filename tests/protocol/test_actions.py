"""Realm and object actions on the hub (protocol.md §6.1, §6.2): what each action answers,
its error codes and texts, and what a realm or object holds afterwards.

Moved from `tests.server.test_ws_actions`, with the same messages and assertions; the
round trips of the real client and one exchange through a real server stay there.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import mint
from tests.protocol.driver import (
    Client,
    HubDriver,
    presence_events,
    pubsub_pushes,
    watch_event,
    watch_presence,
)

LOCATION_KEYS = {"lon", "lat", "acc", "spe", "hea", "alt", "alc", "gcs", "tim"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def driver() -> HubDriver:
    return HubDriver()


@pytest.fixture
def client(driver: HubDriver) -> Client:
    return driver.connect(mint("admin"))


def _realm(act: str, realm_id: str, **fields: Any) -> dict[str, Any]:
    return {"typ": "rea", "act": act, "id": realm_id, **fields}


def _obj(act: str, object_id: str | None = None, **fields: Any) -> dict[str, Any]:
    message = {"typ": "obj", "act": act, "rea": "r", **fields}
    if object_id is not None:
        message["id"] = object_id
    return message


def _error(client: Client, message: dict[str, Any]) -> tuple[int, str]:
    reply = client.request(message)
    assert reply["res"] == "err", reply
    return reply["erc"], reply["err"]


# -- realms ------------------------------------------------------------------------------


def test_realm_create_read_list(client: Client) -> None:
    client.ok(_realm("cre", "london", lab="London", dat={"tz": "GMT"}))
    client.ok(_realm("cre", "paris"))
    assert _error(client, _realm("cre", "london")) == (
        409,
        "realm with id london already exists",
    )
    assert client.ok(_realm("rea", "london")) == {
        "id": "london",
        "lab": "London",
        "dat": {"tz": "GMT"},
    }
    assert client.ok(_realm("rea", "paris")) == {"id": "paris", "lab": "", "dat": {}}
    assert _error(client, _realm("rea", "nope")) == (404, "unknown realm nope")
    listed = client.ok({"typ": "rea", "act": "lis"})
    assert listed == {
        "london": {"id": "london", "lab": "London"},
        "paris": {"id": "paris", "lab": ""},
    }
    assert list(listed) == ["london", "paris"]


def test_realm_update_merges_data(client: Client) -> None:
    client.ok(_realm("cre", "r", lab="old", dat={"a": 1, "b": 2}))
    client.ok(_realm("upd", "r", dat={"b": None, "c": {"x": 1}}))
    assert client.ok(_realm("rea", "r")) == {
        "id": "r",
        "lab": "old",
        "dat": {"a": 1, "c": {"x": 1}},
    }
    client.ok(_realm("upd", "r", lab="new"))
    assert client.ok(_realm("rea", "r")) == {
        "id": "r",
        "lab": "new",
        "dat": {"a": 1, "c": {"x": 1}},
    }
    assert _error(client, _realm("upd", "nope", lab="x")) == (404, "unknown realm nope")
    assert _error(client, _realm("upd", "r", dat=[1])) == (400, "dat must be an object")
    assert client.ok(_realm("rea", "r"))["dat"] == {"a": 1, "c": {"x": 1}}


def test_realm_delete_removes_its_objects_and_subscriptions(
    driver: HubDriver, client: Client
) -> None:
    client.ok(_realm("cre", "r"))
    client.ok(_obj("cre", "x"))
    listener = driver.connect(mint("listener"))
    listener.ok(watch_event("r", "e"))

    client.ok(_realm("del", "r"))
    assert _error(client, _realm("rea", "r")) == (404, "unknown realm r")
    assert _error(client, _obj("rea", "x")) == (404, "unknown realm r")
    assert _error(client, _realm("del", "r")) == (404, "unknown realm r")
    assert client.ok({"typ": "rea", "act": "lis"}) == {}

    client.ok(_realm("cre", "r"))  # a new realm of the same name starts empty
    assert client.ok(_obj("lis")) == {}
    client.ok({"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e", "idp": "x"}})
    assert pubsub_pushes(listener.received) == []  # the old subscription ended with the realm
    stats = client.ok({"typ": "sys", "act": "sta"})
    assert (stats["realms"], stats["objects"], stats["pubsubSubscriptions"]) == (1, 0, 0)


# -- objects -----------------------------------------------------------------------------


def test_object_create_and_read(client: Client) -> None:
    client.ok(_realm("cre", "r"))
    client.ok(_obj("cre", "x"))
    bare = client.ok(_obj("rea", "x"))
    assert set(bare) == {"id", "lab", "loc", "dat", "cst", "tds"}
    assert set(bare["loc"]) == LOCATION_KEYS
    assert bare["id"] == "x"
    assert (bare["lab"], bare["dat"], bare["cst"], bare["tds"]) == ("", {}, "dis", [])
    assert {k: v for k, v in bare["loc"].items() if k not in ("gcs", "tim")} == dict.fromkeys(
        LOCATION_KEYS - {"gcs", "tim"}, 0
    )
    assert bare["loc"]["gcs"] == ""

    location = {"lon": -0.1, "lat": 51.5, "acc": 5, "gcs": "wgs84", "tim": "2024-01-01T00:00:00Z"}
    client.ok(_obj("cre", "y", lab="Y", loc=location, dat={"a": 1}, tds=["t1"]))
    created = client.ok(_obj("rea", "y"))
    assert created["loc"] == {**location, "spe": 0, "hea": 0, "alt": 0, "alc": 0}
    assert (created["lab"], created["dat"], created["tds"]) == ("Y", {"a": 1}, ["t1"])

    # cre on an existing id succeeds and updates with the merge rules
    client.ok(_obj("cre", "y", dat={"b": 2, "a": None}, lab="Y2"))
    updated = client.ok(_obj("rea", "y"))
    assert (updated["lab"], updated["dat"], updated["tds"]) == ("Y2", {"b": 2}, ["t1"])
    assert updated["loc"] == created["loc"]
    assert _error(client, _obj("rea", "nope")) == (404, "unknown object nope")
    assert _error(client, {**_obj("rea", "x"), "rea": "nope"}) == (404, "unknown realm nope")


def test_object_update_is_partial(client: Client) -> None:
    client.ok(_realm("cre", "r"))
    first = {
        "lon": 1,
        "lat": 2,
        "acc": 3,
        "spe": 4,
        "hea": 5,
        "alt": 6,
        "alc": 7,
        "gcs": "g",
        "tim": "2024-01-01T00:00:00.000Z",
    }
    client.ok(_obj("cre", "x", lab="L", loc=first, dat={"a": 1, "b": 2}, tds=["t1", "t2"]))

    client.ok(_obj("upd", "x", dat={"b": None, "c": 3}))
    after = client.ok(_obj("rea", "x"))
    assert after["loc"] == first
    assert (after["lab"], after["dat"], after["tds"]) == ("L", {"a": 1, "c": 3}, ["t1", "t2"])

    client.ok(_obj("upd", "x", loc={"lon": 10, "lat": 20}))  # loc replaces as a whole
    moved = client.ok(_obj("rea", "x"))["loc"]
    zeros = dict.fromkeys(("acc", "spe", "hea", "alt", "alc"), 0)
    assert {k: moved[k] for k in LOCATION_KEYS - {"tim"}} == {
        "lon": 10,
        "lat": 20,
        "gcs": "",
        **zeros,
    }
    assert ISO.match(moved["tim"])  # stamped by the server when the client sends none
    assert moved["tim"] != first["tim"]

    client.ok(_obj("upd", "x", loc={"lon": 1, "lat": 1, "time": "2025-05-05T05:05:05Z"}))
    assert client.ok(_obj("rea", "x"))["loc"]["tim"] == "2025-05-05T05:05:05Z"

    client.ok(_obj("upd", "x", tds=["t3"]))  # tds replaces
    client.ok(_obj("upd", "x", lab="M"))
    final = client.ok(_obj("rea", "x"))
    assert (final["lab"], final["dat"], final["tds"]) == ("M", {"a": 1, "c": 3}, ["t3"])

    assert _error(client, _obj("upd", "nope", lab="x")) == (404, "unknown object nope")
    assert _error(client, _obj("upd", "x", dat="no")) == (400, "dat must be an object")
    assert client.ok(_obj("rea", "x"))["dat"] == {"a": 1, "c": 3}  # unchanged


def test_object_delete(client: Client) -> None:
    client.ok(_realm("cre", "r"))
    for object_id in ("a", "b", "c"):
        client.ok(_obj("cre", object_id))
    client.ok(_obj("del", "b"))
    assert _error(client, _obj("rea", "b")) == (404, "unknown object b")
    assert _error(client, _obj("del", "b")) == (404, "unknown object b")
    assert list(client.ok(_obj("lis"))) == ["a", "c"]
    client.ok(_obj("cre", "b"))  # back, at the end of the creation order
    assert list(client.ok(_obj("lis"))) == ["a", "c", "b"]


@pytest.fixture
def places(driver: HubDriver, client: Client) -> Client:
    """Objects around (0, 0); ``p1`` has a live provider."""
    client.ok(_realm("cre", "r"))
    objects = {
        "p1": ((0.0, 0.0), {"type": "rider", "speed": 10, "name": "Ann"}),
        "p2": ((0.001, 0.0), {"type": "rider", "speed": 3}),  # ~111 m east of p1
        "p3": ((1.0, 1.0), {"type": "car", "speed": 50}),
        "p4": ((-0.5, 0.5), {"type": "car"}),
    }
    for object_id, ((lon, lat), data) in objects.items():
        location = {"lon": lon, "lat": lat}
        client.ok(_obj("cre", object_id, lab=object_id.upper(), loc=location, dat=data))
    client.ok(watch_presence("r"))
    driver.connect(mint("p", dpv={"r": ["p1"]}))
    assert presence_events(client.take()) == [("r", "p1", "con")]
    return client


def _ids(client: Client, **options: Any) -> list[str]:
    listed = client.ok(_obj("lis", dat=options) if options else _obj("lis"))
    return list(listed)


def test_list_shape_of_entries(places: Client) -> None:
    listed = places.ok(_obj("lis"))
    assert list(listed) == ["p1", "p2", "p3", "p4"]  # creation order
    assert listed["p1"] == {"id": "p1", "lab": "P1", "cst": "con"}
    assert listed["p2"] == {"id": "p2", "lab": "P2", "cst": "dis"}


def test_list_attribute_filters(places: Client) -> None:
    assert _ids(places, atr=['type="rider"']) == ["p1", "p2"]
    assert _ids(places, atr=["type=rider", "speed>5"]) == ["p1"]
    assert _ids(places, atr=["speed>=10"]) == ["p1", "p3"]
    assert _ids(places, atr=["speed!=null"]) == ["p1", "p2", "p3"]
    assert _ids(places, atr=["speed=null"]) == ["p4"]
    assert _ids(places, atr=["$cst=con"]) == ["p1"]
    assert _ids(places, atr=["$cst=dis", "type=car"]) == ["p3", "p4"]
    assert _ids(places, atr=["$id=p2"]) == ["p2"]
    assert _ids(places, atr=['$lab="P3"']) == ["p3"]
    assert _ids(places, atr=[]) == ["p1", "p2", "p3", "p4"]
    reply = places.request(_obj("lis", dat={"atr": ["speed>>5"]}))
    assert (reply["res"], reply["erc"]) == ("err", 400)
    assert reply["err"].startswith("atr:")


def test_list_shapes(places: Client) -> None:
    rectangle = {"x1": -0.1, "y1": -0.1, "x2": 0.001, "y2": 0.1}  # p2 sits on the edge
    assert _ids(places, sha=rectangle) == ["p1", "p2"]
    assert _ids(places, sha={"cx": 0, "cy": 0, "r": 50}) == ["p1"]
    assert _ids(places, sha={"cx": 0, "cy": 0, "r": 200}) == ["p1", "p2"]
    square = [{"x": -1, "y": 0.2}, {"x": 0, "y": 0.2}, {"x": 0, "y": 1}, {"x": -1, "y": 1}]
    assert _ids(places, sha={"points": square}) == ["p4"]
    concave = [
        {"x": -1, "y": -1},
        {"x": 2, "y": -1},
        {"x": 2, "y": 2},
        {"x": 0.5, "y": 0.1},
        {"x": -1, "y": 2},
    ]
    # the notch cut from the top holds p3, which the convex hull would include
    assert _ids(places, sha={"points": concave}) == ["p1", "p2", "p4"]
    assert _ids(places, sha=rectangle, atr=["speed>5"]) == ["p1"]
    for bad in ({"x1": 0}, {"cx": 0, "cy": 0, "r": 1, "x1": 0}, "rect"):
        reply = places.request(_obj("lis", dat={"sha": bad}))
        assert (reply["res"], reply["erc"]) == ("err", 400), bad


def test_list_fields(places: Client) -> None:
    listed = places.ok(_obj("lis", dat={"fie": ["type", "name"], "atr": ["type=rider"]}))
    assert listed == {
        "p1": {"id": "p1", "lab": "P1", "cst": "con", "dat": {"type": "rider", "name": "Ann"}},
        "p2": {"id": "p2", "lab": "P2", "cst": "dis", "dat": {"type": "rider"}},
    }
    assert places.request(_obj("lis", dat={"fie": "type"}))["erc"] == 400
