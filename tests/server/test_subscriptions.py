"""Object and realm subscriptions end to end: a real server on port 0, real clients.

Counts are exact. To show that nothing more arrived, each test makes one last change
whose push must arrive on the subscription (a marker) and checks that it is the next
push: pushes to one connection arrive in order, so anything caused earlier came first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from hivectl.client import HivekitClient, ObjectSubscription, Realm, SubscriptionChange
from hivectl.client.errors import HivekitError
from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import until

DEADLINE = 5.0
M_PER_DEG = 111_195.08
HERE = {"lon": 10.0, "lat": 50.0}
AWAY = {"lon": 11.0, "lat": 51.0}


class Changes:
    """An ``on_change`` callback recording each push as (kind, section, ids); a delta with
    several sections is recorded as ("dta", "cre+del", []) and read from `raw`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[str]]] = []
        self.raw: list[SubscriptionChange] = []

    def __call__(self, sub: ObjectSubscription, change: SubscriptionChange) -> None:
        self.raw.append(change)
        sections = {"cre": change.created, "upd": change.updated, "del": change.deleted}
        present = [(name, list(ids)) for name, ids in sections.items() if ids]
        if change.kind == "ful":
            self.seen.append(("ful", "cre", list(change.created)))
        elif len(present) == 1:
            self.seen.append(("dta", *present[0]))
        else:
            self.seen.append(("dta", "+".join(name for name, _ in present), []))

    async def count(self, n: int) -> list[tuple[str, str, list[str]]]:
        await until(lambda: len(self.seen) >= n, f"{n} pushes (have {self.seen})")
        return self.seen


@asynccontextmanager
async def clients(server: HivekitServer, *tokens: str) -> AsyncIterator[list[HivekitClient]]:
    opened = [HivekitClient(server.ws_url, token, reconnect_delay=0.05) for token in tokens]
    try:
        for client in opened:
            await client.connect()
        yield opened
    finally:
        for client in opened:
            await client.close()


async def realm_with(admin: HivekitClient, **objects: dict[str, float]) -> Realm:
    """Realm ``r`` with objects at the given locations."""
    realm = await admin.realm.create("r")
    for object_id, location in objects.items():
        await realm.object.create(object_id, location=location)
    return realm


def at(lon: float, lat: float) -> dict[str, float]:
    return {"lon": lon, "lat": lat}


# -- scopes -----------------------------------------------------------------------------

SCOPES: dict[str, dict[str, Any]] = {
    "rec": {"shape": {"x1": 9.99, "y1": 49.99, "x2": 10.01, "y2": 50.01}},
    "cir": {"shape": {"cx": 10.0, "cy": 50.0, "r": 1000}},
    "pol": {
        "shape": {
            "points": [{"x": 9.99, "y": 49.99}, {"x": 10.01, "y": 49.99}, {"x": 10, "y": 50.01}]
        }
    },
    "tar": {"target": {"id": "anchor", "r": 1000}},
}


@pytest.mark.parametrize("scope", sorted(SCOPES))
async def test_moving_in_within_and_out(server: HivekitServer, token: Mint, scope: str) -> None:
    async with clients(server, token(), token()) as (admin, watcher):
        realm = await realm_with(admin, anchor=HERE, m=AWAY)
        changes = Changes()
        await watcher.realm.handle("r").object.subscribe(on_change=changes, **SCOPES[scope])
        for location in (at(10.001, 50.001), at(10.002, 49.999), AWAY, at(11.5, 51)):
            await realm.object.update("m", location=location)
        await realm.object.update("anchor", data={"marker": 1})
        assert await changes.count(4) == [
            ("dta", "cre", ["m"]),
            ("dta", "upd", ["m"]),
            ("dta", "del", ["m"]),
            ("dta", "upd", ["anchor"]),
        ]


