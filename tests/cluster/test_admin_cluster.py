"""Operator requests across a real two-node cluster: any node answers for every node."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from server.cluster import subjects
from server.io.app import HivekitServer
from tests.cluster.conftest import Cluster, messages_on, serve_node, settle
from tests.conftest import mint
from tests.server.wsutil import RawClient, is_status, until

REALM = "london"


def adm(act: str, dat: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"typ": "adm", "act": act, "dat": dat or {}}


def admin_token() -> str:
    return mint("ops", adm=True)


def rider_token(rider: str, jti: str) -> str:
    return mint(rider, dpv={REALM: [f"riders/{rider}"]}, jti=jti)


async def two_nodes(cluster: Cluster) -> tuple[HivekitServer, HivekitServer]:
    a, b = await cluster.node(), await cluster.node()
    for node, other in ((a, b), (b, a)):
        assert node.cluster is not None
        cluster_log = node.cluster
        await until(
            lambda log=cluster_log, other=other: other.hub.node_id in log.live_nodes(),  # type: ignore[misc]
            "each node follows the other's lease",
        )
    return a, b


async def test_connections_list_shows_the_connections_of_both_nodes(cluster: Cluster) -> None:
    a, b = await two_nodes(cluster)
    admin = await cluster.client(a, admin_token())
    await cluster.client(b, rider_token("r1", "j1"))
    await cluster.client(a, rider_token("r2", "j2"))
    listed = await admin.ok(adm("con"))
    assert listed["unanswered"] == []
    rows = [(entry["sub"], entry["node"]) for entry in listed["connections"]]
    assert rows == [("ops", a.hub.node_id), ("r1", b.hub.node_id), ("r2", a.hub.node_id)]
    only_b = await admin.ok(adm("con", {"node": b.node_id}))  # the node's name, no incarnation
    assert [entry["sub"] for entry in only_b["connections"]] == ["r1"]
    # Asked of the other node, the same answer.
    other = await cluster.client(b, admin_token())
    again = await other.ok(adm("con", {"sub": "r*"}))
    assert [(entry["sub"], entry["node"]) for entry in again["connections"]] == rows[1:]


async def test_a_rider_kicked_from_another_node_goes_disconnected_kicked_everywhere(
    cluster: Cluster,
) -> None:
    a, b = await two_nodes(cluster)
    admin = await cluster.client(a, admin_token())
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM})
    await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": "riders/r1"})
    watchers = [await cluster.watcher(node, REALM) for node in (a, b)]
    rider = await cluster.client(b, rider_token("r1", "j1"))
    for watcher in watchers:
        await watcher.wait_for(is_status("riders/r1", "con"))
    result = await admin.ok(adm("dis", {"sub": "r1", "reason": "stolen phone"}))
    assert [entry["node"] for entry in result["disconnected"]] == [b.hub.node_id]
    assert result["unanswered"] == []
    await rider.wait_closed()
    assert (rider.ws.close_code, rider.ws.close_reason) == (4003, "kicked: stolen phone")
    await settle(cluster.url, [a, b])
    for watcher in watchers:
        await watcher.wait_for(is_status("riders/r1", "dis"))
        explained = await watcher.ok({"typ": "sys", "act": "pre", "rea": REALM, "id": "riders/r1"})
        assert (explained["cst"], explained["lastReason"]) == ("dis", "kicked")


async def test_a_revocation_reaches_every_node_and_nodes_started_later(cluster: Cluster) -> None:
    a, b = await two_nodes(cluster)
    admin = await cluster.client(a, admin_token())
    token = rider_token("r1", "stolen")
    rider = await cluster.client(b, token)
    bystander = await cluster.client(b, rider_token("r2", "fine"))
    result = await admin.ok(adm("rev", {"jti": "stolen"}))
    assert result["revocation"]["jti"] == "stolen"
    await rider.wait_closed()
    assert (rider.ws.close_code, rider.ws.close_reason) == (4003, "token revoked")
    reauth = await bystander.auth(token)
    assert (reauth["erc"], reauth["err"]) == (401, "token has been revoked")
    subject = subjects.revocation_subject("jti:stolen")
    assert await messages_on(cluster.url, subject) == 1
    # A node that starts now reads the revocation from the stream.
    c = await cluster.node()
    late = await RawClient.open(c.ws_url)
    assert (await late.auth(token))["err"] == "token has been revoked"
    await late.close()
    listed = await (await cluster.client(c, admin_token())).ok(adm("rvl"))
    assert [entry["jti"] for entry in listed["revocations"]] == ["stolen"]


async def test_a_node_that_does_not_answer_is_named(cluster: Cluster, tmp_path: Path) -> None:
    frozen = serve_node(tmp_path / "f", cluster.url, "frozen")
    try:
        # This node judges leases slowly, so the frozen one stays a member while it is asked.
        a = await cluster.node(**{"server.node_id": "a", "cluster.lease_ttl": 60})
        admin = await cluster.client(a, admin_token())
        assert a.cluster is not None
        cluster_log = a.cluster
        await until(
            lambda: any(node.startswith("frozen#") for node in cluster_log.live_nodes()),
            "node a follows the other node's lease",
        )
        await cluster.client(frozen.ws_url, rider_token("r1", "j1"))
        both = await admin.ok(adm("con"))
        assert [entry["sub"] for entry in both["connections"]] == ["ops", "r1"]
        frozen.proc.send_signal(signal.SIGSTOP)
        try:
            partial = await admin.ok(adm("con"))
            kicked = await admin.ok(adm("dis", {"sub": "r1"}))
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        assert [entry["sub"] for entry in partial["connections"]] == ["ops"]
        assert [node.split("#")[0] for node in partial["unanswered"]] == ["frozen"]
        assert kicked["disconnected"] == []
        assert [node.split("#")[0] for node in kicked["unanswered"]] == ["frozen"]
    finally:
        frozen.kill()
