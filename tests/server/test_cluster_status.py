"""``adm``/``cst`` (``hivectl cluster status``) on a server that is no cluster, and the
pure parts of the cluster's answer (`server.cluster.status`).

The cluster itself is shown by tests/cluster/test_cluster_status.py, with real NATS.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import ClusterInfo, PeerInfo, StreamConfig, StreamInfo, StreamState

from hivectl.client import HivekitClient
from server.cluster.status import describe_stream, node_rows
from server.io.app import HivekitServer
from server.protocol.deferred import blank_row
from tests.conftest import mint
from tests.server.test_admin import adm
from tests.server.wsutil import RawClient, post

EMBEDDED_ROW_KEYS = list(blank_row("a#1"))


async def test_an_embedded_server_answers_as_one_node_without_a_stream(
    server: HivekitServer,
) -> None:
    admin = await RawClient.open(server.ws_url, mint("ops", adm=True))
    try:
        status = await admin.ok(adm("cst"))
    finally:
        await admin.close()
    assert status["mode"] == "embedded"
    assert status["node"] == server.hub.node_id
    assert (status["stream"], status["natsServers"], status["unanswered"]) == (None, [], [])
    [row] = status["nodes"]
    assert list(row) == EMBEDDED_ROW_KEYS  # the same keys as a cluster node's row
    assert (row["node"], row["writable"], row["missed"]) == (server.hub.node_id, True, False)
    http_status, body = await post(
        server.api_url or "", [adm("cst", cid="s")], mint("ops", adm=True)
    )
    assert http_status == 200
    assert body == [{"cid": "s", "typ": "adm", "act": "cst", "res": "suc", "dat": status}]
    async with HivekitClient(server.ws_url, mint("ops", adm=True), reconnect=False) as client:
        assert await client.admin.cluster_status() == status


async def test_cluster_status_takes_no_options(server: HivekitServer) -> None:
    admin = await RawClient.open(server.ws_url, mint("ops", adm=True))
    try:
        reply = await admin.request(adm("cst", {"node": "a"}))
    finally:
        await admin.close()
    assert (reply["erc"], reply["err"]) == (400, "dat.node is not an option of this action")


def test_node_rows_age_the_leases_and_mark_missed_and_lost_nodes() -> None:
    answered = [
        {"node": "a#1", "state": "following", "writable": True, "applied": 40, "lag": 0},
        {"node": "b#2", "state": "unavailable", "writable": False, "applied": 38, "lag": 2},
    ]
    renewals = {"a#1": 99.5, "b#2": 98.0, "c#3": 96.0}
    rows = node_rows(answered, ["c#3"], renewals, {"d#4": 1.7e9}, now=100.0, deadline=1.5)
    assert [row["node"] for row in rows] == ["a#1", "b#2", "c#3", "d#4"]
    a, b, c, d = rows
    assert list(a) == EMBEDDED_ROW_KEYS
    assert (a["incarnation"], a["state"], a["leaseAge"], a["missed"]) == (
        "1",
        "following",
        0.5,
        False,
    )
    assert (b["applied"], b["lag"], b["leaseAge"], b["missed"]) == (38, 2, 2.0, True)
    # Did not answer: only what the lease says.
    assert (c["state"], c["applied"], c["leaseAge"], c["missed"]) == (None, None, 4.0, True)
    # Declared lost: no lease left to age.
    assert (d["state"], d["leaseAge"], d["missed"]) == ("lost", None, True)
    assert d["lostAt"].startswith("2023-11-14T22:13:20")


def test_describe_stream_names_the_leader_and_the_followers() -> None:
    info = StreamInfo(
        config=StreamConfig(name="HIVE", num_replicas=3),
        state=StreamState(messages=5, bytes=500, first_seq=3, last_seq=9, consumer_count=2),
        cluster=ClusterInfo(
            leader="n1",
            name="hive",
            replicas=[
                PeerInfo(name="n2", current=True, active=250_000_000, lag=0),
                PeerInfo(name="n3", current=False, offline=True, lag=4),
            ],
        ),
    )
    described: dict[str, Any] = describe_stream(info)
    assert described == {
        "name": "HIVE",
        "replicas": 3,
        "cluster": "hive",
        "leader": "n1",
        "followers": [
            {"name": "n2", "current": True, "offline": False, "lag": 0, "active": 0.25},
            {"name": "n3", "current": False, "offline": True, "lag": 4, "active": None},
        ],
        "firstSeq": 3,
        "lastSeq": 9,
        "messages": 5,
        "error": None,
    }
