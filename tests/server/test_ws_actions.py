"""Realm and object actions over real sockets (protocol.md §6.1, §6.2)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hivectl.client import HivekitClient, HivekitError
from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient, is_status, subscribe_msg

LOCATION_KEYS = {"lon", "lat", "acc", "spe", "hea", "alt", "alc", "gcs", "tim"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
async def client(server: HivekitServer, token: Mint) -> Any:
    raw = await RawClient.open(server.ws_url, token("admin"))
    yield raw
    await raw.close()


def _realm(act: str, realm_id: str, **fields: Any) -> dict[str, Any]:
    return {"typ": "rea", "act": act, "id": realm_id, **fields}


def _obj(act: str, object_id: str | None = None, **fields: Any) -> dict[str, Any]:
    message = {"typ": "obj", "act": act, "rea": "r", **fields}
    if object_id is not None:
        message["id"] = object_id
    return message


async def _error(client: RawClient, message: dict[str, Any]) -> tuple[int, str]:
    reply = await client.request(message)
    assert reply["res"] == "err", reply
    return reply["erc"], reply["err"]


# -- realms ------------------------------------------------------------------------------


async def test_realm_create_read_list(client: RawClient) -> None:
    await client.ok(_realm("cre", "london", lab="London", dat={"tz": "GMT"}))
    await client.ok(_realm("cre", "paris"))
    assert await _error(client, _realm("cre", "london")) == (
        409,
        "realm with id london already exists",
    )
    assert await client.ok(_realm("rea", "london")) == {
        "id": "london",
        "lab": "London",
        "dat": {"tz": "GMT"},
    }
    assert await client.ok(_realm("rea", "paris")) == {"id": "paris", "lab": "", "dat": {}}
    assert await _error(client, _realm("rea", "nope")) == (404, "unknown realm nope")
    listed = await client.ok({"typ": "rea", "act": "lis"})
    assert listed == {
        "london": {"id": "london", "lab": "London"},
        "paris": {"id": "paris", "lab": ""},
    }
    assert list(listed) == ["london", "paris"]


async def test_realm_update_merges_data(client: RawClient) -> None:
    await client.ok(_realm("cre", "r", lab="old", dat={"a": 1, "b": 2}))
    await client.ok(_realm("upd", "r", dat={"b": None, "c": {"x": 1}}))
    assert await client.ok(_realm("rea", "r")) == {
        "id": "r",
        "lab": "old",
        "dat": {"a": 1, "c": {"x": 1}},
    }
    await client.ok(_realm("upd", "r", lab="new"))
    assert await client.ok(_realm("rea", "r")) == {
        "id": "r",
        "lab": "new",
        "dat": {"a": 1, "c": {"x": 1}},
    }
    assert await _error(client, _realm("upd", "nope", lab="x")) == (404, "unknown realm nope")
    assert await _error(client, _realm("upd", "r", dat=[1])) == (400, "dat must be an object")
    assert (await client.ok(_realm("rea", "r")))["dat"] == {"a": 1, "c": {"x": 1}}


async def test_realm_delete_removes_its_objects_and_subscriptions(
    server: HivekitServer, client: RawClient, token: Mint
) -> None:
    await client.ok(_realm("cre", "r"))
    await client.ok(_obj("cre", "x"))
    listener = await RawClient.open(server.ws_url, token("listener"))
    await listener.ok(subscribe_msg("r", "e"))

    await client.ok(_realm("del", "r"))
    assert await _error(client, _realm("rea", "r")) == (404, "unknown realm r")
    assert await _error(client, _obj("rea", "x")) == (404, "unknown realm r")
    assert await _error(client, _realm("del", "r")) == (404, "unknown realm r")
    assert await client.ok({"typ": "rea", "act": "lis"}) == {}

    await client.ok(_realm("cre", "r"))  # a new realm of the same name starts empty
    assert await client.ok(_obj("lis")) == {}
    await client.ok({"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e", "idp": "x"}})
    await listener.marker()
    assert listener.pushes() == []  # the old subscription ended with the realm
    stats = await client.ok({"typ": "sys", "act": "sta"})
    assert (stats["realms"], stats["objects"], stats["pubsubSubscriptions"]) == (1, 0, 0)
    await listener.close()


async def test_realm_api_of_the_client(server: HivekitServer, token: Mint) -> None:
    async with HivekitClient(server.ws_url, token("admin"), reconnect=False) as client:
        await client.realm.create("r", "Realm", {"k": 1})
        realm = await client.realm.get("r")
        assert (realm.id, realm.lab, realm.dat) == ("r", "Realm", {"k": 1})
        await client.realm.update("r", dat={"k": None, "j": 2})
        assert (await client.realm.get("r")).dat == {"j": 2}
        assert await client.realm.list() == {"r": {"id": "r", "lab": "Realm"}}
        with pytest.raises(HivekitError) as conflict:
            await client.realm.create("r")
        assert conflict.value.code == 409
        await client.realm.delete("r")
        with pytest.raises(HivekitError) as missing:
            await client.realm.get("r")
        assert (missing.value.code, missing.value.text) == (404, "unknown realm r")


# -- objects -----------------------------------------------------------------------------


async def test_object_create_and_read(client: RawClient) -> None:
    await client.ok(_realm("cre", "r"))
    await client.ok(_obj("cre", "x"))
    bare = await client.ok(_obj("rea", "x"))
    assert set(bare) == {"id", "lab", "loc", "dat", "cst", "tds"}
    assert set(bare["loc"]) == LOCATION_KEYS
    assert bare["id"] == "x"
    assert (bare["lab"], bare["dat"], bare["cst"], bare["tds"]) == ("", {}, "dis", [])
    assert {k: v for k, v in bare["loc"].items() if k not in ("gcs", "tim")} == dict.fromkeys(
        LOCATION_KEYS - {"gcs", "tim"}, 0
    )
    assert bare["loc"]["gcs"] == ""

    location = {"lon": -0.1, "lat": 51.5, "acc": 5, "gcs": "wgs84", "tim": "2024-01-01T00:00:00Z"}
    await client.ok(_obj("cre", "y", lab="Y", loc=location, dat={"a": 1}, tds=["t1"]))
    created = await client.ok(_obj("rea", "y"))
    assert created["loc"] == {**location, "spe": 0, "hea": 0, "alt": 0, "alc": 0}
    assert (created["lab"], created["dat"], created["tds"]) == ("Y", {"a": 1}, ["t1"])

    # cre on an existing id succeeds and updates with the merge rules
    await client.ok(_obj("cre", "y", dat={"b": 2, "a": None}, lab="Y2"))
    updated = await client.ok(_obj("rea", "y"))
    assert (updated["lab"], updated["dat"], updated["tds"]) == ("Y2", {"b": 2}, ["t1"])
    assert updated["loc"] == created["loc"]
    assert await _error(client, _obj("rea", "nope")) == (404, "unknown object nope")
    assert await _error(client, {**_obj("rea", "x"), "rea": "nope"}) == (404, "unknown realm nope")


async def test_object_update_is_partial(client: RawClient) -> None:
    await client.ok(_realm("cre", "r"))
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
    await client.ok(_obj("cre", "x", lab="L", loc=first, dat={"a": 1, "b": 2}, tds=["t1", "t2"]))

    await client.ok(_obj("upd", "x", dat={"b": None, "c": 3}))
    after = await client.ok(_obj("rea", "x"))
    assert after["loc"] == first
    assert (after["lab"], after["dat"], after["tds"]) == ("L", {"a": 1, "c": 3}, ["t1", "t2"])

    await client.ok(_obj("upd", "x", loc={"lon": 10, "lat": 20}))  # loc replaces as a whole
    moved = (await client.ok(_obj("rea", "x")))["loc"]
    zeros = dict.fromkeys(("acc", "spe", "hea", "alt", "alc"), 0)
    assert {k: moved[k] for k in LOCATION_KEYS - {"tim"}} == {
        "lon": 10,
        "lat": 20,
        "gcs": "",
        **zeros,
    }
    assert ISO.match(moved["tim"])  # stamped by the server when the client sends none
    assert moved["tim"] != first["tim"]

    await client.ok(_obj("upd", "x", loc={"lon": 1, "lat": 1, "time": "2025-05-05T05:05:05Z"}))
    assert (await client.ok(_obj("rea", "x")))["loc"]["tim"] == "2025-05-05T05:05:05Z"

    await client.ok(_obj("upd", "x", tds=["t3"]))  # tds replaces
    await client.ok(_obj("upd", "x", lab="M"))
    final = await client.ok(_obj("rea", "x"))
    assert (final["lab"], final["dat"], final["tds"]) == ("M", {"a": 1, "c": 3}, ["t3"])

    assert await _error(client, _obj("upd", "nope", lab="x")) == (404, "unknown object nope")
    assert await _error(client, _obj("upd", "x", dat="no")) == (400, "dat must be an object")
    assert (await client.ok(_obj("rea", "x")))["dat"] == {"a": 1, "c": 3}  # unchanged


async def test_object_delete(client: RawClient) -> None:
    await client.ok(_realm("cre", "r"))
    for object_id in ("a", "b", "c"):
        await client.ok(_obj("cre", object_id))
    await client.ok(_obj("del", "b"))
    assert await _error(client, _obj("rea", "b")) == (404, "unknown object b")
    assert await _error(client, _obj("del", "b")) == (404, "unknown object b")
    assert list(await client.ok(_obj("lis"))) == ["a", "c"]
    await client.ok(_obj("cre", "b"))  # back, at the end of the creation order
    assert list(await client.ok(_obj("lis"))) == ["a", "c", "b"]


@pytest.fixture
async def places(client: RawClient, server: HivekitServer, token: Mint) -> Any:
    """Objects around (0, 0); ``p1`` has a live provider."""
    await client.ok(_realm("cre", "r"))
    objects = {
        "p1": ((0.0, 0.0), {"type": "rider", "speed": 10, "name": "Ann"}),
        "p2": ((0.001, 0.0), {"type": "rider", "speed": 3}),  # ~111 m east of p1
        "p3": ((1.0, 1.0), {"type": "car", "speed": 50}),
        "p4": ((-0.5, 0.5), {"type": "car"}),
    }
    for object_id, ((lon, lat), data) in objects.items():
        location = {"lon": lon, "lat": lat}
        await client.ok(_obj("cre", object_id, lab=object_id.upper(), loc=location, dat=data))
    await client.ok(subscribe_msg("r"))
    provider = await RawClient.open(server.ws_url, token("p", dpv={"r": ["p1"]}))
    await client.wait_for(is_status("p1", "con"))
    yield client
    await provider.close()


async def _ids(client: RawClient, **options: Any) -> list[str]:
    listed = await client.ok(_obj("lis", dat=options) if options else _obj("lis"))
    return list(listed)


async def test_list_shape_of_entries(places: RawClient) -> None:
    listed = await places.ok(_obj("lis"))
    assert list(listed) == ["p1", "p2", "p3", "p4"]  # creation order
    assert listed["p1"] == {"id": "p1", "lab": "P1", "cst": "con"}
    assert listed["p2"] == {"id": "p2", "lab": "P2", "cst": "dis"}


async def test_list_attribute_filters(places: RawClient) -> None:
    assert await _ids(places, atr=['type="rider"']) == ["p1", "p2"]
    assert await _ids(places, atr=["type=rider", "speed>5"]) == ["p1"]
    assert await _ids(places, atr=["speed>=10"]) == ["p1", "p3"]
    assert await _ids(places, atr=["speed!=null"]) == ["p1", "p2", "p3"]
    assert await _ids(places, atr=["speed=null"]) == ["p4"]
    assert await _ids(places, atr=["$cst=con"]) == ["p1"]
    assert await _ids(places, atr=["$cst=dis", "type=car"]) == ["p3", "p4"]
    assert await _ids(places, atr=["$id=p2"]) == ["p2"]
    assert await _ids(places, atr=['$lab="P3"']) == ["p3"]
    assert await _ids(places, atr=[]) == ["p1", "p2", "p3", "p4"]
    reply = await places.request(_obj("lis", dat={"atr": ["speed>>5"]}))
    assert (reply["res"], reply["erc"]) == ("err", 400)
    assert reply["err"].startswith("atr:")


async def test_list_shapes(places: RawClient) -> None:
    rectangle = {"x1": -0.1, "y1": -0.1, "x2": 0.001, "y2": 0.1}  # p2 sits on the edge
    assert await _ids(places, sha=rectangle) == ["p1", "p2"]
    assert await _ids(places, sha={"cx": 0, "cy": 0, "r": 50}) == ["p1"]
    assert await _ids(places, sha={"cx": 0, "cy": 0, "r": 200}) == ["p1", "p2"]
    square = [{"x": -1, "y": 0.2}, {"x": 0, "y": 0.2}, {"x": 0, "y": 1}, {"x": -1, "y": 1}]
    assert await _ids(places, sha={"points": square}) == ["p4"]
    concave = [
        {"x": -1, "y": -1},
        {"x": 2, "y": -1},
        {"x": 2, "y": 2},
        {"x": 0.5, "y": 0.1},
        {"x": -1, "y": 2},
    ]
    # the notch cut from the top holds p3, which the convex hull would include
    assert await _ids(places, sha={"points": concave}) == ["p1", "p2", "p4"]
    assert await _ids(places, sha=rectangle, atr=["speed>5"]) == ["p1"]
    for bad in ({"x1": 0}, {"cx": 0, "cy": 0, "r": 1, "x1": 0}, "rect"):
        reply = await places.request(_obj("lis", dat={"sha": bad}))
        assert (reply["res"], reply["erc"]) == ("err", 400), bad


async def test_list_fields(places: RawClient) -> None:
    listed = await places.ok(_obj("lis", dat={"fie": ["type", "name"], "atr": ["type=rider"]}))
    assert listed == {
        "p1": {"id": "p1", "lab": "P1", "cst": "con", "dat": {"type": "rider", "name": "Ann"}},
        "p2": {"id": "p2", "lab": "P2", "cst": "dis", "dat": {"type": "rider"}},
    }
    assert (await places.request(_obj("lis", dat={"fie": "type"})))["erc"] == 400


async def test_object_api_of_the_client(server: HivekitServer, token: Mint) -> None:
    async with HivekitClient(server.ws_url, token("admin"), reconnect=False) as client:
        realm = await client.realm.create("r")
        await realm.object.create("x", label="X", location={"lon": 1, "lat": 2}, data={"a": 1})
        await realm.object.update("x", data={"a": None, "b": 2}, task_ids=["t"])
        await realm.object.set("y", data={"c": 3})
        got = await realm.object.get("y")  # one connection: the set was handled before
        assert (got.id, got.dat, got.connection_status) == ("y", {"c": 3}, "disconnected")
        x = await realm.object.get("x")
        assert (x.lab, x.dat, x.tds, x.loc["lon"], x.loc["lat"]) == ("X", {"b": 2}, ["t"], 1, 2)
        assert list(await realm.object.list(filters=["b=2"])) == ["x"]
        box = {"x1": 0.5, "y1": 0.5, "x2": 2, "y2": 3}
        assert list(await realm.object.list(shape=box)) == ["x"]
        assert await realm.object.list(fields=["c"], filters=["$id=y"]) == {
            "y": {"id": "y", "lab": "", "cst": "dis", "dat": {"c": 3}}
        }
        await realm.object.delete("x")
        with pytest.raises(HivekitError) as missing:
            await realm.object.get("x")
        assert (missing.value.code, missing.value.text) == (404, "unknown object x")
