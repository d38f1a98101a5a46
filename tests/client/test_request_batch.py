"""Many requests in one frame against a real server: every reply comes back in order of the
requests, a refused one is returned as its error without hiding the others, and a frame
lost with the connection leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from hivectl.client import ConnectionLost, HivekitClient, HivekitError
from hivectl.client.connection import Connection
from server.io.app import HivekitServer
from tests.client.closing import closing_server
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


async def test_a_batch_whose_frame_cannot_be_sent_leaves_no_unread_failures() -> None:
    """The connection is lost while the frame is being sent: its futures have failed
    already, and none of them may be left for asyncio to complain about."""
    loop = asyncio.get_running_loop()
    complaints: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: complaints.append(context))
    async with closing_server(hold=1.0) as closing:
        connection = Connection(closing.url, "t", reconnect=False)
        await connection.open()
        try:
            ws = connection._ws
            assert ws is not None

            async def lost_while_sending(_: str) -> None:
                connection._fail_pending(ConnectionLost("gone"))
                raise ConnectionClosed(None, None)

            ws.send = lost_while_sending  # type: ignore[method-assign]
            with pytest.raises(ConnectionLost):
                await connection.request_batch([{"typ": "sys", "act": "hbt"}] * 50)
            with pytest.raises(ConnectionLost):
                await connection.request({"typ": "sys", "act": "hbt"})
        finally:
            await connection.close()
    gc.collect()
    await asyncio.sleep(0)
    assert complaints == []
