"""``hivectl cluster status``: every node, its lease and log position, the stream and NATS.

Asked of any node (``adm``/``cst``, `server.protocol.handlers.admin`), which answers from three
sources, each as fresh as it can be within a bound, so that a node that cannot reach
the others or JetStream still answers and says what it could not see:

* its own view of the leases (`ClusterLog.renewals`): how long ago each node renewed,
  and whether that is past the deadline at which the cluster declares a node lost
  (``missed``). A node declared lost stays listed a while (`ClusterLog.lost_nodes`),
  with state ``lost``: it no longer has a lease to age, and it must not just vanish
  from the operator's view;
* every other node's own row: its log state, whether it takes writes, the sequence it
  applied and its lag behind the stream as of its last check, its NATS server. Asked
  over core NATS (`server.cluster.peers`); the nodes whose lease it follows that did
  not answer are listed in ``unanswered``;
* the stream as JetStream describes it (replicas, leader, sequences), asked within
  `STREAM_TIMEOUT`, and the NATS servers this node knows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.js.api import StreamInfo

from hivectl.core.wire import iso8601
from server.cluster.jetstream_log import ClusterLog, within
from server.cluster.urls import server_url
from server.protocol.deferred import Peers, blank_row

STREAM_TIMEOUT = 2.0
"""Seconds to wait for JetStream's description of the stream (as long as for the peers)."""
NANOSECONDS = 1e9


class _Node(Protocol):
    node_id: str


class ClusterStatus:
    """What the hub asks for ``cst`` (`server.protocol.deferred.ClusterView`)."""

    def __init__(self, cluster: ClusterLog, peers: Peers, node: _Node) -> None:
        self._cluster = cluster
        self._peers = peers
        self._node = node

    def node(self) -> dict[str, Any]:
        """This node's own row, without its lease: what it answers another node's ``cst``."""
        cluster = self._cluster
        return {
            "node": self._node.node_id,
            "state": cluster.state.value,
            "writable": cluster.writable,
            "applied": cluster.applied,
            "lag": cluster.lag,
            "nats": connected_server(cluster.nats),
        }

    async def report(self, act: str) -> dict[str, Any]:
        """The whole cluster as this node sees it; `act` is what the other nodes answer."""
        gathered, stream = await asyncio.gather(
            self._peers.ask({"act": act, "dat": {}}), self._stream()
        )
        cluster = self._cluster
        answered = [self.node()]
        for answer in gathered.answers:
            row = answer.get("status")
            answered.append(row if isinstance(row, dict) else {"node": answer.get("node")})
        nodes = node_rows(
            answered,
            gathered.unanswered,
            cluster.renewals(),
            cluster.lost_nodes(time.time()),
            time.monotonic(),
            cluster.lease_deadline,
        )
        return {
            "mode": "cluster",
            "node": self._node.node_id,
            "nodes": nodes,
            "unanswered": gathered.unanswered,
            "stream": stream,
            "natsServers": known_servers(cluster.nats),
        }

    async def _stream(self) -> dict[str, Any]:
        cluster = self._cluster
        nc = cluster.nats
        if nc is None or not cluster.connected:
            return unknown_stream(cluster.stream, "not connected to NATS")
        js = nc.jetstream(timeout=STREAM_TIMEOUT)
        try:
            info = await within(STREAM_TIMEOUT, js.stream_info(cluster.stream))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return unknown_stream(cluster.stream, reason)
        return describe_stream(info)


# -- pure parts -------------------------------------------------------------------------


def node_rows(
    answered: list[dict[str, Any]],
    unanswered: list[str],
    renewals: Mapping[str, float],
    lost: Mapping[str, float],
    now: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """One row per node, by node id: the nodes that answered (their own rows), those that
    did not, every lease followed and every node lost lately.

    `renewals` are `time.monotonic` times like `now`; `lost` are `time.time` times. A
    node missed its lease when it was renewed more than `deadline` seconds ago, or when
    it was declared lost.
    """
    rows: dict[str, dict[str, Any]] = {}
    for row in answered:
        node = row.get("node")
        if isinstance(node, str):
            rows[node] = {**blank_row(node), **row}
    for node in [*unanswered, *renewals, *lost]:
        rows.setdefault(node, blank_row(node))
    for node, row in rows.items():
        renewed = renewals.get(node)
        if renewed is not None:
            row["leaseAge"] = round(now - renewed, 3)
            row["missed"] = now - renewed > deadline
        if node in lost:
            row["state"] = row["state"] or "lost"
            row["lostAt"] = iso8601(lost[node])
            row["missed"] = True
    return [rows[node] for node in sorted(rows)]


def describe_stream(info: StreamInfo) -> dict[str, Any]:
    """The stream's replicas, leader and sequences, as JetStream reported them."""
    placement = info.cluster
    peers = [] if placement is None else placement.replicas or []
    return {
        "name": info.config.name,
        "replicas": info.config.num_replicas,
        "cluster": None if placement is None else placement.name,
        "leader": None if placement is None else placement.leader,
        "followers": [
            {
                "name": peer.name,
                "current": peer.current,
                "offline": bool(peer.offline),
                "lag": peer.lag,
                "active": None if peer.active is None else round(peer.active / NANOSECONDS, 3),
            }
            for peer in peers
        ],
        "firstSeq": info.state.first_seq,
        "lastSeq": info.state.last_seq,
        "messages": info.state.messages,
        "error": None,
    }


def unknown_stream(name: str, error: str) -> dict[str, Any]:
    """The stream's entry when JetStream did not describe it, and why."""
    return {
        "name": name,
        "replicas": None,
        "cluster": None,
        "leader": None,
        "followers": [],
        "firstSeq": None,
        "lastSeq": None,
        "messages": None,
        "error": error,
    }


def connected_server(nc: NatsClient | None) -> dict[str, Any] | None:
    """The NATS server a node is connected to: URL, name (the stream's leader and
    followers are named so) and version; None while disconnected."""
    url = None if nc is None else nc.connected_url
    if nc is None or url is None:
        return None
    # nats-py keeps the server's INFO (name, version) only in this attribute.
    info: dict[str, Any] = nc._server_info
    return {"url": server_url(url), "name": info.get("server_name"), "version": info.get("version")}


def known_servers(nc: NatsClient | None) -> list[str]:
    """Every NATS server the client may connect to: those configured and discovered."""
    return [] if nc is None else sorted({server_url(url) for url in nc.servers})