async def test_whole_realm_scope(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token(), token()) as (admin, watcher):
        realm = await realm_with(admin, anchor=HERE)
        changes = Changes()
        sub = await watcher.realm.handle("r").object.subscribe(on_change=changes)
        await realm.object.create("m", location=AWAY)
        await realm.object.update("m", location=HERE)
        await realm.object.delete("m")
        await realm.object.update("anchor", data={"marker": 1})
        assert await changes.count(4) == [
            ("dta", "cre", ["m"]),
            ("dta", "upd", ["m"]),
            ("dta", "del", ["m"]),
            ("dta", "upd", ["anchor"]),
        ]
        assert list(sub.objects) == ["anchor"]
        assert sub.objects["anchor"].dat == {"marker": 1}


async def test_circle_radius_and_concave_polygon(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token()) as (client,):
        realm = await realm_with(
            client,
            near=at(10, 50 + 69 / M_PER_DEG),
            far=at(10, 50 + 138 / M_PER_DEG),
            notch=at(1.5, 2),
            arm=at(0.5, 2),
        )
        circle = await realm.object.subscribe(
            shape={"cx": 10, "cy": 50, "r": 110}, execute_immediately=True
        )
        u_shape = [(0, 0), (3, 0), (3, 3), (2, 3), (2, 1), (1, 1), (1, 3), (0, 3)]
        polygon = await realm.object.subscribe(
            shape={"points": [{"x": x, "y": y} for x, y in u_shape]}, execute_immediately=True
        )
        await until(lambda: bool(circle.objects) and bool(polygon.objects))
        assert list(circle.objects) == ["near"]
        assert list(polygon.objects) == ["arm"]


async def test_target_subscription_follows_the_target(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token(), token()) as (admin, watcher):
        realm = await realm_with(admin, rider=at(10, 50), p1=at(10, 50.001), p2=at(11, 50.001))
        changes = Changes()
        sub = await watcher.realm.handle("r").object.subscribe(
            target={"id": "rider", "r": 200},
            where=['$id!="rider"'],
            execute_immediately=True,
            on_change=changes,
        )
        assert await changes.count(1) == [("ful", "cre", ["p1"])]
        await realm.object.update("rider", location=at(11, 50))
        assert (await changes.count(2))[1] == ("dta", "cre+del", [])
        moved = changes.raw[1]
        assert (list(moved.created), moved.updated, moved.deleted) == (["p2"], {}, ["p1"])
        assert list(sub.objects) == ["p2"]
        await realm.object.update("p2", data={"marker": 1})
        assert (await changes.count(3))[2] == ("dta", "upd", ["p2"])
        assert len(changes.seen) == 3


# -- options updates --------------------------------------------------------------------


async def test_update_keeps_the_circle_or_replaces_it(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token()) as (client,):
        realm = await client.realm.create("r")
        for object_id, location, kind in [
            ("a", at(10, 50), "x"),
            ("b", at(10, 50.0005), "y"),
            ("far", at(10.5, 50), "x"),  # 35.8 km away
        ]:
            await realm.object.create(object_id, location=location, data={"kind": kind})
        changes = Changes()
        sub = await realm.object.subscribe(
            shape={"cx": 10, "cy": 50, "r": 100}, execute_immediately=True, on_change=changes
        )
        assert await changes.count(1) == [("ful", "cre", ["a", "b"])]
        await sub.update(where=['kind="x"'])
        assert (await changes.count(2))[1] == ("ful", "cre", ["a"])
        # What Hivekit clients send: sty "rea" without sha keeps the circle.
        await client.connection.request(sub_message("upd", sub.id, sty="rea", atr=[]))
        assert (await changes.count(3))[2] == ("ful", "cre", ["a", "b"])
        await sub.update(shape={"cx": 10, "cy": 50, "r": 50_000}, where=["kind!=y"])
        await changes.count(4)
        assert set(changes.raw[3].created) == {"a", "far"}
        assert set(sub.objects) == {"a", "far"}
        await realm.object.update("b", data={"kind": "x"})
        assert (await changes.count(5))[4] == ("dta", "cre", ["b"])
        assert len(changes.seen) == 5


# -- exe and frames ---------------------------------------------------------------------


