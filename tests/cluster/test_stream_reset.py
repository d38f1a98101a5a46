"""The stream lost, deleted or reset under running nodes (issue 18): the nodes notice,
refuse writes while they cannot take them, rebuild one state without a person, and
acknowledge no write they have not applied.

A `Load` keeps writing through every node while the stream goes away and comes back; it
keeps a model of what was acknowledged. A write answered 503 may or may not have landed,
so the model keeps those as possible too; an acknowledged write must never be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig

from server.cluster.jetstream_log import LogState
from server.io.app import HivekitServer
from tests.cluster.conftest import STREAM, Cluster, serve_node, settle, statuses
from tests.cluster.test_state_across_nodes import _view
from tests.conftest import mint
from tests.natsutil import NatsServer
from tests.server.wsutil import RawClient, eventually, is_status, until

RECOVERY_BOUND = 10.0
"""Seconds after NATS is back (or the stream is gone) within which writes succeed again
on every node."""
FAST = {"cluster.check_interval": 0.25, "cluster.reseed_timeout": 3}
REALM = "city"
WRITE_PACE = 0.005
"""Seconds between two writes of one writer (at most 200 writes per second)."""


@dataclass
class _Writer:
    """Writes one object of its own again and again through one node, and now and then
    creates a new one; remembers what was acknowledged and what may have landed."""

    name: str
    client: RawClient
    acked: dict[str, int] = field(default_factory=dict)
    """Object -> the last value acknowledged."""
    maybe: dict[str, set[int]] = field(default_factory=dict)
    """Object -> values answered 503 since its last acknowledged write."""
    created: set[str] = field(default_factory=set)
    maybe_created: set[str] = field(default_factory=set)
    successes: list[tuple[float, float]] = field(default_factory=list)
    """(sent, answered) of each acknowledged write."""

    async def run(self, stop: asyncio.Event) -> None:
        own = f"w/{self.name}"
        for value in itertools.count(1):
            if stop.is_set():
                return
            if value % 5 == 0:
                await self._create(f"n/{self.name}/{value}")
            else:
                await self._update(own, value)
            # Paced, not flat out: a 503 comes back at once, and a writer looping on it
            # would only meet the rate limit.
            await asyncio.sleep(WRITE_PACE)

    async def _update(self, object_id: str, value: int) -> None:
        message = {"typ": "obj", "act": "upd", "rea": REALM, "id": object_id, "dat": {"v": value}}
        if await self._send(message):
            self.acked[object_id] = value
            self.maybe.pop(object_id, None)
            # Read your write: the node acknowledged it, so it has applied it.
            record = await self.client.ok(
                {"typ": "obj", "act": "rea", "rea": REALM, "id": object_id}
            )
            assert record["dat"]["v"] >= value, (object_id, value, record)
        else:
            self.maybe.setdefault(object_id, set()).add(value)

    async def _create(self, object_id: str) -> None:
        message = {"typ": "obj", "act": "cre", "rea": REALM, "id": object_id}
        if await self._send(message):
            self.created.add(object_id)
            await self.client.ok({"typ": "obj", "act": "rea", "rea": REALM, "id": object_id})
        else:
            self.maybe_created.add(object_id)

    async def _send(self, message: dict[str, Any]) -> bool:
        cid = self.client.next_cid()
        sent = time.monotonic()
        await self.client.send([{**message, "cid": cid}])
        reply = await self.client.reply(cid, timeout=15)
        if reply.get("res") == "suc":
            self.successes.append((sent, time.monotonic()))
            return True
        assert reply.get("erc") == 503, reply
        return False

    def check(self, objects: dict[str, Any]) -> None:
        """The final state holds every acknowledged write, and nothing never written."""
        for object_id, value in self.acked.items():
            found = objects[object_id]["record"]["dat"]["v"]
            assert found == value or found in self.maybe.get(object_id, set()), (
                object_id,
                found,
                value,
            )
        mine = {oid for oid in objects if oid.startswith(f"n/{self.name}/")}
        assert self.created <= mine, self.created - mine
        assert mine <= self.created | self.maybe_created, mine - self.created


@contextlib.asynccontextmanager
async def _load(writers: list[_Writer]) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _setup(cluster: Cluster) -> tuple[HivekitServer, HivekitServer, list[RawClient]]:
    """Two nodes, a realm with objects, a provider on each node, a watcher on each."""
    a = await cluster.node(**FAST)
    b = await cluster.node(**FAST)
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM, "dat": {"k": 1}})
    for object_id in ("o/1", "o/2", "o/3", "w/a", "w/b"):
        await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": object_id})
    watchers = [await cluster.watcher(a, REALM), await cluster.watcher(b, REALM)]
    return a, b, watchers


def _connected(node: HivekitServer) -> bool:
    return node.cluster is not None and node.cluster.connected


def _succeeded_after(writers: list[_Writer], moment: float) -> bool:
    """Whether every writer had a write acknowledged that it sent after `moment`."""
    return all(any(sent > moment for sent, _ in writer.successes) for writer in writers)


async def _converged(
    cluster: Cluster, nodes: list[HivekitServer], writers: list[_Writer]
) -> dict[str, Any]:
    """Every node (and one started now) shows the same state, and it matches the model."""
    await settle(cluster.url, nodes)
    late = await cluster.node(**FAST)
    readers = [await cluster.client(node) for node in [*nodes, late]]
    views: list[dict[str, Any]] = []

    async def same() -> bool:
        views[:] = [_without_since(await _view(reader)) for reader in readers]
        return all(view == views[0] for view in views)

    with contextlib.suppress(AssertionError):
        # Providers registering again after the recovery may still be on their way.
        await eventually(same, timeout=RECOVERY_BOUND, interval=0.2)
    for index, view in enumerate(views[1:], 1):
        assert view == views[0], (index, _difference(views[0], view))
    objects: dict[str, Any] = views[0][REALM]["objects"]
    for writer in writers:
        writer.check(objects)
    assert views[0][REALM]["realm"]["dat"] == {"k": 1}
    return objects


def _without_since(view: dict[str, Any]) -> dict[str, Any]:
    """The view without when each provider came up: that is each node's record (one that
    read the stream later saw the provider's last registration, not its first)."""
    for realm in view.values():
        for entry in realm["objects"].values():
            for provider in entry["presence"]["providers"]:
                del provider["since"]
    return view


