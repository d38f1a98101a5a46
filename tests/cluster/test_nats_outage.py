"""NATS going away: writes get 503 while it is gone, clients stay connected, and once it is
back every node resumes the log and converges on one state. On a three-server NATS
cluster with stream replicas 3, losing a server (its stream leader, the worst case) stops
writes only while NATS elects a new leader, events keep flowing, and nobody is declared
lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    LEASE_INTERVAL,
    LEASE_TTL,
    Cluster,
    settle,
    statuses,
    stream_leader,
)
from tests.conftest import mint
from tests.natsutil import NatsServer, nats_cluster
from tests.server.wsutil import RawClient, eventually, is_status


def _write(object_id: str, value: int, cid: str) -> dict[str, Any]:
    return {
        "typ": "obj",
        "act": "upd",
        "rea": "city",
        "id": object_id,
        "dat": {"v": value},
        "cid": cid,
    }


async def _write_succeeds(client: RawClient, object_id: str, value: int) -> bool:
    """One write: True when it succeeds, False for the 503 of an unavailable log.

    The reply may take up to a publish timeout plus an apply timeout (both 5 s) while the
    NATS cluster elects a new leader: the wait for it is longer than usual.
    """
    cid = client.next_cid()
    await client.send([_write(object_id, value, cid)])
    reply = await client.reply(cid, timeout=15)
    if reply.get("res") == "suc":
        return True
    assert reply.get("erc") == 503, reply
    return False


async def test_writes_get_503_during_a_nats_restart_and_state_converges(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    a = await cluster.node()
    b = await cluster.node()
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "city"})
    for object_id in ("o/1", "o/2", "o/3"):
        await admin.ok({"typ": "obj", "act": "cre", "rea": "city", "id": object_id})
    watchers = [await cluster.watcher(a, "city"), await cluster.watcher(b, "city")]
    leaving = await cluster.client(a, mint("gw-1", dpv={"city": ["o/1"]}))
    staying = await cluster.client(b, mint("gw-2", dpv={"city": ["o/2"]}))
    for watcher in watchers:
        await watcher.wait_count(is_status(cst="con"), 2)
    writer = await cluster.client(b)

    nats_server.stop()
    await eventually(lambda: _not_connected(a, b))
    reply = await writer.request(_write("o/3", 1, "during"))
    assert (reply["res"], reply["erc"]) == ("err", 503), reply
    # Reads keep working on the last applied state; a provider may come and go.
    assert await statuses(writer, "city") == {"o/1": "con", "o/2": "con", "o/3": "dis"}
    await leaving.close()
    arriving = await cluster.client(a, mint("gw-3", dpv={"city": ["o/3"]}))
    # Longer than the lease TTL: nobody renewed meanwhile, yet nobody was lost.
    await asyncio.sleep(LEASE_TTL + LEASE_INTERVAL)

    nats_server.start()
    await eventually(lambda: _write_succeeds(writer, "o/3", 2), timeout=20)
    await eventually(lambda: _write_succeeds(admin, "o/3", 3), timeout=20)
    expected = {"o/1": "dis", "o/2": "con", "o/3": "con"}
    for watcher in watchers:
        await watcher.wait_for(is_status("o/3", "con"), timeout=20)
        await watcher.wait_for(is_status("o/1", "dis"), timeout=20)
    await settle(cluster.url, [a, b], watchers)
    # Nothing doubled, nothing lost, nobody declared lost (o/2 never moved).
    events = watchers[0].statuses()
    assert watchers[1].statuses() == events
    assert sorted(events[:2]) == [("city", "o/1", "con"), ("city", "o/2", "con")]
    assert sorted(events[2:]) == [("city", "o/1", "dis"), ("city", "o/3", "con")]
    for client in (admin, writer):
        assert await statuses(client, "city") == expected
        record = await client.ok({"typ": "obj", "act": "rea", "rea": "city", "id": "o/3"})
        assert record["dat"] == {"v": 3}
    for client in (*watchers, staying, arriving, writer, admin):
        assert not client.closed


async def _not_connected(*nodes: Any) -> bool:
    return all(node.cluster is not None and not node.cluster.connected for node in nodes)


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = nats_cluster(tmp_path / "nats-cluster", 3)
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


@pytest.fixture
async def replicated(nats_servers: list[NatsServer]) -> AsyncIterator[Cluster]:
    """Nodes on a three-server NATS cluster (all URLs given), with stream replicas 3."""
    running = Cluster(",".join(server.url for server in nats_servers))
    try:
        yield running
    finally:
        await running.close()


async def test_losing_the_stream_leader_of_a_nats_cluster_does_not_stop_the_service(
    replicated: Cluster, nats_servers: list[NatsServer]
) -> None:
    # Default lease timings: writes stop while NATS elects a new stream leader (seconds),
    # and that silence must not look like a lost node.
    settings = {"cluster.replicas": 3, "cluster.lease_ttl": 5, "cluster.lease_interval": 1}
    a = await replicated.node(**settings)
    b = await replicated.node(**settings)
    admin = await replicated.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": "city"})
    for object_id in ("o/1", "o/2"):
        await admin.ok({"typ": "obj", "act": "cre", "rea": "city", "id": object_id})
    watchers = [await replicated.watcher(a, "city"), await replicated.watcher(b, "city")]
    await replicated.client(a, mint("gw-1", dpv={"city": ["o/1"]}))
    for watcher in watchers:
        await watcher.wait_for(is_status("o/1", "con"))

    leader = await stream_leader(nats_servers[0].url)
    victim = next(server for server in nats_servers if server.name == leader)
    victim.kill()

    writer = await replicated.client(b)
    await eventually(lambda: _write_succeeds(writer, "o/2", 1), timeout=30)
    await replicated.client(b, mint("gw-2", dpv={"city": ["o/2"]}))
    for watcher in watchers:
        await watcher.wait_for(is_status("o/2", "con"), timeout=20)
    survivor = next(server for server in nats_servers if server is not victim)
    await settle(survivor.url, [a, b], watchers)
    expected = [("city", "o/1", "con"), ("city", "o/2", "con")]
    assert watchers[0].statuses() == watchers[1].statuses() == expected
    for client in (admin, writer):
        assert await statuses(client, "city") == {"o/1": "con", "o/2": "con"}
        assert not client.closed
