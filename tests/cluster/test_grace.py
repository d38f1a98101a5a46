"""Grace periods in a cluster: time enters the log as ticks, so a grace period ends at the
same place in the log on every node, and a provider that comes back within the grace,
on any node, causes no event at all."""

from __future__ import annotations

import time

from tests.cluster.conftest import Cluster, settle
from tests.conftest import mint
from tests.server.wsutil import is_status

GRACE = 1.0


async def test_a_provider_moving_to_another_node_within_the_grace_causes_no_event(
    cluster: Cluster,
) -> None:
    a = await cluster.node(**{"presence.grace": GRACE})
    b = await cluster.node(**{"presence.grace": GRACE})
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "city"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "city", "id": "bus/1"})
    watchers = [await cluster.watcher(a, "city"), await cluster.watcher(b, "city")]
    token = mint("bus", dpv={"city": ["bus/1"]})
    first = await cluster.client(a, token)
    for watcher in watchers:
        await watcher.wait_for(is_status("bus/1", "con"))

    await first.close()
    second = await cluster.client(b, token)  # the same device, through another node
    await settle(cluster.url, [a, b], watchers)
    for node in (a, b):
        reader = await cluster.client(node)
        explained = await reader.ok({"typ": "sys", "act": "pre", "rea": "city", "id": "bus/1"})
        assert explained["cst"] == "con"
        assert "graceUntil" not in explained
        assert [p["node"] for p in explained["providers"]] == [b.hub.node_id]

    left_at = time.monotonic()
    await second.close()
    for watcher in watchers:
        await watcher.wait_for(is_status("bus/1", "dis"), timeout=GRACE + 5)
    assert time.monotonic() - left_at >= GRACE
    await settle(cluster.url, [a, b], watchers)
    for watcher in watchers:
        assert watcher.statuses() == [("city", "bus/1", "con"), ("city", "bus/1", "dis")]
    for node in (a, b):
        reader = await cluster.client(node)
        explained = await reader.ok({"typ": "sys", "act": "pre", "rea": "city", "id": "bus/1"})
        assert (explained["cst"], explained["lastReason"]) == ("dis", "closed")
