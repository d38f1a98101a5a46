"""Many requests in one frame against a real server: every reply comes back in order of the
requests, a refused one is returned as its error without hiding the others."""

from __future__ import annotations

from hivectl.client import HivekitClient, HivekitError
from server.app import HivekitServer
from tests.conftest import mint


async def test_a_batch_returns_each_reply_or_error(server: HivekitServer) -> None:
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as client:
        await client.realm.create("r")
        messages = [
            {"typ": "obj", "act": "cre", "rea": "r", "id": "a", "lab": "A"},
            {"typ": "obj", "act": "upd", "rea": "r", "id": "missing", "lab": "?"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "a"},
        ]
        created, missing, read = await client.connection.request_batch(messages)
    assert created is None
    assert isinstance(missing, HivekitError) and missing.code == 404
    assert read["id"] == "a" and read["lab"] == "A"
