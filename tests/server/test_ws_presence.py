"""Presence over real sockets: providers bring objects online, events reach readers.

Each test runs a real server on port 0 and real WebSocket clients. "Nothing more arrives" is
shown with a marker round trip on the reader (`RawClient.marker`), never with a sleep.
"""

from __future__ import annotations

import asyncio
import time

from hivectl.client import HivekitClient
from server.io.app import HivekitServer
from tests.conftest import Mint, running
from tests.server.wsutil import RawClient, eventually, is_status, subscribe_msg

GATEWAY_OBJECTS = 1000


async def _objects(admin: RawClient, realm: str, *ids: str) -> None:
    for object_id in ids:
        await admin.ok({"typ": "obj", "act": "cre", "rea": realm, "id": object_id})


async def _status(client: RawClient, realm: str, object_id: str) -> str:
    value = await client.ok({"typ": "obj", "act": "rea", "rea": realm, "id": object_id})
    status: str = value["cst"]
    return status


async def _explain(client: RawClient, realm: str, object_id: str) -> dict:
    result: dict = await client.ok({"typ": "sys", "act": "pre", "rea": realm, "id": object_id})
    return result


async def test_provider_brings_object_online_and_takes_it_offline(
    server: HivekitServer, token: Mint
) -> None:
    async with HivekitClient(server.ws_url, token("admin"), reconnect=False) as admin:
        city = await admin.realm.create("city")
        events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        await city.pubsub.subscribe(
            "connectionStatusChanged", lambda data, oid: events.put_nowait((oid, data))
        )
        await city.object.create("car/1")
        await city.object.create("bike/1")
        await admin.system.heartbeat()  # marker: creations with no provider published nothing
        assert events.empty()
        assert (await city.object.get("car/1")).connection_status == "disconnected"

        provider = HivekitClient(
            server.ws_url, token("car-gw", dpv={"city": ["car/*"]}), reconnect=False
        )
        await provider.connect()
        async with asyncio.timeout(5):
            assert await events.get() == ("car/1", {"cst": "con"})
        car = await city.object.get("car/1")
        assert car.cst == "con"
        assert car.connection_status == "connected"
        assert (await city.object.get("bike/1")).cst == "dis"

        await provider.close()
        async with asyncio.timeout(5):
            assert await events.get() == ("car/1", {"cst": "dis"})
        assert (await city.object.get("car/1")).cst == "dis"
        await admin.system.heartbeat()
        assert events.empty()  # bike/1 never moved
        explained = await admin.system.presence("city", "car/1")
        assert explained["cst"] == "dis"
        assert explained["providers"] == []
        assert explained["lastReason"] == "closed"


async def test_multi_device_publishes_first_arrival_and_last_departure_only(
    server: HivekitServer, token: Mint
) -> None:
    reader = await RawClient.open(server.ws_url, token("reader"))
    await reader.ok({"typ": "rea", "act": "cre", "id": "london"})
    await _objects(reader, "london", "riders/jo")
    await reader.ok(subscribe_msg("london"))
    claims = {"dpv": {"london": ["riders/jo"]}}

    phone = await RawClient.open(server.ws_url, token("jo", jti="phone", **claims))
    await reader.wait_for(is_status("riders/jo", "con"))
    assert await _status(reader, "london", "riders/jo") == "con"

    watch = await RawClient.open(server.ws_url, token("jo", jti="watch", **claims))
    await reader.marker()  # the watch's arrival was handled before its auth reply
    assert reader.statuses() == [("london", "riders/jo", "con")]
    assert {p["jti"] for p in (await _explain(reader, "london", "riders/jo"))["providers"]} == {
        "phone",
        "watch",
    }

    await phone.close()

    async def one_provider_left() -> bool:
        return len((await _explain(reader, "london", "riders/jo"))["providers"]) == 1

    await eventually(one_provider_left)
    await reader.marker()
    assert reader.statuses() == [("london", "riders/jo", "con")]
    assert await _status(reader, "london", "riders/jo") == "con"

    await watch.close()
    await reader.wait_for(is_status("riders/jo", "dis"))
    await reader.marker()
    assert reader.statuses() == [
        ("london", "riders/jo", "con"),
        ("london", "riders/jo", "dis"),
    ]
    assert await _status(reader, "london", "riders/jo") == "dis"
    await reader.close()


