"""The baseline: the least a presence server must do, on bare `websockets`.

What `hivectl bench` compares every figure with (design.md §6): the ceiling this library sets
on this machine. It keeps the shape of a presence server and nothing else:

* a connection's first message says what it is and carries a JWT:
  ``{"role": "watch", "token": T}`` or ``{"role": "provide", "token": T}``. The token is
  verified on every connection with PyJWT's ``jwt.decode`` (HS256, the secret in
  ``$HIVECTL_BENCH_BASELINE_SECRET``; signature, ``exp`` and ``iat`` checked): the cost a
  presence server must pay to know who connects. Nothing is cached: every connect pays a
  full verification. A provider provides the object its token's ``sub`` names. The server
  answers ``ok`` (the counterpart of hivectl's authentication reply, so a client knows it is
  registered); a token that does not verify is answered ``refused`` and the connection
  closed (1008). No realms, no permissions, no storage, no ledger;
* when a provider registers and when its connection ends, one small JSON event
  (``{"id": ..., "cst": "con"|"dis"}``) goes to every watcher with
  `websockets.asyncio.server.broadcast`;
* whatever a provider sends afterwards (a location update) is rebroadcast to every watcher
  as it came.

Settings are websockets' defaults, keepalive included (a silent peer is dropped after
``ping_interval`` + ``ping_timeout`` + the closing handshake's ``close_timeout``). When the
bench sets hivectl's keepalive it passes the same values here, and the close timeout follows
them by hivectl's own rule (``min(ping_timeout, 10 s)``), so both servers ping on the same
schedule; hivectl then cuts a peer that missed its pong at once, where `websockets` first
waits for the close frame it will not get. One exception: the listen backlog is hivectl's
(`BACKLOG`), so that connect rates compare the work each server does, not the length of the
kernel's accept queue.

``HIVECTL_BENCH_BASELINE_SECRET=... python -m hivectl.bench.baseline --port 0`` listens on
loopback and prints ``baseline serving ws://127.0.0.1:PORT/`` when ready; SIGTERM or SIGINT
stops it. The secret comes from the environment, as hivectl's does, not the command line,
where ``ps`` would show it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import jwt
import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
ACCEPTED = "ok"
REFUSED = "refused"
ALGORITHM = "HS256"
SECRET_VARIABLE = "HIVECTL_BENCH_BASELINE_SECRET"
CLOSE_TIMEOUT = 10.0
BACKLOG = 1024
"""The same as hivectl's ``server.io.app.LISTEN_BACKLOG`` (a test keeps them equal)."""


class Baseline:
    """The watchers, and one handler per connection."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.watchers: set[ServerConnection] = set()

    async def handle(self, ws: ServerConnection) -> None:
        try:
            hello = orjson.loads(await ws.recv())
        except (ConnectionClosed, orjson.JSONDecodeError):
            return
        if not isinstance(hello, dict):
            return
        claims = self._verified(hello.get("token"))
        with contextlib.suppress(ConnectionClosed):
            if claims is None:
                await ws.send(REFUSED)
                await ws.close(1008)
            elif hello.get("role") == "watch":
                await self._watch(ws)
            elif hello.get("role") == "provide" and isinstance(claims.get("sub"), str):
                await self._provide(ws, claims["sub"])

    def _verified(self, token: object) -> dict[str, Any] | None:
        """The token's claims once its signature and times hold; None otherwise."""
        if not isinstance(token, str):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(token, self.secret, algorithms=[ALGORITHM])
        except jwt.InvalidTokenError:
            return None
        return claims

    async def _watch(self, ws: ServerConnection) -> None:
        self.watchers.add(ws)
        try:
            await ws.send(ACCEPTED)
            await ws.wait_closed()
        finally:
            self.watchers.discard(ws)

    async def _provide(self, ws: ServerConnection, object_id: str) -> None:
        self._publish(object_id, "con")
        try:
            await ws.send(ACCEPTED)
            async for message in ws:
                broadcast(self.watchers, message)
        finally:
            self._publish(object_id, "dis")

    def _publish(self, object_id: str, status: str) -> None:
        broadcast(self.watchers, orjson.dumps({"id": object_id, "cst": status}), text=True)


async def serve_baseline(
    port: int,
    secret: bytes,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
) -> None:
    """Serve on loopback until SIGTERM or SIGINT; keepalive arguments None keep the defaults."""
    options: dict[str, Any] = {}
    if ping_interval is not None:
        options["ping_interval"] = ping_interval
    if ping_timeout is not None:
        options["ping_timeout"] = ping_timeout
        options["close_timeout"] = min(ping_timeout, CLOSE_TIMEOUT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(Baseline(secret).handle, HOST, port, backlog=BACKLOG, **options) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"baseline serving ws://{HOST}:{bound}/", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hivectl.bench.baseline", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--ping-interval", type=float, help="seconds (default: websockets')")
    parser.add_argument("--ping-timeout", type=float, help="seconds (default: websockets')")
    args = parser.parse_args(argv)
    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        parser.error(f"the token secret comes in ${SECRET_VARIABLE}")
    asyncio.run(serve_baseline(args.port, secret.encode(), args.ping_interval, args.ping_timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
