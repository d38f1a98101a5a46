"""Frames, malformed input and system messages over real sockets (protocol.md §1, §5, §6.5).

How the hub reads a frame and answers malformed input and system messages is tested on the
hub, without sockets (`tests.protocol.test_envelope`, `tests.protocol.test_system`). What
stays here needs the transport: a binary frame, which the socket layer hands over as bytes
(text frames come as str), and one exchange through a real server so that the socket path
of frames and system messages stays covered (the HTTP upgrade, a frame of several messages
in, their replies out through the shell's unit of work).
"""

from __future__ import annotations

from typing import Any

import pytest

from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient


@pytest.fixture
async def client(server: HivekitServer, token: Mint) -> Any:
    raw = await RawClient.open(server.ws_url, token("admin"))
    await raw.ok({"typ": "rea", "act": "cre", "id": "r"})
    yield raw
    await raw.close()


async def test_malformed_input_gets_400_and_the_connection_keeps_working(
    client: RawClient,
) -> None:
    """The binary frame of the table in `tests.protocol.test_envelope`."""
    start = len(client.received)
    await client.send(b'[{"typ":"sys","act":"hbt","cid":"b"}]')
    end = await client.marker()
    [got] = client.received[start:end]
    want = {"res": "err", "err": "binary frames are not supported", "erc": 400}
    assert {key: got.get(key) for key in want} == want
    assert set(got) <= {"typ", "act", "cid", "res", "err", "erc"}
    assert isinstance(got["err"], str)
    assert got["err"]
    await client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "after"})  # still working
    assert not client.closed


async def test_a_frame_and_system_messages_end_to_end(client: RawClient) -> None:
    start = len(client.received)
    await client.send(
        [
            {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 1}},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read"},
            {"typ": "zzz", "act": "rea", "cid": "bad"},
            {"typ": "sys", "act": "hbt", "cid": "beat"},
        ]
    )
    end = await client.marker()
    answered = client.received[start:end]
    assert [(m["cid"], m["res"]) for m in answered] == [
        ("read", "suc"),
        ("bad", "err"),
        ("beat", "suc"),
    ]  # in array order; set gets no reply
    assert answered[0]["dat"]["dat"] == {"v": 1}
    assert (answered[1]["erc"], answered[1]["err"]) == (400, 'unknown type "zzz"')
    stats = await client.ok({"typ": "sys", "act": "sta"})
    assert (stats["connections"], stats["realms"], stats["objects"]) == (1, 1, 1)