async def test_gateway_over_a_thousand_objects(server: HivekitServer, token: Mint) -> None:
    ids = [f"fleet/{n:04}" for n in range(GATEWAY_OBJECTS)]
    admin = await RawClient.open(server.ws_url, token("admin"))
    await admin.ok({"typ": "rea", "act": "cre", "id": "depot"})
    for start in range(0, GATEWAY_OBJECTS, 250):
        await admin.send(
            [
                {"typ": "obj", "act": "set", "rea": "depot", "id": oid}
                for oid in ids[start : start + 250]
            ]
        )
    await _objects(admin, "depot", "fleetx", "other/1")
    listed = await admin.ok({"typ": "obj", "act": "lis", "rea": "depot"})
    assert list(listed) == [*ids, "fleetx", "other/1"]
    assert {entry["cst"] for entry in listed.values()} == {"dis"}

    reader = await RawClient.open(server.ws_url, token("reader"))
    await reader.ok(subscribe_msg("depot", idp="fleet*"))

    gateway = await RawClient.open(server.ws_url, token("gw", dpv={"depot": ["fleet/*"]}))
    online = await reader.wait_count(is_status(cst="con"), GATEWAY_OBJECTS)
    await reader.marker()
    assert len(reader.statuses()) == GATEWAY_OBJECTS
    assert [m["dat"]["idp"] for m in online] == ids
    listed = await reader.ok({"typ": "obj", "act": "lis", "rea": "depot"})
    assert all(listed[oid]["cst"] == "con" for oid in ids)
    assert listed["fleetx"]["cst"] == "dis"
    assert listed["other/1"]["cst"] == "dis"
    count = await reader.ok({"typ": "sys", "act": "pre", "rea": "depot", "dat": {"idp": "fleet/*"}})
    assert count == {"connected": GATEWAY_OBJECTS, "disconnected": 0}
    assert await _status(reader, "depot", ids[-1]) == "con"

    await gateway.close()
    offline = await reader.wait_count(is_status(cst="dis"), GATEWAY_OBJECTS)
    await reader.marker()
    assert len(reader.statuses()) == 2 * GATEWAY_OBJECTS
    assert sorted(m["dat"]["idp"] for m in offline) == ids
    listed = await reader.ok({"typ": "obj", "act": "lis", "rea": "depot"})
    assert {entry["cst"] for entry in listed.values()} == {"dis"}
    count = await reader.ok({"typ": "sys", "act": "pre", "rea": "depot", "dat": {"idp": "*"}})
    assert count == {"connected": 0, "disconnected": GATEWAY_OBJECTS + 2}
    await reader.close()
    await admin.close()


async def test_coverage_is_dynamic_for_new_objects_and_new_realms(
    server: HivekitServer, token: Mint
) -> None:
    provider = await RawClient.open(server.ws_url, token("gw", dpv={"*": ["car/*"]}))
    admin = await RawClient.open(server.ws_url, token("admin"))
    await admin.ok({"typ": "rea", "act": "cre", "id": "late"})  # created after the provider
    await admin.ok(subscribe_msg("late"))

    await admin.ok({"typ": "obj", "act": "cre", "rea": "late", "id": "car/9"})
    await admin.wait_for(is_status("car/9", "con"))
    assert await _status(admin, "late", "car/9") == "con"

    # set creates too; an object outside the dpv pattern stays disconnected, silently
    await admin.send([{"typ": "obj", "act": "set", "rea": "late", "id": "car/10"}])
    await admin.ok({"typ": "obj", "act": "cre", "rea": "late", "id": "bike/1"})
    await admin.wait_for(is_status("car/10", "con"))
    assert await _status(admin, "late", "bike/1") == "dis"

    # updating a connected object or deleting it publishes nothing
    await admin.ok({"typ": "obj", "act": "upd", "rea": "late", "id": "car/9", "dat": {"k": 1}})
    await admin.ok({"typ": "obj", "act": "del", "rea": "late", "id": "car/9"})
    await admin.marker()
    assert admin.statuses() == [("late", "car/9", "con"), ("late", "car/10", "con")]

    await provider.close()
    await admin.wait_for(is_status("car/10", "dis"))
    await admin.marker()
    assert admin.statuses()[2:] == [("late", "car/10", "dis")]
    await admin.close()


