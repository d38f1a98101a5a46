"""Realm and object actions over real sockets (protocol.md §6.1, §6.2).

What each action answers and what a realm or object holds afterwards is tested on the
hub, without sockets (`tests.protocol.test_actions`). These tests need a real server: the
real client (`hivectl.client.HivekitClient`) round trips, which speak to it over a
WebSocket, and one exchange of raw frames that takes realm and object actions through the
socket path (the HTTP upgrade, text frames in and out, the shell's unit of work).
"""

from __future__ import annotations

import pytest

from hivectl.client import HivekitClient, HivekitError
from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient


async def test_realm_and_object_actions_end_to_end(server: HivekitServer, token: Mint) -> None:
    client = await RawClient.open(server.ws_url, token("admin"))
    await client.ok({"typ": "rea", "act": "cre", "id": "r", "lab": "R"})
    await client.ok(
        {"typ": "obj", "act": "cre", "rea": "r", "id": "x", "loc": {"lon": 1, "lat": 2}}
    )
    await client.ok({"typ": "obj", "act": "upd", "rea": "r", "id": "x", "dat": {"a": 1}})
    read = await client.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "x"})
    assert (read["id"], read["dat"]) == ("x", {"a": 1})
    assert (read["loc"]["lon"], read["loc"]["lat"]) == (1, 2)
    assert await client.ok({"typ": "obj", "act": "lis", "rea": "r"}) == {
        "x": {"id": "x", "lab": "", "cst": "dis"}
    }
    await client.ok({"typ": "obj", "act": "del", "rea": "r", "id": "x"})
    missing = await client.request({"typ": "obj", "act": "rea", "rea": "r", "id": "x"})
    assert (missing["res"], missing["erc"], missing["err"]) == ("err", 404, "unknown object x")
    assert await client.ok({"typ": "rea", "act": "lis"}) == {"r": {"id": "r", "lab": "R"}}
    await client.close()


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
