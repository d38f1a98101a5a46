"""``hivectl cluster status`` (``adm``/``cst``) across real nodes on a real nats-server:
any node lists every node with its log position and lease, the stream and NATS; a node
killed hard is marked, one that leaves gracefully is simply gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.cli.conftest import invoke, words
from tests.cluster.conftest import (
    LEASE_INTERVAL,
    LEASE_TTL,
    STREAM,
    Cluster,
    serve_node,
    settle,
)
from tests.cluster.test_admin_cluster import adm, admin_token, two_nodes
from tests.natsutil import NatsServer
from tests.server.wsutil import eventually, until

WIDE = {"COLUMNS": "200"}
DETECTION_SLACK = 1.0
"""Seconds allowed past the lease TTL: one lease check period, a publish and an apply."""


def by_node(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["node"]: row for row in status["nodes"]}


async def test_any_node_lists_every_node_the_stream_and_nats(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    a, b = await two_nodes(cluster)
    writer = await cluster.client(a)
    await writer.ok({"typ": "rea", "act": "cre", "id": "london"})
    await settle(cluster.url, [a, b])
    for asked in (a, b):
        admin = await cluster.client(asked, admin_token())
        status = await admin.ok(adm("cst"))
        assert (status["mode"], status["node"], status["unanswered"]) == (
            "cluster",
            asked.hub.node_id,
            [],
        )
        rows = by_node(status)
        assert sorted(rows) == sorted([a.hub.node_id, b.hub.node_id])
        stream = status["stream"]
        for node in (a, b):
            assert node.cluster is not None
            row = rows[node.hub.node_id]
            assert row["incarnation"] == node.hub.node_id.split("#")[1]
            assert (row["state"], row["writable"], row["missed"]) == ("following", True, False)
            assert row["applied"] > 0  # the stream grows meanwhile: no upper bound holds
            assert row["lag"] >= 0
            assert 0 <= row["leaseAge"] < LEASE_TTL - LEASE_INTERVAL
            assert row["nats"]["url"] == nats_server.url
            assert row["nats"]["name"] == nats_server.name
        assert (stream["name"], stream["replicas"], stream["leader"], stream["error"]) == (
            STREAM,
            1,
            nats_server.name,
            None,
        )
        assert status["natsServers"] == [nats_server.url]
    shown = await asyncio.to_thread(
        invoke, "cluster", "status", "--url", a.ws_url, "--token", admin_token(), env=WIDE
    )
    assert shown.exit_code == 0, shown.output
    text = words(shown.stdout)
    for node in (a, b):
        name, incarnation = node.hub.node_id.split("#")
        mark = " *" if node is a else ""
        assert f"{name}{mark} {incarnation} following yes" in text
    assert f"stream {STREAM}: 1 replicas, leader {nats_server.name};" in text


async def test_a_node_that_leaves_gracefully_is_not_marked(cluster: Cluster) -> None:
    a, b = await two_nodes(cluster)
    admin = await cluster.client(a, admin_token())
    await cluster.stop(b)

    async def only_a() -> bool:
        status = await admin.ok(adm("cst"))
        return [row["node"] for row in status["nodes"]] == [a.hub.node_id]

    await eventually(only_a)
    status = await admin.ok(adm("cst"))
    assert status["unanswered"] == []
    assert not status["nodes"][0]["missed"]


async def test_a_killed_node_is_marked_missed_then_lost(cluster: Cluster, tmp_path: Path) -> None:
    b = serve_node(tmp_path / "b", cluster.url, "b")
    try:
        a = await cluster.node(**{"server.node_id": "a"})
        assert a.cluster is not None
        cluster_log = a.cluster
        await until(
            lambda: any(node.startswith("b#") for node in cluster_log.live_nodes()),
            "node a follows b's lease",
        )
        [b_id] = cluster_log.live_nodes()
        admin = await cluster.client(a, admin_token())
        before = await admin.ok(adm("cst"))
        assert by_node(before)[b_id]["state"] == "following"

        killed_at = time.monotonic()
        b.kill()  # SIGKILL: no goodbye, the lease just stops being renewed
        # Still a member when asked: it does not answer, and its lease runs out meanwhile.
        silent = await admin.ok(adm("cst"))
        assert time.monotonic() - killed_at < LEASE_TTL + DETECTION_SLACK
        assert silent["unanswered"] == [b_id]
        assert by_node(silent)[b_id]["missed"]
        await until(
            lambda: b_id in cluster_log.lost_nodes(time.time()),
            "node a declared b lost",
            timeout=LEASE_TTL + DETECTION_SLACK,
        )
        lost = await admin.ok(adm("cst"))
        assert lost["unanswered"] == []
        row = by_node(lost)[b_id]
        assert (row["state"], row["missed"], row["leaseAge"]) == ("lost", True, None)
        assert row["lostAt"] is not None
        assert not by_node(lost)[a.hub.node_id]["missed"]
        checked = await asyncio.to_thread(
            invoke, "cluster", "status", "--json", "--url", a.ws_url, "--token", admin_token()
        )
        assert checked.exit_code == 3
        assert f"missed their lease: {b_id}" in words(checked.stderr)
    finally:
        b.kill()


async def test_a_node_that_comes_back_clears_its_lost_incarnation(
    cluster: Cluster, tmp_path: Path
) -> None:
    b = serve_node(tmp_path / "b", cluster.url, "b")
    try:
        a = await cluster.node(**{"server.node_id": "a"})
        assert a.cluster is not None
        cluster_log = a.cluster
        await until(lambda: len(cluster_log.live_nodes()) == 1, "node a follows b's lease")
        [old] = cluster_log.live_nodes()
        b.kill()
        await until(
            lambda: old in cluster_log.lost_nodes(time.time()),
            "node a declared b lost",
            timeout=LEASE_TTL + DETECTION_SLACK,
        )
    finally:
        b.kill()
    again = serve_node(tmp_path / "b2", cluster.url, "b")
    try:
        await until(lambda: len(cluster_log.live_nodes()) == 1, "b is back")
        status = await (await cluster.client(a, admin_token())).ok(adm("cst"))
        [new] = cluster_log.live_nodes()
        assert new != old
        assert [row["node"] for row in status["nodes"]] == [a.hub.node_id, new]
        assert not any(row["missed"] for row in status["nodes"])
    finally:
        again.kill()
