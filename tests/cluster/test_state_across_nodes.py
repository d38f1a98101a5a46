"""State across nodes: a late node catches up, every feature works whichever node a client
is on, and concurrent writes to one object from two nodes lose nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from server.cluster.subjects import realm_objects_filter
from server.io.app import HivekitServer
from tests.cluster.conftest import Cluster, no_messages_on, settle, statuses
from tests.conftest import mint
from tests.server.wsutil import RawClient, eventually, is_status, post


async def _view(client: RawClient) -> dict[str, Any]:
    """What a client reads: realms with their data, objects with their status and providers.

    The ledger (``lastReason``, ``connectedSince``...) is left out: it is each node's record
    of the transitions it applied, and a node that joins later did not see those of
    providers that were gone before it came (the stream keeps current state only).
    """
    realms = await client.ok({"typ": "rea", "act": "lis"})
    view: dict[str, Any] = {}
    for realm_id in sorted(realms):
        realm = await client.ok({"typ": "rea", "act": "rea", "id": realm_id})
        listed = await client.ok({"typ": "obj", "act": "lis", "rea": realm_id})
        objects = {}
        for object_id in sorted(listed):
            record = await client.ok({"typ": "obj", "act": "rea", "rea": realm_id, "id": object_id})
            explained = await client.ok(
                {"typ": "sys", "act": "pre", "rea": realm_id, "id": object_id}
            )
            presence = {"cst": explained["cst"], "providers": explained["providers"]}
            objects[object_id] = {"record": record, "presence": presence}
        view[realm_id] = {"realm": realm, "objects": objects}
    return view


async def test_a_late_node_shows_the_same_state(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "city", "lab": "City", "dat": {"k": 1}})
    await admin.ok({"typ": "rea", "act": "cre", "id": "gone"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "gone", "id": "x"})
    for index in range(6):
        await admin.ok(
            {
                "typ": "obj",
                "act": "cre",
                "rea": "city",
                "id": f"car/{index}",
                "lab": f"Car {index}",
                "loc": {"lon": 0.1 * index, "lat": 51.5},
                "dat": {"n": index},
            }
        )
    # A realm deleted then created again: objects of its first life must stay out.
    await admin.ok({"typ": "rea", "act": "cre", "id": "again"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "again", "id": "old"})
    await admin.ok({"typ": "rea", "act": "del", "id": "again"})
    await admin.ok({"typ": "rea", "act": "cre", "id": "again", "dat": {"life": 2}})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "again", "id": "new"})
    await admin.ok({"typ": "rea", "act": "del", "id": "gone"})
    await admin.ok({"typ": "obj", "act": "del", "rea": "city", "id": "car/5"})
    await admin.ok({"typ": "rea", "act": "upd", "id": "city", "dat": {"k": 2, "j": "x"}})
    await cluster.client(a, mint("gw-a", dpv={"city": ["car/0", "car/1"]}))
    await cluster.client(b, mint("gw-b", dpv={"city": ["car/1", "car/2"], "again": ["*"]}))
    gone = await cluster.client(b, mint("gw-gone", dpv={"city": ["car/3"]}))
    await gone.close()

    # Deleting a realm purges its objects' messages: later readers never meet them.
    await eventually(lambda: no_messages_on(cluster.url, realm_objects_filter("gone")))

    c = await cluster.node()
    await settle(cluster.url, [a, b, c])
    views = [await _view(await cluster.client(node)) for node in (a, b, c)]
    assert views[0] == views[1] == views[2]
    view = views[2]
    assert sorted(view) == ["again", "city"]
    assert view["city"]["realm"]["dat"] == {"k": 2, "j": "x"}
    assert sorted(view["again"]["objects"]) == ["new"]
    assert {key: entry["record"]["cst"] for key, entry in view["city"]["objects"].items()} == {
        "car/0": "con",
        "car/1": "con",
        "car/2": "con",
        "car/3": "dis",
        "car/4": "dis",
    }
    for node in (a, b):
        reader = await cluster.client(node)
        explained = await reader.ok({"typ": "sys", "act": "pre", "rea": "city", "id": "car/3"})
        assert explained["lastReason"] == "closed"


async def test_every_feature_works_whichever_node_a_client_is_on(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    on_a, on_b = await cluster.client(a), await cluster.client(b)
    realm_list = await cluster.client(b)
    await realm_list.ok({"typ": "sub", "act": "cre", "id": "realms", "dat": {"typ": "sys"}})
    await on_a.ok({"typ": "rea", "act": "cre", "id": "city"})
    await realm_list.wait_for(lambda m: m.get("id") == "realms" and "dat" in m)
    await settle(cluster.url, [a, b])

    # Pub/sub: a publish on A reaches a subscriber on B (and one on A).
    for client in (on_a, on_b):
        await client.ok(
            {"typ": "rea", "act": "sub", "id": "city", "dat": {"eve": "ping", "idp": "*"}}
        )
    await on_a.ok(
        {"typ": "rea", "act": "pub", "id": "city", "dat": {"eve": "ping", "idp": "o", "dat": 7}}
    )
    for client in (on_a, on_b):
        push = await client.wait_for(lambda m: m.get("act") == "pub" and "res" not in m)
        assert push["dat"] == {"eve": "ping", "idp": "o", "dat": 7}

    # Object and realm-data subscriptions on B see writes made on A.
    await on_b.ok({"typ": "sub", "act": "cre", "id": "objs", "rea": "city", "dat": {}})
    await on_b.ok({"typ": "sub", "act": "cre", "id": "data", "rea": "city", "dat": {"typ": "rea"}})
    await on_a.ok({"typ": "obj", "act": "cre", "rea": "city", "id": "o", "dat": {"v": 1}})
    created = await on_b.wait_for(lambda m: m.get("id") == "objs" and m.get("uty") == "dta")
    assert created["obj"]["cre"]["o"]["dat"] == {"v": 1}
    await on_a.ok({"typ": "rea", "act": "upd", "id": "city", "dat": {"name": "City"}})
    updated = await on_b.wait_for(lambda m: m.get("id") == "data" and m.get("uty") == "ful")
    assert updated["rea"]["dat"] == {"name": "City"}

    # HTTP on B writes; A reads it.
    assert b.api_url is not None
    status, replies = await post(
        b.api_url,
        [{"typ": "obj", "act": "upd", "rea": "city", "id": "o", "dat": {"w": 2}, "cid": 1}],
        mint("http"),
    )
    assert status == 200, replies
    assert replies == [{"typ": "obj", "act": "upd", "cid": 1, "res": "suc"}]
    record = await on_a.ok({"typ": "obj", "act": "rea", "rea": "city", "id": "o"})
    assert record["dat"] == {"v": 1, "w": 2}

    # Presence queries and stats agree.
    watcher = await cluster.watcher(b, "city")
    provider = await cluster.client(a, mint("gw", dpv={"city": ["o"]}))
    await watcher.wait_for(is_status("o", "con"))
    counts = [
        await client.ok({"typ": "sys", "act": "pre", "rea": "city"}) for client in (on_a, on_b)
    ]
    assert counts == [{"connected": 1, "disconnected": 0}] * 2
    explained = [
        await client.ok({"typ": "sys", "act": "pre", "rea": "city", "id": "o"})
        for client in (on_a, on_b)
    ]
    for entry in explained:
        entry.pop("lastSeen")
    assert explained[0] == explained[1]
    assert explained[0]["providers"][0]["node"] == a.hub.node_id
    stats = [await client.ok({"typ": "sys", "act": "sta"}) for client in (on_a, on_b)]
    for key in ("providers", "realms", "objects", "connectedObjects"):
        assert stats[0][key] == stats[1][key], key
    assert (stats[0]["node"], stats[1]["node"]) == (a.hub.node_id, b.hub.node_id)
    await provider.close()
    await watcher.wait_for(is_status("o", "dis"))


async def _write_keys(client: RawClient, prefix: str, count: int) -> None:
    """Send `count` updates, each adding one key, without waiting between them."""
    cids = [f"{prefix}{index}" for index in range(count)]
    for index, cid in enumerate(cids):
        await client.send(
            [
                {
                    "typ": "obj",
                    "act": "upd",
                    "rea": "r",
                    "id": "shared",
                    "dat": {f"{prefix}{index}": index},
                    "cid": cid,
                }
            ]
        )
    for cid in cids:
        reply = await client.reply(cid, timeout=20)
        assert reply.get("res") == "suc", str(reply)


async def test_concurrent_writes_from_two_nodes_lose_no_update(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "shared", "dat": {}})
    await settle(cluster.url, [a, b])
    writers: list[tuple[HivekitServer, RawClient]] = []
    for node in (a, b, a, b, a, b):
        writers.append((node, await cluster.client(node)))
    per_writer = 6
    await asyncio.gather(
        *(
            _write_keys(client, f"w{index}-", per_writer)
            for index, (_, client) in enumerate(writers)
        )
    )
    expected = {
        f"w{index}-{key}": key for index in range(len(writers)) for key in range(per_writer)
    }
    await settle(cluster.url, [a, b])
    for node in (a, b):
        reader = await cluster.client(node)
        record = await reader.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "shared"})
        assert record["dat"] == expected
    assert await statuses(admin, "r") == {"shared": "dis"}
