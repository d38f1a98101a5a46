"""Cluster test helpers: real nats-server processes, in-process nodes, and settling.

Nodes run in this process (`HivekitServer` with ``cluster.nats_url``) unless a test must
kill one with SIGKILL; then it runs as `hivectl serve --cluster` (`serve_node`). Short
lease settings keep node-loss detection within a couple of seconds.

"Nothing more arrives" across nodes cannot be shown by a marker round trip alone: an
event caused on node A reaches a watcher on B only once B has applied the log up to
it. `settle` first waits until every node has applied the stream up to its current
last sequence, then does a marker round trip on each watcher.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest

from server.io.app import HivekitServer
from server.model.changes import Change, decode_change
from tests.cli.conftest import ServeProcess
from tests.conftest import SECRET, make_settings, mint
from tests.natsutil import NatsServer
from tests.server.wsutil import RawClient, until

LEASE_TTL = 2.0
LEASE_INTERVAL = 0.5
STREAM = "HIVE"


def cluster_overrides(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "cluster.nats_url": url,
        "cluster.lease_ttl": LEASE_TTL,
        "cluster.lease_interval": LEASE_INTERVAL,
        **overrides,
    }


class Cluster:
    """In-process nodes and raw clients started by one test; all closed at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.nodes: list[HivekitServer] = []
        self.clients: list[RawClient] = []

    async def node(self, **overrides: Any) -> HivekitServer:
        node = HivekitServer(make_settings(**cluster_overrides(self.url, **overrides)))
        await node.start()
        self.nodes.append(node)
        return node

    async def stop(self, node: HivekitServer) -> None:
        """A graceful stop, as on SIGTERM."""
        self.nodes.remove(node)
        await node.close()

    async def client(self, node: HivekitServer | str, token: str | None = None) -> RawClient:
        url = node if isinstance(node, str) else node.ws_url
        client = await RawClient.open(url, token if token is not None else mint("admin"))
        self.clients.append(client)
        return client

    async def watcher(self, node: HivekitServer | str, realm: str) -> RawClient:
        """A client subscribed to ``connectionStatusChanged`` for every object of `realm`."""
        client = await self.client(node)
        await client.ok(
            {
                "typ": "rea",
                "act": "sub",
                "id": realm,
                "dat": {"eve": "connectionStatusChanged", "idp": "*"},
            }
        )
        return client

    async def close(self) -> None:
        for client in self.clients:
            if not client.closed:
                await client.close()
        for node in self.nodes:
            await node.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(store=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def cluster(nats_server: NatsServer) -> AsyncIterator[Cluster]:
    running = Cluster(nats_server.url)
    try:
        yield running
    finally:
        await running.close()


def serve_node(cwd: Path, url: str, node_id: str, *extra: str) -> ServeProcess:
    """`hivectl serve --cluster URL` as a subprocess (so a test can SIGKILL it)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HIVECTL_")}
    env.update(
        HIVECTL_AUTH_SECRET=SECRET,
        HIVECTL_STORAGE_BACKEND="memory",
        HIVECTL_CLUSTER_LEASE_TTL=str(LEASE_TTL),
        HIVECTL_CLUSTER_LEASE_INTERVAL=str(LEASE_INTERVAL),
    )
    cwd.mkdir(parents=True, exist_ok=True)
    return ServeProcess(cwd, env, "--cluster", url, "--node-id", node_id, *extra)


async def stream_last_sequence(url: str) -> int:
    """The last sequence of the cluster stream, asked of NATS directly."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def last_change(url: str, subject: str) -> Change:
    """The change the cluster stream holds on `subject` (the entity's current state)."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        message = await nc.jetstream().get_last_msg(STREAM, subject)
        return decode_change(message.data or b"")
    finally:
        await nc.close()


async def messages_on(url: str, subject_filter: str) -> int:
    """How many messages the cluster stream holds on subjects matching `subject_filter`."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(STREAM, subjects_filter=subject_filter)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def no_messages_on(url: str, subject_filter: str) -> bool:
    return await messages_on(url, subject_filter) == 0


async def stream_leader(url: str) -> str:
    """The name of the NATS server leading the cluster stream."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        assert info.cluster is not None and info.cluster.leader is not None
        return info.cluster.leader
    finally:
        await nc.close()


async def settle(
    url: str, nodes: Sequence[HivekitServer], watchers: Sequence[RawClient] = ()
) -> None:
    """Every node has applied the stream as it is now; every watcher got what that pushed."""
    target = await stream_last_sequence(url)
    await until(
        lambda: all(node.cluster is not None and node.cluster.applied >= target for node in nodes),
        "every node caught up",
        timeout=10.0,
    )
    for watcher in watchers:
        await watcher.marker()


async def statuses(client: RawClient, realm: str) -> dict[str, str]:
    """Every object of `realm` -> its ``cst``, as the client's node sees it."""
    listed = await client.ok({"typ": "obj", "act": "lis", "rea": realm})
    return {object_id: entry["cst"] for object_id, entry in listed.items()}
