"""Ingest benchmark: durable object updates per second through a real server.

What it measures is what a fleet of devices needs: many clients in parallel, each sending
``upd`` messages for its own objects and waiting for every reply before sending more. The
server replies to a write only once the batch holding it is committed to disk (group
commit, `server.sqlite_storage`), so every counted update is durable. The figure is
acknowledged updates divided by wall time, measured after the objects exist.

Each client sends frames of ``per_frame`` messages (a gateway reporting for its devices
does the same) with one frame in flight; ``per_frame=1`` is the one-message-per-frame
worst case. Clients speak the protocol on raw WebSockets (the server package does not use
the client library), so the load generator spends as little as possible per message.

``python -m server.ingest_bench`` starts its own ``hivectl serve`` on SQLite in a
temporary directory, with the per-connection rate limit lifted (it measures capacity, not
the limiter), unless ``--url`` and ``--token`` name a running server. `run_bench` and
`measure_ingest` are what a ``hivectl bench`` command calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from hivectl.core.tokens import SigningKey, mint_token

SERVING = re.compile(r"hivectl serving (ws://\S+/ws)")
STARTUP_TIMEOUT = 30.0
REALM = "bench"


@dataclass(frozen=True)
class IngestPlan:
    clients: int = 64
    updates_per_client: int = 2000
    per_frame: int = 20
    """Messages per frame; each client keeps one frame in flight."""
    objects_per_client: int = 100


@dataclass(frozen=True)
class IngestResult:
    plan: IngestPlan
    updates: int
    seconds: float
    updates_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BenchClient:
    """One connection: sends frames of requests, waits for all their replies."""

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self._cids = itertools.count()

    @classmethod
    async def open(cls, url: str, token: str, number: int) -> _BenchClient:
        ws = await connect(url, proxy=None, max_size=None, compression=None, ping_interval=None)
        await ws.send(f"Bearer {token}")
        reply = orjson.loads(await ws.recv())[0]
        if reply.get("res") != "suc":
            raise RuntimeError(f"authentication failed: {reply.get('err')}")
        return cls(ws, number)

    async def call(self, messages: list[dict[str, Any]]) -> None:
        """Send `messages` as one frame; return when every one has a success reply."""
        waiting = set()
        for message in messages:
            message["cid"] = cid = f"{self.number}.{next(self._cids)}"
            waiting.add(cid)
        await self.ws.send(orjson.dumps(messages).decode())  # text frames only
        while waiting:
            for reply in orjson.loads(await self.ws.recv()):
                if reply.get("res") == "err":
                    raise RuntimeError(f"server error {reply.get('erc')}: {reply.get('err')}")
                waiting.discard(reply.get("cid"))

    def object_id(self, index: int) -> str:
        return f"client-{self.number}/object-{index}"


def _update(realm: str, object_id: str, step: int) -> dict[str, Any]:
    return {
        "typ": "obj",
        "act": "upd",
        "rea": realm,
        "id": object_id,
        "loc": {"lon": 8.5 + step % 1000 / 1e4, "lat": 47.3, "spe": step % 30},
        "dat": {"step": step, "battery": 100 - step % 100},
    }


async def measure_ingest(
    url: str, token: str, plan: IngestPlan = IngestPlan(), realm: str = REALM
) -> IngestResult:
    """Create the objects, then time the plan's acknowledged updates."""
    opened = await asyncio.gather(*(_BenchClient.open(url, token, n) for n in range(plan.clients)))
    try:
        with contextlib.suppress(RuntimeError):  # 409: the realm exists already
            await opened[0].call([{"typ": "rea", "act": "cre", "id": realm}])
        await asyncio.gather(*(_create_objects(c, realm, plan.objects_per_client) for c in opened))
        started = time.perf_counter()
        await asyncio.gather(*(_send_updates(c, realm, plan) for c in opened))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.ws.close() for c in opened))
    updates = plan.clients * plan.updates_per_client
    return IngestResult(plan, updates, round(seconds, 3), round(updates / seconds, 1))


async def _create_objects(client: _BenchClient, realm: str, count: int) -> None:
    creates = [
        {"typ": "obj", "act": "cre", "rea": realm, "id": client.object_id(i)} for i in range(count)
    ]
    for start in range(0, count, 100):
        await client.call(creates[start : start + 100])


async def _send_updates(client: _BenchClient, realm: str, plan: IngestPlan) -> None:
    updates, objects = plan.updates_per_client, plan.objects_per_client
    for start in range(0, updates, plan.per_frame):
        steps = range(start, min(start + plan.per_frame, updates))
        await client.call([_update(realm, client.object_id(s % objects), s) for s in steps])


@contextlib.contextmanager
def bench_server(directory: Path, secret: str) -> Iterator[str]:
    """``hivectl serve`` on SQLite in `directory`, rate limit lifted; yields its URL."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HIVECTL_")}
    env.update(
        HIVECTL_AUTH_SECRET=secret,
        HIVECTL_LIMITS_MESSAGES_PER_SECOND="10000000",
        HIVECTL_LIMITS_BURST="10000000",
        HIVECTL_LOG_LEVEL="warning",
    )
    command = [sys.executable, "-m", "hivectl", "serve", "--port", "0", "--api-port", "0"]
    log_path = directory / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
    try:
        yield _wait_for_url(process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        match = SERVING.search(log_path.read_text())
        if match:
            return match[1]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"hivectl serve did not start:\n{log_path.read_text()}")


def run_bench(
    plan: IngestPlan = IngestPlan(), *, url: str | None = None, token: str | None = None
) -> IngestResult:
    """Measure against `url` (with `token`), or against a server started for the purpose."""
    if url is not None:
        if token is None:
            raise ValueError("a server given by URL needs a token")
        return asyncio.run(measure_ingest(url, token, plan))
    secret = secrets.token_urlsafe(32)
    token = mint_token(
        {"sub": "ingest-bench"}, SigningKey("HS256", secret.encode()), now=time.time(), ttl=3600
    )
    with (
        tempfile.TemporaryDirectory(prefix="hivectl-bench-") as directory,
        bench_server(Path(directory), secret) as served,
    ):
        return asyncio.run(measure_ingest(served, token, plan))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.ingest_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--updates", type=int, default=2000, help="updates per client")
    parser.add_argument("--per-frame", type=int, default=20, help="messages per frame")
    parser.add_argument("--objects", type=int, default=100, help="objects per client")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--token", help="token for --url (needs C and U in realm bench)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    plan = IngestPlan(args.clients, args.updates, args.per_frame, args.objects)
    result = run_bench(plan, url=args.url, token=args.token)
    if args.json:
        print(orjson.dumps(result.as_dict()).decode())
    else:
        print(
            f"{result.updates_per_second:,.0f} durable updates/s: {result.updates:,} updates"
            f" by {plan.clients} clients ({plan.per_frame} per frame, "
            f"{plan.clients * plan.objects_per_client:,} objects) in {result.seconds:.2f} s,"
            " each acknowledged after commit"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