def _difference(one: dict[str, Any], other: dict[str, Any]) -> list[Any]:
    objects, others = one[REALM]["objects"], other[REALM]["objects"]
    return [
        (oid, objects.get(oid), others.get(oid))
        for oid in sorted(set(objects) | set(others))
        if objects.get(oid) != others.get(oid)
    ]


async def _reset_under_load(
    cluster: Cluster, nats_server: NatsServer, *, lose_store: bool
) -> tuple[float, dict[str, Any]]:
    a, b, watchers = await _setup(cluster)
    leaving = await cluster.client(a, mint("gw-1", dpv={REALM: ["o/1"]}))
    await cluster.client(b, mint("gw-2", dpv={REALM: ["o/2"]}))
    for watcher in watchers:
        await watcher.wait_count(is_status(cst="con"), 2)
    writers = [_Writer("a", await cluster.client(a)), _Writer("b", await cluster.client(b))]
    async with _load(writers):
        await until(lambda: all(len(w.successes) >= 5 for w in writers), "writes before")
        if lose_store:
            nats_server.stop()
            shutil.rmtree(nats_server.store)
            await until(lambda: not _connected(a) and not _connected(b), "cut off")
            # Presence moves while NATS is away: one provider leaves, another arrives.
            await leaving.close()
            await cluster.client(b, mint("gw-3", dpv={REALM: ["o/3"]}))
            nats_server.start()
        else:
            await leaving.close()
            await cluster.client(b, mint("gw-3", dpv={REALM: ["o/3"]}))
            nc = await nats.connect(cluster.url)
            await nc.jetstream().delete_stream(STREAM)
            await nc.close()
        back = time.monotonic()
        await until(
            lambda: _succeeded_after(writers, back),
            "writes succeed on every node",
            timeout=RECOVERY_BOUND,
        )
        recovered = max(min(at for sent, at in w.successes if sent > back) for w in writers) - back
    for node in (a, b):
        assert node.cluster is not None and node.cluster.state is LogState.FOLLOWING
    objects = await _converged(cluster, [a, b], writers)
    # No ghost: the provider that left during the outage is gone; the new one counts.
    presence = {oid: objects[oid]["record"]["cst"] for oid in ("o/1", "o/2", "o/3")}
    assert presence == {"o/1": "dis", "o/2": "con", "o/3": "con"}
    for watcher in watchers:
        assert (await statuses(watcher, REALM))["o/1"] == "dis"
    return recovered, objects


