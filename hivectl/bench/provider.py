"""A provider process for the *silent* scenario: it registers, then is stopped.

The load generator starts ``python -m hivectl.bench.provider``, writes one JSON line to its
stdin -- ``{"url": ..., "hellos": [...], "stagger_s": ...}`` -- and reads one JSON line per
registered connection (``{"index": i, "reply": ...}``). The connections open ``stagger_s``
/ n apart, so each has its own phase in the server's ping cycle. Then the load generator
stops this process with SIGSTOP: its sockets stay open, the kernel still acknowledges
every byte, but nobody answers a ping -- the failure keepalive exists for (a phone losing
its network, a frozen device). A separate process because a stopped process cannot be the
one that watches.

It exits by itself after `LIFETIME_S` at the latest; the load generator kills it long
before.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from hivectl.bench.flavors import open_ws

LIFETIME_S = 600.0


async def provide(url: str, hellos: list[str], stagger_s: float) -> None:
    connections: list[ClientConnection] = []
    for index, hello in enumerate(hellos):
        if index:
            await asyncio.sleep(stagger_s / len(hellos))
        ws = await open_ws(url)
        connections.append(ws)
        await ws.send(hello)
        reply = await ws.recv()
        text = reply if isinstance(reply, str) else reply.decode()
        print(orjson.dumps({"index": index, "reply": text}).decode(), flush=True)
    await asyncio.sleep(LIFETIME_S)


def main() -> int:
    order: dict[str, Any] = orjson.loads(sys.stdin.readline())
    asyncio.run(provide(order["url"], order["hellos"], float(order["stagger_s"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
