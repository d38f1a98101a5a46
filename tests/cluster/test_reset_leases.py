"""Stream resets declare no healthy node lost: after the stream is re-created and
re-seeded, every node's lease goes on in the new life, so nobody's presence flaps.

The stream is reset again and again (NATS restarted without its store, the stream
deleted by hand) under load, with a provider on every node. Each reset must recover as
`test_stream_reset` requires, and no node may be declared lost: no ``node lost`` event is
applied anywhere, every node keeps its identity, and the providers that stayed are never
shown ``disconnected``.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time

import nats
import pytest

from server.cluster.jetstream_log import LogState
from server.cluster.subjects import lease_subject
from server.io.app import HivekitServer
from tests.cluster.conftest import STREAM, Cluster, settle
from tests.cluster.test_stream_reset import (
    FAST,
    REALM,
    RECOVERY_BOUND,
    _connected,
    _converged,
    _load,
    _succeeded_after,
    _Writer,
)
from tests.conftest import mint
from tests.natsutil import NatsServer
from tests.server.wsutil import is_status, until

ROUNDS = 6
"""Resets per run, alternating a lost store and a deletion by hand."""
NODES = ("a", "b", "c")


def _renewed_in_this_life(nodes: list[HivekitServer]) -> bool:
    """Whether every node applied a renewal of every node in the life it follows: past
    that, a node that missed its lease would already have been declared lost."""
    ids = [node.hub.node_id for node in nodes]
    return all(
        node.cluster is not None
        and node.cluster.state is LogState.FOLLOWING
        and all(node.cluster.applied_on(lease_subject(node_id)) > 0 for node_id in ids)
        for node in nodes
    )


@pytest.mark.timeout(240)
async def test_repeated_stream_resets_declare_no_healthy_node_lost(
    cluster: Cluster, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hivectl.cluster")
    nodes = [await cluster.node(**{**FAST, "server.node_id": name}) for name in NODES]
    ids = [node.hub.node_id for node in nodes]
    admin = await cluster.client(nodes[0])
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM, "dat": {"k": 1}})
    staying = [f"o/{name}" for name in NODES]
    leaving = [f"t/{index}" for index in range(ROUNDS)]
    for object_id in [*staying, *leaving, *(f"w/{name}" for name in NODES)]:
        await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": object_id})
    watchers = [await cluster.watcher(node, REALM) for node in nodes]
    for node, name in zip(nodes, NODES, strict=True):
        await cluster.client(node, mint(f"gw-{name}", dpv={REALM: [f"o/{name}"]}))
    for watcher in watchers:
        await watcher.wait_count(is_status(cst="con"), len(NODES))
    writers = [
        _Writer(name, await cluster.client(node)) for node, name in zip(nodes, NODES, strict=True)
    ]
    recoveries: list[float] = []
    async with _load(writers):
        await until(lambda: all(len(w.successes) >= 5 for w in writers), "writes before")
        for index in range(ROUNDS):
            # A provider that leaves while the stream is away: it must not stay (no ghost).
            gone = await cluster.client(
                nodes[index % len(nodes)], mint(f"gw-t{index}", dpv={REALM: [f"t/{index}"]})
            )
            for watcher in watchers:
                await watcher.wait_for(is_status(f"t/{index}", "con"), timeout=RECOVERY_BOUND)
            if index % 2 == 0:
                nats_server.stop()
                shutil.rmtree(nats_server.store)
                await until(lambda: not any(_connected(node) for node in nodes), "cut off")
                await gone.close()
                nats_server.start()
            else:
                await gone.close()
                nc = await nats.connect(cluster.url)
                await nc.jetstream().delete_stream(STREAM)
                await nc.close()
            back = time.monotonic()
            await until(
                functools.partial(_succeeded_after, writers, back),
                f"writes succeed on every node after reset {index}",
                timeout=RECOVERY_BOUND,
            )
            recoveries.append(time.monotonic() - back)
            await until(
                lambda: _renewed_in_this_life(nodes),
                f"every node renewed its lease in the life after reset {index}",
                timeout=RECOVERY_BOUND,
            )
    for node in nodes:
        assert node.cluster is not None and node.cluster.state is LogState.FOLLOWING
    await settle(cluster.url, nodes, watchers)
    assert [node.hub.node_id for node in nodes] == ids
    assert [node.hub.nodes_lost for node in nodes] == [0] * len(nodes)
    assert "declared it lost" not in caplog.text
    for watcher in watchers:
        flapped = [
            event for event in watcher.statuses() if event[1] in staying and event[2] != "con"
        ]
        assert flapped == [], flapped
    objects = await _converged(cluster, nodes, writers)
    presence = {oid: objects[oid]["record"]["cst"] for oid in [*staying, *leaving]}
    assert presence == {
        **{oid: "con" for oid in staying},
        **{oid: "dis" for oid in leaving},
    }
    print(
        "writes back on every node after each reset: " + ", ".join(f"{s:.2f}s" for s in recoveries)
    )
