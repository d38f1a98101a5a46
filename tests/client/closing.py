"""A tiny WebSocket server that authenticates every client and then closes it with 4008,
what a client in a slow-consumer loop sees: at once, or once it has subscribed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.server import ServerConnection, serve

AUTH_OK = '[{"typ":"sys","act":"aut","res":"suc","dat":{"version":"t","buildDate":"t"}}]'


@dataclass
class ClosingServer:
    """Closes each connection `hold` seconds after authenticating it, or, with
    `after_subscribing`, once it asked for an object subscription (answering every request
    before that with success). Records when each connection was accepted."""

    hold: float = 0.0
    after_subscribing: bool = False
    accepted: list[float] = field(default_factory=list)
    url: str = ""

    async def handler(self, ws: ServerConnection) -> None:
        self.accepted.append(time.monotonic())
        await ws.recv()  # the Bearer frame
        await ws.send(AUTH_OK)
        while self.after_subscribing:
            messages = orjson.loads(await ws.recv())
            replies = [_success(message) for message in messages if "cid" in message]
            await ws.send(orjson.dumps(replies).decode())
            if any(m.get("typ") == "sub" and m.get("act") == "cre" for m in messages):
                break
        if self.hold:
            await asyncio.sleep(self.hold)
        await ws.close(4008, "slow consumer")


def _success(message: dict[str, object]) -> dict[str, object]:
    reply: dict[str, object] = {"typ": message.get("typ"), "act": message.get("act")}
    reply.update(cid=message["cid"], res="suc")
    if (message.get("typ"), message.get("act")) == ("rea", "rea"):
        reply["dat"] = {"id": message.get("id"), "lab": "", "dat": {}}
    return reply


@contextlib.asynccontextmanager
async def closing_server(
    *, hold: float = 0.0, after_subscribing: bool = False
) -> AsyncIterator[ClosingServer]:
    server = ClosingServer(hold, after_subscribing)
    async with serve(server.handler, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/ws"
        yield server
