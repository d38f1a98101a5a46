"""`subscribe(..., execute_immediately=True)` returns with the whole initial state, however
many pushes the server sends it in, and leaves no probe subscription behind."""

from __future__ import annotations

from hivectl.client import HivekitClient, SubscriptionChange
from server.io.app import HivekitServer
from server.model.subscription_index import FULL_CHUNK
from tests.conftest import Mint


async def fill(client: HivekitClient, realm: str, count: int) -> None:
    messages = [
        {"typ": "obj", "act": "cre", "rea": realm, "id": f"o{i}", "dat": {"n": i}}
        for i in range(count)
    ]
    for start in range(0, count, 500):
        replies = await client.connection.request_batch(messages[start : start + 500])
        assert not [reply for reply in replies if isinstance(reply, Exception)]


async def test_subscribe_returns_with_every_piece_of_a_large_state(
    server: HivekitServer, token: Mint
) -> None:
    count = 2 * FULL_CHUNK + 37  # a ful, then two dta pushes with the rest
    async with HivekitClient(server.ws_url, token("admin"), reconnect=False) as client:
        realm = await client.realm.create("big")
        await fill(client, "big", count)
        pushes: list[SubscriptionChange] = []
        live = await realm.object.subscribe(
            execute_immediately=True, on_change=lambda sub, change: pushes.append(change)
        )
        assert set(live.objects) == {f"o{i}" for i in range(count)}
        assert (await client.system.stats())["subscriptions"] == 1  # the probe is gone

        big_ones = [change for change in pushes if len(change.created) >= FULL_CHUNK]
        assert big_ones[0].kind == "ful"


async def test_an_empty_or_small_state_returns_at_once_and_without_exe_nothing_waits(
    server: HivekitServer, token: Mint
) -> None:
    async with HivekitClient(server.ws_url, token("admin"), reconnect=False) as client:
        realm = await client.realm.create("small")
        empty = await realm.object.subscribe(execute_immediately=True)
        assert empty.objects == {}
        await fill(client, "small", 3)
        small = await realm.object.subscribe(execute_immediately=True)
        assert set(small.objects) == {"o0", "o1", "o2"}
        lazy = await realm.object.subscribe()
        assert lazy.objects == {}
        assert (await client.system.stats())["subscriptions"] == 3
