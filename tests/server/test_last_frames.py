"""A client's last frames count, and a silent peer goes on time whatever is queued for it.

RFC 6455: the close frame is the last frame a peer sends; every frame before it was sent
and must be handled, even when all of them arrive in one read. And a provider that stops
answering pings is gone within ``ping_interval + ping_timeout``, even when the server has
data queued for it that it will never read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.conftest import Mint, running
from tests.server.wsutil import RawClient, eventually, is_status, subscribe_msg

Message = dict[str, Any]


async def send_then_close_in_one_write(url: str, token: str, frames: list[list[Message]]) -> None:
    """Authenticate, then write `frames` and the close frame to the socket in one call."""
    async with connect(url, proxy=None, ping_interval=None) as ws:
        await ws.send(f"Bearer {token}")
        assert orjson.loads(await ws.recv())[0]["res"] == "suc"
        protocol = ws.protocol
        for frame in frames:
            protocol.send_text(orjson.dumps(frame))
        protocol.send_close(1000, "bye")
        ws.transport.write(b"".join(protocol.data_to_send()))
        await ws.wait_closed()


def writes(n: int) -> list[list[Message]]:
    return [
        [
            {
                "typ": "obj",
                "act": "cre",
                "rea": "r",
                "id": f"created/{n}",
                "dat": {"n": n},
                "cid": "c",
            }
        ],
        [{"typ": "obj", "act": "set", "rea": "r", "id": f"set/{n}", "dat": {"n": n}}],
        [{"typ": "obj", "act": "upd", "rea": "r", "id": "kept", "dat": {"n": n}, "cid": "u"}],
    ]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_writes_sent_with_the_close_frame_are_applied_every_time(
    token: Mint, tmp_path: Path, backend: str
) -> None:
    storage = {"storage.backend": backend, "storage.path": str(tmp_path / "h.db")}
    async with running(storage) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
        await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "kept"})
        for n in range(10):
            await send_then_close_in_one_write(server.ws_url, token("rider"), writes(n))

            async def applied(n: int = n) -> bool:
                # A write that waits for storage finishes after the close: poll for it.
                bodies = [
                    await admin.request({"typ": "obj", "act": "rea", "rea": "r", "id": oid})
                    for oid in (f"created/{n}", f"set/{n}", "kept")
                ]
                return all(body.get("dat", {}).get("dat") == {"n": n} for body in bodies)

            await eventually(applied)
        await admin.close()


PROVIDER = """
import sys
from websockets.sync.client import connect
ws = connect(sys.argv[1], proxy=None, ping_interval=None, max_size=None)
ws.send("Bearer " + sys.argv[2])
ws.recv()
ws.send('[{"typ":"rea","act":"sub","id":"r","dat":{"eve":"noise"},"cid":"s"}]')
ws.recv()
print("ready", flush=True)
for _ in ws:
    pass
"""


async def test_a_stopped_provider_with_data_queued_is_gone_within_the_keepalive_bound(
    token: Mint,
) -> None:
    interval, timeout = 0.5, 2.0
    limits = {
        "limits.ping_interval": interval,
        "limits.ping_timeout": timeout,
        "limits.send_stall_timeout": 60.0,  # only the keepalive may end it here
    }
    async with running(limits) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
        await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "p/1"})
        await admin.ok(subscribe_msg("r"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PROVIDER,
            server.ws_url,
            token("p", dpv={"r": ["p/1"]}),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 10) == b"ready\n"
            await admin.wait_for(is_status("p/1", "con"))

            os.kill(process.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            noise = {"eve": "noise", "idp": "x", "dat": "n" * 32 * 1024}
            while not any(s.queue_high_water > 1024 * 1024 for s in server.hub.sessions.values()):
                await admin.ok({"typ": "rea", "act": "pub", "id": "r", "dat": noise})
            await admin.wait_for(is_status("p/1", "dis"), timeout=interval + timeout + 5)
            elapsed = time.monotonic() - stopped
            # Before: a graceful close behind the unread data added close_timeout (2 s here).
            assert elapsed < interval + timeout + 1.0, elapsed
            explained = await admin.ok({"typ": "sys", "act": "pre", "rea": "r", "id": "p/1"})
            assert explained["lastReason"] == "timeout"
        finally:
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
        await admin.close()
