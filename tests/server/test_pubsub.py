"""Realm pub/sub over real sockets (protocol.md §6.4)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hivectl.client import HivekitClient, HivekitError
from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient, eventually, subscribe_msg


def _pub(realm: str, event: str, object_id: str, data: Any = None) -> dict[str, Any]:
    return {
        "typ": "rea",
        "act": "pub",
        "id": realm,
        "dat": {"eve": event, "idp": object_id, "dat": data},
    }


def _uns(realm: str, event: str, idp: str) -> dict[str, Any]:
    return {**subscribe_msg(realm, event, idp), "act": "uns"}


@pytest.fixture
async def client(server: HivekitServer, token: Mint) -> Any:
    raw = await RawClient.open(server.ws_url, token("admin"))
    await raw.ok({"typ": "rea", "act": "cre", "id": "r"})
    yield raw
    await raw.close()


async def test_each_matching_subscription_gets_its_own_push(client: RawClient) -> None:
    await client.ok(subscribe_msg("r", "e", "*"))
    await client.ok(subscribe_msg("r", "e", "a"))
    await client.ok(subscribe_msg("r", "e", "a"))  # the same subscription again: still one
    await client.ok(subscribe_msg("r", "other", "*"))

    await client.ok(_pub("r", "e", "a", {"n": 1}))
    await client.ok(_pub("r", "e", "b", {"n": 2}))
    await client.marker()
    pushes = client.pushes("e")
    delivered = sorted((m["sid"], m["dat"]["idp"]) for m in pushes)
    assert delivered == [("*", "a"), ("*", "b"), ("a", "a")]
    for push in pushes:
        assert set(push) == {"typ", "act", "rea", "sid", "dat"}
        assert (push["typ"], push["act"], push["rea"]) == ("rea", "pub", "r")
        expected = {"n": 1 if push["dat"]["idp"] == "a" else 2}
        assert push["dat"] == {"eve": "e", "idp": push["dat"]["idp"], "dat": expected}
    assert client.pushes("other") == []

    await client.ok(_uns("r", "e", "*"))
    await client.ok(_pub("r", "e", "a", 3))
    await client.ok(_pub("r", "e", "b", 4))
    await client.marker()
    assert [(m["sid"], m["dat"]["dat"]) for m in client.pushes("e")[3:]] == [("a", 3)]

    await client.ok(_uns("r", "e", "a"))
    await client.ok(_uns("r", "e", "a"))  # unsubscribing again is harmless
    await client.ok(_pub("r", "e", "a", 5))
    await client.marker()
    assert len(client.pushes("e")) == 4


async def test_other_subscribers_get_events_in_publish_order(
    server: HivekitServer, client: RawClient, token: Mint
) -> None:
    listener = await RawClient.open(server.ws_url, token("listener"))
    await listener.ok(subscribe_msg("r", "tick", "sensor/*"))
    await client.send([_pub("r", "tick", "sensor/1", n) for n in range(30)])
    await client.ok(_pub("r", "tick", "elsewhere", "x"))  # outside the pattern
    await client.ok(_pub("r", "tick", "sensor/2", "last"))
    await listener.wait_for(lambda m: m.get("dat", {}).get("dat") == "last")
    await listener.marker()
    payloads = [m["dat"]["dat"] for m in listener.pushes("tick")]
    assert payloads == [*range(30), "last"]
    assert all(m["sid"] == "sensor/*" for m in listener.pushes("tick"))
    await listener.close()


async def test_published_ids_are_literal_and_patterns_match_them(client: RawClient) -> None:
    await client.ok(subscribe_msg("r", "e", "a"))
    await client.ok(subscribe_msg("r", "e", "a?[x]*"))
    await client.ok(_pub("r", "e", "a*", 1))  # not "a": an id is never a pattern
    await client.ok(_pub("r", "e", "a?[x]/anything", 2))
    await client.ok(_pub("r", "e", "ab[x]", 3))  # ? and [ ] are literal in patterns
    await client.marker()
    assert [(m["sid"], m["dat"]["dat"]) for m in client.pushes("e")] == [("a?[x]*", 2)]


async def test_clients_may_not_publish_presence(client: RawClient) -> None:
    await client.ok(subscribe_msg("r"))
    reply = await client.request(_pub("r", "connectionStatusChanged", "x", {"cst": "con"}))
    assert reply["res"] == "err"
    assert reply["erc"] == 403
    assert reply["err"] == "connectionStatusChanged is published by the server only"
    await client.marker()
    assert client.pushes() == []


async def test_pubsub_errors(client: RawClient) -> None:
    cases = [
        (subscribe_msg("nowhere"), 404, "unknown realm nowhere"),
        (_pub("nowhere", "e", "x"), 404, "unknown realm nowhere"),
        ({"typ": "rea", "act": "sub", "id": "r", "dat": {"eve": ""}}, 400,
         "dat.eve must be a non-empty string"),
        ({"typ": "rea", "act": "sub", "id": "r"}, 400, "dat must be an object"),
        ({"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e"}}, 400,
         "dat.idp must be a string"),
        ({"typ": "rea", "act": "sub", "id": "r", "dat": {"eve": "e", "idp": 3}}, 400,
         "dat.idp must be a string"),
    ]  # fmt: skip
    for message, code, text in cases:
        reply = await client.request(message)
        assert (reply["erc"], reply["err"]) == (code, text)
    await client.ok({"typ": "sys", "act": "hbt"})


async def test_subscriptions_end_with_their_connection(
    server: HivekitServer, client: RawClient, token: Mint
) -> None:
    listener = await RawClient.open(server.ws_url, token("listener"))
    await listener.ok(subscribe_msg("r", "e"))
    stats = await client.ok({"typ": "sys", "act": "sta"})
    assert stats["pubsubSubscriptions"] == 1
    await listener.close()

    async def dropped() -> bool:
        return (await client.ok({"typ": "sys", "act": "sta"}))["pubsubSubscriptions"] == 0

    await eventually(dropped)
    again = await RawClient.open(server.ws_url, token("listener"))
    await again.ok(subscribe_msg("r", "e"))  # the same subscription on a new connection
    await client.ok(_pub("r", "e", "x", 1))
    await again.wait_for(lambda m: m.get("sid") == "*")
    await again.close()


async def test_client_library_pubsub_and_resubscribe_after_reconnect(
    server: HivekitServer, token: Mint
) -> None:
    async with (
        HivekitClient(server.ws_url, token("pub"), reconnect=False) as publisher,
        HivekitClient(server.ws_url, token("sub"), reconnect_delay=0.05) as subscriber,
    ):
        realm = await publisher.realm.create("city")
        received: asyncio.Queue[tuple[Any, str]] = asyncio.Queue()
        city = subscriber.realm.handle("city")
        await city.pubsub.subscribe(
            "alert", lambda data, oid: received.put_nowait((data, oid)), id_pattern="zone/*"
        )
        await realm.pubsub.publish("alert", "zone/1", {"level": 2})
        async with asyncio.timeout(5):
            assert await received.get() == ({"level": 2}, "zone/1")

        with pytest.raises(HivekitError) as denied:
            await realm.pubsub.publish("connectionStatusChanged", "zone/1", {"cst": "con"})
        assert denied.value.code == 403

        ws = subscriber.connection._ws
        assert ws is not None and ws.transport is not None
        ws.transport.abort()  # the network drops; the client reconnects and resubscribes

        async def resubscribed() -> bool:
            if subscriber.connection.reconnects != 1:
                return False
            stats = await publisher.system.stats()
            # two connections once the dropped one is gone: the subscription is the new one's
            return (stats["connections"], stats["pubsubSubscriptions"]) == (2, 1)

        await eventually(resubscribed)
        await realm.pubsub.publish("alert", "zone/2", {"level": 3})
        async with asyncio.timeout(5):
            assert await received.get() == ({"level": 3}, "zone/2")

        await city.pubsub.unsubscribe("alert", "zone/*")
        await realm.pubsub.publish("alert", "zone/3", {"level": 4})
        await subscriber.system.heartbeat()
        stats = await publisher.system.stats()
        assert stats["pubsubSubscriptions"] == 0
        assert received.empty()
