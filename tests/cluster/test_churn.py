"""Churn over three nodes: providers connect and close on random nodes while objects are
written, created and deleted from random nodes, many at once. At the end every node
agrees with a model of the run (an object is connected iff a live provider covers it),
and a watcher on each node received the same sequence of presence events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from server.io.app import HivekitServer
from tests.cluster.conftest import Cluster, settle, statuses
from tests.conftest import mint
from tests.server.wsutil import RawClient

REALM = "churn"
PROVIDERS = 30
CYCLES = 6
INITIAL_OBJECTS = 30


@dataclass
class _Provider:
    name: str
    patterns: list[str]
    client: RawClient | None = None

    def covers(self, object_id: str) -> bool:
        return any(
            object_id.startswith(pattern[:-1]) if pattern.endswith("*") else object_id == pattern
            for pattern in self.patterns
        )


@dataclass
class _Run:
    cluster: Cluster
    nodes: list[HivekitServer]
    rng: random.Random
    providers: list[_Provider]
    objects: set[str] = field(default_factory=set)
    next_object: int = 0

    def node(self) -> HivekitServer:
        return self.rng.choice(self.nodes)

    async def writer(self) -> RawClient:
        return await self.cluster.client(self.node())

    def expected(self) -> dict[str, str]:
        live = [provider for provider in self.providers if provider.client is not None]
        return {
            object_id: "con" if any(p.covers(object_id) for p in live) else "dis"
            for object_id in self.objects
        }


def _patterns(rng: random.Random) -> list[str]:
    """One to three patterns: exact ids, or prefixes (``o/1*`` covers o/1 and o/10..o/19)."""
    choices = [f"o/{rng.randrange(INITIAL_OBJECTS + 10)}" for _ in range(3)]
    choices += [f"o/{rng.randrange(1, 10)}*"]
    return rng.sample(choices, rng.randint(1, 3))


async def _toggle(run: _Run, provider: _Provider) -> None:
    if provider.client is None:
        token = mint(provider.name, dpv={REALM: provider.patterns})
        provider.client = await run.cluster.client(run.node(), token)
    else:
        client, provider.client = provider.client, None
        await client.close()


def _writes(run: _Run, writers: list[RawClient], count: int) -> list[Coroutine[Any, Any, Any]]:
    """`count` writes from random nodes, each on its own object: updates, creations of new
    ids and deletions, decided here so that the model never depends on their timing."""
    planned: list[Coroutine[Any, Any, Any]] = []
    touched: set[str] = set()
    for _ in range(count):
        writer = run.rng.choice(writers)
        roll = run.rng.random()
        candidates = sorted(run.objects - touched)
        if roll < 0.2 or not candidates:
            object_id = f"o/{INITIAL_OBJECTS + run.next_object}"
            run.next_object += 1
            run.objects.add(object_id)
            message = {"typ": "obj", "act": "cre", "rea": REALM, "id": object_id}
        elif roll < 0.3:
            object_id = run.rng.choice(candidates)
            run.objects.discard(object_id)
            message = {"typ": "obj", "act": "del", "rea": REALM, "id": object_id}
        else:
            object_id = run.rng.choice(candidates)
            data = {"v": run.rng.randrange(1000)}
            message = {"typ": "obj", "act": "upd", "rea": REALM, "id": object_id, "dat": data}
        touched.add(object_id)
        planned.append(writer.ok(message))
    return planned


async def test_churn_ends_with_every_node_equal_to_the_model(cluster: Cluster) -> None:
    nodes = [await cluster.node() for _ in range(3)]
    rng = random.Random(20240607)
    providers = [_Provider(f"gw-{index}", _patterns(rng)) for index in range(PROVIDERS)]
    run = _Run(cluster, nodes, rng, providers)
    admin = await cluster.client(nodes[0])
    await admin.ok({"typ": "rea", "act": "cre", "id": REALM})
    for index in range(INITIAL_OBJECTS):
        run.objects.add(f"o/{index}")
        await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": f"o/{index}"})
    watchers = [await cluster.watcher(node, REALM) for node in nodes]
    writers = [await cluster.client(node) for node in nodes]

    for _ in range(CYCLES):
        # Everything in a batch runs at once, on every node.
        batch = [_toggle(run, provider) for provider in providers if rng.random() < 0.6]
        batch += _writes(run, writers, 10)
        rng.shuffle(batch)
        await asyncio.gather(*batch)

    await settle(cluster.url, nodes, watchers)
    expected = run.expected()
    for writer in writers:
        assert await statuses(writer, REALM) == expected
    sequences = [watcher.statuses() for watcher in watchers]
    assert sequences[0] == sequences[1] == sequences[2]
    assert len(sequences[0]) > PROVIDERS  # the run moved things
    # Per object, events alternate from "con", and the last one is its final status.
    per_object: dict[str, list[str]] = {}
    for _, object_id, cst in sequences[0]:
        per_object.setdefault(object_id, []).append(cst)
    for object_id, events in per_object.items():
        alternating = ["con", "dis"] * (len(events) // 2) + ["con"] * (len(events) % 2)
        assert events == alternating, object_id
    for object_id, status in expected.items():
        events = per_object.get(object_id, [])
        assert (events[-1] if events else "dis") == status, object_id