async def test_silent_provider_is_declared_gone_by_the_ping_timeout(token: Mint) -> None:
    settings = {"limits.ping_interval": 0.2, "limits.ping_timeout": 0.3}
    async with running(settings) as server:
        reader = await RawClient.open(server.ws_url, token("reader"))
        await reader.ok({"typ": "rea", "act": "cre", "id": "r"})
        await _objects(reader, "r", "sensor/1")
        await reader.ok(subscribe_msg("r"))
        provider = await RawClient.open(server.ws_url, token("s1", dpv={"r": ["sensor/1"]}))
        await reader.wait_for(is_status("sensor/1", "con"))

        assert provider.ws.transport is not None
        provider.ws.transport.pause_reading()  # no close frame, no pong: a dead network
        await reader.wait_for(is_status("sensor/1", "dis"))
        explained = await _explain(reader, "r", "sensor/1")
        assert explained["cst"] == "dis"
        assert explained["lastReason"] == "timeout"
        assert explained["providers"] == []
        assert "lastDisconnectedAt" in explained
        await reader.marker()
        assert reader.statuses() == [("r", "sensor/1", "con"), ("r", "sensor/1", "dis")]

        provider.ws.transport.abort()
        await provider.wait_closed()
        await reader.close()


async def test_grace_period_hides_a_quick_reconnect_and_ends_with_one_event(
    token: Mint,
) -> None:
    async with running({"presence.grace": 0.8}) as server:
        reader = await RawClient.open(server.ws_url, token("reader"))
        await reader.ok({"typ": "rea", "act": "cre", "id": "r"})
        await _objects(reader, "r", "rider/1")
        await reader.ok(subscribe_msg("r"))
        claims = {"dpv": {"r": ["rider/1"]}}

        first = await RawClient.open(server.ws_url, token("rider", **claims))
        await reader.wait_for(is_status("rider/1", "con"))
        await first.close()

        async def in_grace() -> bool:
            explained = await _explain(reader, "r", "rider/1")
            return not explained["providers"] and "graceUntil" in explained

        await eventually(in_grace)
        assert await _status(reader, "r", "rider/1") == "con"  # still connected in the grace

        second = await RawClient.open(server.ws_url, token("rider", **claims))
        explained = await _explain(reader, "r", "rider/1")
        assert explained["cst"] == "con"
        assert "graceUntil" not in explained
        assert len(explained["providers"]) == 1
        await reader.marker()
        assert reader.statuses() == [("r", "rider/1", "con")]  # the reconnect published nothing

        await second.close()
        await eventually(in_grace)
        dis = await reader.wait_for(is_status("rider/1", "dis"))
        assert dis["rea"] == "r"
        await reader.marker()
        assert reader.statuses() == [("r", "rider/1", "con"), ("r", "rider/1", "dis")]
        explained = await _explain(reader, "r", "rider/1")
        assert explained["cst"] == "dis"
        assert explained["lastReason"] == "closed"
        assert "graceUntil" not in explained
        await reader.close()


async def test_reauth_with_a_changed_dpv_moves_only_the_difference(
    server: HivekitServer, token: Mint
) -> None:
    reader = await RawClient.open(server.ws_url, token("reader"))
    await reader.ok({"typ": "rea", "act": "cre", "id": "r"})
    await _objects(reader, "r", "a/1", "a/2", "b/1")
    await reader.ok(subscribe_msg("r"))

    provider = await RawClient.open(server.ws_url, token("p", dpv={"r": ["a/1", "b/1"]}))
    await reader.wait_count(is_status(cst="con"), 2)
    reply = await provider.auth(token("p", dpv={"r": ["a/*"]}))
    assert reply["res"] == "suc"
    await reader.wait_for(is_status("a/2", "con"))
    await reader.wait_for(is_status("b/1", "dis"))
    await reader.marker()
    assert sorted(reader.statuses()) == [
        ("r", "a/1", "con"),
        ("r", "a/2", "con"),
        ("r", "b/1", "con"),
        ("r", "b/1", "dis"),
    ]  # a/1 stayed covered: no flap
    explained = await _explain(reader, "r", "b/1")
    assert explained["lastReason"] == "reauth"
    await provider.close()
    await reader.close()


async def test_token_expiry_closes_with_4001_and_records_expired(token: Mint) -> None:
    async with running({}) as server:
        reader = await RawClient.open(server.ws_url, token("reader"))
        await reader.ok({"typ": "rea", "act": "cre", "id": "r"})
        await _objects(reader, "r", "x")
        await reader.ok(subscribe_msg("r"))
        short = token("p", dpv={"r": ["x"]}, ttl=None, exp=time.time() + 0.5)
        provider = await RawClient.open(server.ws_url, short)
        await reader.wait_for(is_status("x", "con"))
        await provider.wait_closed()
        assert provider.ws.close_code == 4001
        assert provider.ws.close_reason == "token expired"
        await reader.wait_for(is_status("x", "dis"))
        assert (await _explain(reader, "r", "x"))["lastReason"] == "expired"
        await reader.close()
