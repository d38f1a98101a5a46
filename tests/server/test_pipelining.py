"""A connection that sends on while its writes wait for storage (`server.io.app.BACKLOG_LIMIT`).

Each write's reply waits for its commit; what the connection sends meanwhile is queued, past
the limit its socket is no longer read, and everything is still handled once, in order.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from server.io.app import BACKLOG_LIMIT
from tests.conftest import mint, running
from tests.server.wsutil import RawClient


async def test_writes_sent_back_to_back_are_all_answered_in_order(tmp_path: Path) -> None:
    settings = {
        "storage.backend": "sqlite",
        "storage.path": str(tmp_path / "hive.db"),
        "storage.batch_window": 0.05,  # commits slow enough for frames to pile up behind
    }
    async with running(settings) as server:
        client = await RawClient.open(server.ws_url, mint("admin"))
        await client.ok({"typ": "rea", "act": "cre", "id": "r"})
        count = 3 * BACKLOG_LIMIT
        for n in range(count):
            create = {"typ": "obj", "act": "cre", "rea": "r", "id": f"o{n}", "cid": f"w{n}"}
            await client.ws.send(orjson.dumps([create]).decode())
        replies = await client.wait_count(lambda m: str(m.get("cid", "")).startswith("w"), count)
        assert [m["cid"] for m in replies] == [f"w{n}" for n in range(count)]
        assert all(m["res"] == "suc" for m in replies)
        listing = await client.ok({"typ": "obj", "act": "lis", "rea": "r"})
        assert len(listing) == count
        await client.close()
