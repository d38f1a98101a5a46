"""Node loss: a node killed with SIGKILL stops renewing its lease; the survivors declare it
lost once, and its providers' objects go ``disconnected`` (reason ``node_lost``) on every
surviving node within the lease TTL plus a little slack."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from server.cluster.subjects import lease_subject, node_providers_filter
from server.model.presence import NodeLost
from tests.cluster.conftest import (
    LEASE_INTERVAL,
    LEASE_TTL,
    Cluster,
    last_change,
    messages_on,
    no_messages_on,
    serve_node,
    settle,
    statuses,
)
from tests.conftest import mint
from tests.server.wsutil import eventually, is_status

DETECTION_SLACK = 1.0
"""Seconds allowed past the lease TTL: one lease check period, a publish and an apply."""


async def test_a_killed_node_s_objects_go_disconnected_everywhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    a = serve_node(tmp_path / "a", cluster.url, "a")
    try:
        b = await cluster.node(**{"server.node_id": "b"})
        c = await cluster.node(**{"server.node_id": "c"})
        admin = await cluster.client(b)
        await admin.ok({"typ": "rea", "act": "cre", "id": "fleet"})
        for object_id in [f"truck/{index}" for index in range(5)]:
            await admin.ok({"typ": "obj", "act": "cre", "rea": "fleet", "id": object_id})
        watchers = [await cluster.watcher(b, "fleet"), await cluster.watcher(c, "fleet")]
        await cluster.client(a.ws_url, mint("gw-a", dpv={"fleet": ["truck/0", "truck/1"]}))
        await cluster.client(a.ws_url, mint("gw-a2", dpv={"fleet": ["truck/1", "truck/2"]}))
        # truck/2 stays up: a provider on a surviving node covers it too.
        await cluster.client(b, mint("gw-b", dpv={"fleet": ["truck/2", "truck/3"]}))
        for watcher in watchers:
            await watcher.wait_count(is_status(cst="con"), 4)
        explained = await admin.ok({"typ": "sys", "act": "pre", "rea": "fleet", "id": "truck/0"})
        a_node = explained["providers"][0]["node"]
        assert a_node.startswith("a#")  # --node-id a, and this run of it
        assert await messages_on(cluster.url, node_providers_filter(a_node)) == 2

        killed_at = time.monotonic()
        a.kill()  # SIGKILL: no goodbye, the lease just stops being renewed
        for watcher in watchers:
            await watcher.wait_count(is_status(cst="dis"), 2, timeout=LEASE_TTL + 5)
        detected = time.monotonic() - killed_at
        assert detected < LEASE_TTL + DETECTION_SLACK, detected

        await settle(cluster.url, [b, c], watchers)
        expected = [("fleet", f"truck/{index}", "con") for index in range(4)]
        for watcher in watchers:
            ups, downs = watcher.statuses()[:4], watcher.statuses()[4:]
            assert sorted(ups) == expected
            assert sorted(downs) == [("fleet", "truck/0", "dis"), ("fleet", "truck/1", "dis")]
        assert watchers[0].statuses() == watchers[1].statuses()
        for node in (b, c):
            reader = await cluster.client(node)
            assert await statuses(reader, "fleet") == {
                "truck/0": "dis",
                "truck/1": "dis",
                "truck/2": "con",
                "truck/3": "con",
                "truck/4": "dis",
            }
            for object_id in ("truck/0", "truck/1"):
                explained = await reader.ok(
                    {"typ": "sys", "act": "pre", "rea": "fleet", "id": object_id}
                )
                assert (explained["cst"], explained["lastReason"]) == ("dis", "node_lost")
            stats = await reader.ok({"typ": "sys", "act": "sta"})
            assert stats["providers"] == 1
        # The lost node's providers are purged from the stream: nodes that start later
        # do not even read them.
        await eventually(
            lambda: no_messages_on(cluster.url, node_providers_filter(a_node)), timeout=5
        )
    finally:
        a.kill()


async def test_a_node_stopping_gracefully_tells_the_others_at_once(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "fleet"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "fleet", "id": "van"})
    watcher = await cluster.watcher(a, "fleet")
    await cluster.client(b, mint("gw", dpv={"fleet": ["van"]}))
    await watcher.wait_for(is_status("van", "con"))

    leaving = b.hub.node_id
    stopped_at = time.monotonic()
    await cluster.stop(b)
    await watcher.wait_for(is_status("van", "dis"))
    explained = await admin.ok({"typ": "sys", "act": "pre", "rea": "fleet", "id": "van"})
    assert explained["lastReason"] == "shutdown"
    # The node left through the log, well before its lease could have expired: nobody
    # will declare it lost.
    left = await last_change(cluster.url, lease_subject(leaving))
    assert isinstance(left, NodeLost) and left.node == leaving
    assert time.monotonic() - stopped_at < LEASE_TTL - LEASE_INTERVAL
    await settle(cluster.url, [a], [watcher])
    assert watcher.statuses() == [("fleet", "van", "con"), ("fleet", "van", "dis")]


async def test_a_node_declared_lost_while_frozen_comes_back_under_a_new_identity(
    cluster: Cluster, tmp_path: Path
) -> None:
    a = serve_node(tmp_path / "a", cluster.url, "a")
    try:
        b = await cluster.node(**{"server.node_id": "b"})
        admin = await cluster.client(b)
        await admin.ok({"typ": "rea", "act": "cre", "id": "fleet"})
        await admin.ok({"typ": "obj", "act": "cre", "rea": "fleet", "id": "ship"})
        watcher = await cluster.watcher(b, "fleet")
        provider = await cluster.client(a.ws_url, mint("gw", dpv={"fleet": ["ship"]}))
        await watcher.wait_for(is_status("ship", "con"))
        before = await admin.ok({"typ": "sys", "act": "pre", "rea": "fleet", "id": "ship"})

        a.proc.send_signal(signal.SIGSTOP)  # frozen: no renewal, but its sockets stay open
        try:
            await watcher.wait_for(is_status("ship", "dis"), timeout=LEASE_TTL + 5)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        # Thawed, it learns from the log that it was declared lost, takes a new identity
        # and registers its provider again: the ship comes back.
        await watcher.wait_count(is_status("ship", "con"), 2, timeout=10)
        after = await admin.ok({"typ": "sys", "act": "pre", "rea": "fleet", "id": "ship"})
        old_node, new_node = before["providers"][0]["node"], after["providers"][0]["node"]
        assert old_node.startswith("a#") and new_node.startswith("a#")
        assert new_node != old_node
        await settle(cluster.url, [b], [watcher])
        assert watcher.statuses() == [
            ("fleet", "ship", "con"),
            ("fleet", "ship", "dis"),
            ("fleet", "ship", "con"),
        ]
        assert not provider.closed
    finally:
        a.kill()