async def test_exe_pushes_ful_in_a_later_frame(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token()) as (admin,):
        await admin.realm.create("empty")
    async with connect(server.ws_url, proxy=None) as ws:
        await ws.send(f"Bearer {token()}")
        assert orjson.loads(await ws.recv())[0]["res"] == "suc"
        request = {
            "typ": "sub",
            "act": "cre",
            "id": "s1",
            "rea": "empty",
            "dat": {"typ": "obj", "sty": "rea", "exe": True},
            "cid": 7,
        }
        await ws.send(orjson.dumps([request]).decode())
        async with asyncio.timeout(DEADLINE):
            first = orjson.loads(await ws.recv())
            second = orjson.loads(await ws.recv())
    assert first == [{"typ": "sub", "act": "cre", "cid": 7, "res": "suc"}]
    assert second == [
        {"typ": "sub", "id": "s1", "uty": "ful", "obj": {"cre": {}, "upd": {}, "del": {}}}
    ]


async def test_a_later_subscriber_sees_only_later_changes(
    server: HivekitServer, token: Mint
) -> None:
    async with clients(server, token(), token()) as (admin, late):
        realm = await realm_with(admin, o1=HERE, o2=HERE)
        changes = Changes()
        await late.realm.handle("r").object.subscribe(on_change=changes)
        await realm.object.update("o1", data={"n": 1})
        await realm.object.create("o3", location=HERE)
        assert await changes.count(2) == [("dta", "upd", ["o1"]), ("dta", "cre", ["o3"])]
        await realm.object.update("o2", data={"marker": 1})
        assert (await changes.count(3))[2] == ("dta", "upd", ["o2"])
        assert len(changes.seen) == 3


# -- presence and permissions -----------------------------------------------------------


async def test_presence_reaches_subscriptions_as_one_upd(
    server: HivekitServer, token: Mint
) -> None:
    async with clients(server, token(), token()) as (admin, watcher):
        realm = await realm_with(admin, **{"car/1": HERE})
        changes = Changes()
        sub = await watcher.realm.handle("r").object.subscribe(on_change=changes)
        async with clients(server, token("gw", dpv={"r": ["car/*"]})):
            await changes.count(1)
            assert changes.seen == [("dta", "upd", ["car/1"])]
            assert sub.objects["car/1"].cst == "con"
            await realm.object.create("car/2", location=HERE)
            await changes.count(2)
            assert changes.seen[1] == ("dta", "cre", ["car/2"])
            assert changes.raw[1].created["car/2"].cst == "con"
            await realm.object.update("car/1", data={"marker": 1})
            assert (await changes.count(3))[2] == ("dta", "upd", ["car/1"])
            assert len(changes.seen) == 3


async def test_unreadable_objects_are_never_pushed(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token(), token(per={"r": {"pub/*": "R"}})) as (admin, reader):
        realm = await realm_with(admin, **{"secret/1": HERE, "pub/1": HERE})
        changes = Changes()
        sub = await reader.realm.handle("r").object.subscribe(
            execute_immediately=True, on_change=changes
        )
        assert await changes.count(1) == [("ful", "cre", ["pub/1"])]
        await realm.object.update("secret/1", data={"n": 1})
        await realm.object.create("secret/2", location=HERE)
        await realm.object.update("pub/1", data={"marker": 1})
        assert (await changes.count(2))[1] == ("dta", "upd", ["pub/1"])
        assert len(changes.seen) == 2
        assert list(sub.objects) == ["pub/1"]


# -- reconnecting -----------------------------------------------------------------------


