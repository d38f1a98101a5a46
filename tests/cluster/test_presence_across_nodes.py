"""Presence across nodes: every node applies one log, so every node tells the same story.

Nodes run in this process on one nats-server; clients are real WebSockets. Before
comparing what watchers on different nodes received, `settle` waits until every node
has applied the stream as far as it goes, then does a marker round trip per watcher.
"""

from __future__ import annotations

from tests.cluster.conftest import Cluster, settle, statuses
from tests.conftest import mint
from tests.server.wsutil import RawClient, is_status


async def _objects(client: RawClient, realm: str, *ids: str) -> None:
    for object_id in ids:
        await client.ok({"typ": "obj", "act": "cre", "rea": realm, "id": object_id})


async def test_a_watcher_on_b_sees_a_provider_on_a(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "city"})
    await _objects(admin, "city", "car/1", "car/2", "bike/1")
    watcher = await cluster.watcher(b, "city")

    provider = await cluster.client(a, mint("gw", dpv={"city": ["car/*"]}))
    await watcher.wait_count(is_status(cst="con"), 2)
    reader_a, reader_b = admin, await cluster.client(b)
    expected = {"car/1": "con", "car/2": "con", "bike/1": "dis"}
    assert await statuses(reader_a, "city") == expected
    assert await statuses(reader_b, "city") == expected

    await provider.close()
    await watcher.wait_count(is_status(cst="dis"), 2)
    await settle(cluster.url, [a, b], [watcher])
    assert watcher.statuses() == [
        ("city", "car/1", "con"),
        ("city", "car/2", "con"),
        ("city", "car/1", "dis"),
        ("city", "car/2", "dis"),
    ]
    everything_off = {"car/1": "dis", "car/2": "dis", "bike/1": "dis"}
    assert await statuses(reader_a, "city") == everything_off
    assert await statuses(reader_b, "city") == everything_off
    for reader in (reader_a, reader_b):
        explained = await reader.ok({"typ": "sys", "act": "pre", "rea": "city", "id": "car/1"})
        assert (explained["cst"], explained["lastReason"]) == ("dis", "closed")


async def test_multi_device_across_nodes_is_one_arrival_and_one_departure(
    cluster: Cluster,
) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "london"})
    await _objects(admin, "london", "riders/jo")
    watchers = [await cluster.watcher(a, "london"), await cluster.watcher(b, "london")]
    rider = mint("jo", dpv={"london": ["riders/jo"]})

    phone = await cluster.client(a, rider)
    for watcher in watchers:
        await watcher.wait_for(is_status("riders/jo", "con"))
    tablet = await cluster.client(b, rider)
    await phone.close()
    await settle(cluster.url, [a, b], watchers)
    for watcher in watchers:
        assert watcher.statuses() == [("london", "riders/jo", "con")]
    for node in (a, b):
        reader = await cluster.client(node)
        explained = await reader.ok(
            {"typ": "sys", "act": "pre", "rea": "london", "id": "riders/jo"}
        )
        assert explained["cst"] == "con"
        assert [p["node"] for p in explained["providers"]] == [b.hub.node_id]

    await tablet.close()
    for watcher in watchers:
        await watcher.wait_for(is_status("riders/jo", "dis"))
    await settle(cluster.url, [a, b], watchers)
    first, second = (watcher.statuses() for watcher in watchers)
    assert first == second == [("london", "riders/jo", "con"), ("london", "riders/jo", "dis")]