async def test_nats_restarted_without_its_store_under_load_recovers(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    recovered, _ = await _reset_under_load(cluster, nats_server, lose_store=True)
    print(f"writes succeeded on every node {recovered:.2f}s after NATS came back empty")


async def test_the_stream_deleted_by_hand_under_load_recovers(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    recovered, _ = await _reset_under_load(cluster, nats_server, lose_store=False)
    print(f"writes succeeded on every node {recovered:.2f}s after the stream was deleted")


async def test_readyz_and_the_state_metric_tell_while_writes_are_refused(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    a = await cluster.node(**FAST)
    assert (await _get(a, "/readyz"))[0] == 200
    nats_server.stop()
    await eventually(lambda: _status_is(a, "/readyz", 503))
    body = (await _get(a, "/metrics"))[1]
    assert 'hivectl_cluster_log_state{state="disconnected"} 1.0' in body
    assert "hivectl_ready 0.0" in body
    shutil.rmtree(nats_server.store)
    nats_server.start()
    await eventually(lambda: _status_is(a, "/readyz", 200), timeout=RECOVERY_BOUND)
    body = (await _get(a, "/metrics"))[1]
    assert 'hivectl_cluster_log_state{state="following"} 1.0' in body
    assert "hivectl_ready 1.0" in body
    assert f'hivectl_cluster_log_lag_messages{{node="{a.hub.node_id}"}}' in body


async def _status_is(node: HivekitServer, path: str, status: int) -> bool:
    return (await _get(node, path))[0] == status


async def _get(node: HivekitServer, path: str) -> tuple[int, str]:
    """GET on the node's WebSocket port (in a thread: the node runs in this loop)."""
    return await asyncio.to_thread(_http_get, f"http://127.0.0.1:{node.port}{path}")


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_a_write_is_not_acknowledged_for_a_reused_sequence(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    # Checks far apart: only the consumer and the write itself can notice the reset.
    a = await cluster.node(**{**FAST, "cluster.check_interval": 60})
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM})
    for index in range(20):
        await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": f"old/{index}"})
    assert a.cluster is not None
    applied = a.cluster.applied
    nc = await nats.connect(cluster.url)
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    await js.delete_stream(STREAM)
    await js.add_stream(StreamConfig.from_response(info.config.as_dict()))
    # The new stream numbers from 1 again: sequences this node applied name new messages.
    for _ in range(3):
        await js.publish("hive.tick", b"{}", stream=STREAM)
    assert (await stream_last(js)) < applied
    writer = await cluster.client(a)
    cid = writer.next_cid()
    await writer.send([{"typ": "obj", "act": "cre", "rea": REALM, "id": "new", "cid": cid}])
    reply = await writer.reply(cid, timeout=15)
    assert reply.get("res") == "suc" or reply.get("erc") in (503, 404), reply
    if reply.get("res") == "suc":
        assert "new" in a.hub.realms[REALM].objects
    await nc.close()
    # It recovers on its own, and what it acknowledged stays.
    await eventually(lambda: _creates(writer, "after"), timeout=RECOVERY_BOUND)
    listed = await writer.ok({"typ": "obj", "act": "lis", "rea": REALM})
    assert {f"old/{index}" for index in range(20)} <= set(listed)
    if reply.get("res") == "suc":
        assert "new" in listed


async def stream_last(js: Any) -> int:
    info = await js.stream_info(STREAM)
    return int(info.state.last_seq)


async def _creates(client: RawClient, object_id: str) -> bool:
    reply = await client.request({"typ": "obj", "act": "cre", "rea": REALM, "id": object_id})
    if reply.get("res") == "suc":
        return True
    assert reply.get("erc") == 503, reply
    return False


async def test_graceful_nats_restarts_during_start_up_skip_nothing(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    a = await cluster.node(**FAST)
    admin = await cluster.client(a)
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM})
    for object_id in ("w/a",):
        await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": object_id})
    writer = _Writer("a", await cluster.client(a))
    for attempt in range(20):
        async with _load([writer]):
            starting = asyncio.create_task(cluster.node(**FAST))
            # The restart lands at a different point of the start-up each time.
            await asyncio.sleep(0.01 * attempt)
            await asyncio.to_thread(_restart, nats_server)
            node = await starting
        await _applied_everything(cluster, [a, node])
        await cluster.stop(node)
    objects = (await _view(admin))[REALM]["objects"]
    writer.check(objects)


def _restart(nats_server: NatsServer) -> None:
    nats_server.stop()
    nats_server.start()


async def _applied_everything(cluster: Cluster, nodes: list[HivekitServer]) -> None:
    """Every node applied the last message of every subject the stream holds."""
    nc = await nats.connect(cluster.url)
    try:
        js = nc.jetstream()

        async def done() -> bool:
            info = await js.stream_info(STREAM, subjects_filter=">")
            for subject in info.state.subjects or {}:
                last = await js.get_last_msg(STREAM, subject)
                for node in nodes:
                    assert node.cluster is not None
                    if node.cluster.applied_on(subject) != last.seq:
                        return False
            return True

        await eventually(done, timeout=RECOVERY_BOUND, interval=0.1)
    finally:
        await nc.close()


async def test_a_node_started_on_the_emptied_stream_does_not_win_over_the_ones_holding_state(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    a, b, _ = await _setup(cluster)
    nats_server.stop()
    shutil.rmtree(nats_server.store)
    nats_server.start()
    # A node that holds nothing starts on the empty stream, maybe before the others are
    # back: its (empty) state must not win over theirs once they are.
    c = await cluster.node(**FAST)
    reader = await cluster.client(c)

    async def restored() -> bool:
        reply = await reader.request({"typ": "obj", "act": "lis", "rea": REALM})
        return reply.get("res") == "suc" and sorted(reply["dat"]) == [
            "o/1",
            "o/2",
            "o/3",
            "w/a",
            "w/b",
        ]

    await eventually(restored, timeout=RECOVERY_BOUND, interval=0.1)
    await until(
        lambda: all(n.cluster is not None and n.cluster.writable for n in (a, b, c)),
        "every node takes writes",
        timeout=RECOVERY_BOUND,
    )
    await settle(cluster.url, [a, b, c])
    views = [_without_since(await _view(await cluster.client(node))) for node in (a, b, c)]
    assert views[0] == views[1] == views[2]


async def test_a_node_killed_with_the_store_leaves_no_ghost(
    cluster: Cluster, nats_server: NatsServer, tmp_path: Path
) -> None:
    killed = serve_node(tmp_path / "x", cluster.url, "x")
    try:
        a, b, watchers = await _setup(cluster)
        await cluster.client(killed.ws_url, mint("gw-x", dpv={REALM: ["o/1"]}))
        await cluster.client(a, mint("gw-a", dpv={REALM: ["o/2"]}))
        for watcher in watchers:
            await watcher.wait_count(is_status(cst="con"), 2)
        killed.kill()
        nats_server.stop()
        shutil.rmtree(nats_server.store)
        nats_server.start()
        back = time.monotonic()
        writer = await cluster.client(b)
        # The killed node was alive when the stream was lost: the others wait for its
        # answer up to the re-seed timeout, then re-seed without it and declare it lost.
        await eventually(lambda: _creates(writer, "after"), timeout=RECOVERY_BOUND)
        for watcher in watchers:
            await watcher.wait_for(is_status("o/1", "dis"), timeout=RECOVERY_BOUND)
        print(f"writes and presence back {time.monotonic() - back:.2f}s after NATS came back")
        objects = await _converged(cluster, [a, b], [])
        presence = {oid: objects[oid]["record"]["cst"] for oid in ("o/1", "o/2")}
        assert presence == {"o/1": "dis", "o/2": "con"}
    finally:
        killed.kill()