async def test_subscriptions_come_back_after_the_server_drops_the_socket(
    server: HivekitServer, token: Mint
) -> None:
    async with clients(server, token(), token("mobile")) as (admin, client):
        realm = await realm_with(admin, o=HERE)
        changes = Changes()
        events: list[Any] = []
        mine = client.realm.handle("r")
        await mine.object.subscribe(on_change=changes, subscription_id="live")
        await mine.pubsub.subscribe("ping", lambda payload, oid: events.append(payload))
        drop_connection(server, "mobile")
        await until(lambda: client.connection.reconnects == 1, "a reconnect")
        # Re-created with exe: a fresh `ful` replaces the set.
        await until(lambda: ("ful", "cre", ["o"]) in changes.seen, "the restored subscription")
        await until(lambda: server.hub.pubsub.count == 1, "the restored pub/sub subscription")
        restored = len(changes.seen)
        await realm.object.update("o", data={"n": 1})
        await realm.pubsub.publish("ping", "o", 1)
        await realm.object.update("o", data={"n": 2})  # the markers
        await realm.pubsub.publish("ping", "o", 2)
        await until(lambda: len(changes.seen) >= restored + 2 and len(events) >= 2)
        assert changes.seen[restored:] == [("dta", "upd", ["o"])] * 2
        assert [change.updated["o"].dat for change in changes.raw[restored:]] == [
            {"n": 1},
            {"n": 2},
        ]
        assert events == [1, 2]


def drop_connection(server: HivekitServer, sub: str) -> None:
    """Abort, on the server side, the socket of the session authenticated as `sub`."""
    [remote] = [s.remote for s in server.hub.sessions.values() if s.sub == sub]
    assert server._listener is not None
    [connection] = [c for c in server._listener.connections if c.remote == remote]
    connection.abort()


# -- errors and lifetime ----------------------------------------------------------------


def sub_message(act: str, sub_id: str = "s", realm: str = "r", **dat: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"typ": "sub", "act": act, "id": sub_id, "rea": realm}
    if dat or act == "cre":
        message["dat"] = {"typ": "obj", **dat}
    return message


async def error_code(client: HivekitClient, message: dict[str, Any]) -> int:
    with pytest.raises(HivekitError) as failure:
        await client.connection.request(message)
    return failure.value.code


@pytest.mark.parametrize(
    "dat",
    [
        {"sty": "nearby"},
        {"sty": "cir"},
        {"sty": "cir", "sha": {"cx": 0, "cy": 0, "r": -1}},
        {"sty": "tar", "sta": {"id": "x"}},
        {"atr": ["a=="]},
        {"typ": "thing"},
        {"exe": "yes"},
    ],
)
async def test_bad_options_are_400(server: HivekitServer, token: Mint, dat: dict[str, Any]) -> None:
    async with clients(server, token()) as (client,):
        await client.realm.create("r")
        assert await error_code(client, sub_message("cre", **dat)) == 400
        assert (await client.system.stats())["subscriptions"] == 0


async def test_error_codes(server: HivekitServer, token: Mint) -> None:
    async with clients(server, token(), token(per={"other": {"*": "R"}})) as (client, stranger):
        assert await error_code(client, sub_message("cre", realm="nowhere")) == 404
        await client.realm.create("r")
        assert await client.connection.request(sub_message("cre")) is None
        assert await error_code(client, sub_message("cre")) == 409
        assert await error_code(client, sub_message("upd", "unknown", atr=[])) == 404
        assert await error_code(client, sub_message("del", "unknown")) == 404
        assert await error_code(stranger, sub_message("cre")) == 403
        assert await client.connection.request(sub_message("del")) is None
        assert await error_code(client, sub_message("del")) == 404


async def test_subscriptions_end_with_their_connection_and_realm(
    server: HivekitServer, token: Mint
) -> None:
    async with clients(server, token()) as (admin,):
        await admin.realm.create("r")
        async with clients(server, token()) as (first,):
            await first.connection.request(sub_message("cre", "same"))
            await admin.connection.request(sub_message("cre", "same"))  # ids are per connection
            assert (await admin.system.stats())["subscriptions"] == 2
        await until(lambda: len(server.hub.sessions) == 1, "the first connection gone")
        assert (await admin.system.stats())["subscriptions"] == 1
        async with clients(server, token()) as (second,):
            await second.connection.request(sub_message("cre", "same"))
            await admin.realm.delete("r")
            assert await error_code(second, sub_message("upd", "same", atr=[])) == 404
            assert await error_code(admin, sub_message("del", "same")) == 404
            assert (await admin.system.stats())["subscriptions"] == 0
