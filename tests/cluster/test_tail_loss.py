"""A stream that lost its tail under running nodes (issue 18, "a replicated stream losing
its leader" when the new leader is behind): the stream is the same life (same creation
time, same epoch) but ends before what the nodes applied.

Made with real files: NATS is stopped and its store copied, writes go on and are
acknowledged (the tail), then NATS is stopped again, the copy put back and NATS started:
the stream is back as it was at the copy. The nodes must notice, rebuild one state
holding every write they acknowledged (they applied it, so the re-seeding node holds
it), agree with each other and with a node started afterwards, and skip no message of
the rebuilt stream.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest

from server.cluster.jetstream_log import LogState
from tests.cluster.conftest import Cluster
from tests.cluster.test_stream_reset import (
    REALM,
    RECOVERY_BOUND,
    _applied_everything,
    _converged,
    _load,
    _setup,
    _succeeded_after,
    _Writer,
)
from tests.conftest import mint
from tests.natsutil import NatsServer
from tests.server.wsutil import is_status, until

TAIL_WRITES = 20
"""Writes each writer has acknowledged after the copy, at least: the tail to lose."""


def _copy_store(nats_server: NatsServer, copy: Path) -> None:
    """Stop NATS gracefully (its files are complete then), copy its store, start it."""
    nats_server.stop()
    shutil.copytree(nats_server.store, copy)
    nats_server.start()


def _restore_store(nats_server: NatsServer, copy: Path) -> None:
    """Stop NATS, put the copy back in place of its store, start it: the tail is gone."""
    nats_server.stop()
    shutil.rmtree(nats_server.store)
    shutil.copytree(copy, nats_server.store)
    nats_server.start()


async def test_a_stream_that_lost_its_tail_is_rebuilt_with_every_acknowledged_write(
    cluster: Cluster, nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hivectl.cluster")
    a, b, watchers = await _setup(cluster)
    await cluster.client(a, mint("gw-1", dpv={REALM: ["o/1"]}))
    for watcher in watchers:
        await watcher.wait_count(is_status("o/1", "con"), 1)
    writers = [_Writer("a", await cluster.client(a)), _Writer("b", await cluster.client(b))]
    copy = tmp_path / "nats-copy"
    async with _load(writers):
        await until(lambda: all(len(w.successes) >= 5 for w in writers), "writes before")
        await asyncio.to_thread(_copy_store, nats_server, copy)
        copied = time.monotonic()
        # The tail: writes acknowledged by both nodes' writers after the copy, and a
        # provider that arrives.
        await until(
            lambda: all(
                sum(1 for sent, _ in w.successes if sent > copied) >= TAIL_WRITES for w in writers
            ),
            "writes acknowledged after the copy",
            timeout=RECOVERY_BOUND,
        )
        await cluster.client(b, mint("gw-3", dpv={REALM: ["o/3"]}))
        for watcher in watchers:
            await watcher.wait_count(is_status("o/3", "con"), 1)
        tail = {w.name: (dict(w.acked), set(w.created)) for w in writers}
        await asyncio.to_thread(_restore_store, nats_server, copy)
        back = time.monotonic()
        await until(
            lambda: _succeeded_after(writers, back),
            "writes succeed on every node",
            timeout=RECOVERY_BOUND,
        )
    # The nodes saw the stream end before what they applied and one re-seeded it.
    assert "before what this node applied" in caplog.text or "holds another message" in (
        caplog.text
    )
    assert "re-seeding it from this node's state" in caplog.text
    for node in (a, b):
        assert node.cluster is not None and node.cluster.state is LogState.FOLLOWING
    # Every node, and one started now, show one state holding every acknowledged write.
    objects = await _converged(cluster, [a, b], writers)
    for writer in writers:
        acked, created = tail[writer.name]
        assert created <= set(objects)
        for object_id, value in acked.items():
            assert objects[object_id]["record"]["dat"]["v"] >= value, (object_id, value)
    presence = {oid: objects[oid]["record"]["cst"] for oid in ("o/1", "o/2", "o/3")}
    assert presence == {"o/1": "con", "o/2": "dis", "o/3": "con"}
    # Nothing skipped: each node applied the last message of every subject of the
    # rebuilt stream, and writes after it land and are applied everywhere.
    await _applied_everything(cluster, [a, b])
