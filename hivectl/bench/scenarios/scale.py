"""scale: one realm of N objects on a server with its default limits (issue 13, fleet scale).

A fleet is many objects in few realms, and what a small bench never shows is what grows
with the realm: memory, the full state a realm-wide subscriber is sent, a presence count,
and a gateway that provides for half the fleet going away at once. The phases, in order,
on one fresh server (the runner starts one per size and storage backend):

1. **setup**: the server's RSS empty, then the realm and its N objects, created with
   ``cre`` requests in frames from `setup_connections` connections, each paced under the
   default per-connection rate limit (a 429 is retried after a pause). Its time is reported
   apart: it is not a figure of the issue.
2. **memory**: the RSS again once `SETTLE_S` has passed; (loaded - empty) / N.
3. **presence count**: `PRE_QUERIES` ``pre`` counts over the realm, one after the other.
4. **full state**: one subscriber with ``exe``, then `scale_subscribers` at once. A subscriber
   holds the full state when the ids in its ``ful`` push and any ``dta`` ``cre`` pushes that
   follow (a server may send a large state in chunks) number N. A close (4008, slow
   consumer) ends its wait and is counted.
5. **updates**: one gateway connection whose ``dpv`` covers the realm sends ``set`` location
   updates, as many per frame as the limits allow, for ``scale_update_seconds``, in windows
   each closed by a ``sta`` (answered only after everything before it was handled).
   Applied = what the server counted in (``messagesIn``) minus what it rejected (429s).
6. **transitions**: a second gateway covers M = min(``scale_gateway_objects``, N/2) objects;
   `scale_subscribers` subscribers each hold a ``connectionStatusChanged`` pub/sub
   subscription (pattern ``*``) and a realm-wide object subscription. The gateway closes;
   a subscriber is done when it has seen M ``dis`` events and M ``upd`` pushes with
   ``cst: dis``. What it has not seen once the wait is over is lost.

The subscribers of phases 4 and 6 run in processes of their own (`hivectl.bench.subscriber`),
each parsing its own pushes, so that none waits for another's parsing; the load generator
starts them, lets them go at once and collects their outcomes. Every wait is bounded by
``scale_wait_s``: what has not come by then is reported, and the run goes on. Each measured
phase carries its own CPU window (`CpuWindow`), and the subscribers report theirs, so the
report can tell when the load side rather than the server set a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hivectl.bench.flavors import Hivectl, SetupError
from hivectl.bench.plan import REALM, BenchPlan
from hivectl.bench.procstat import CpuWindow, rss_bytes
from hivectl.bench.scenarios.common import REPLY_TIMEOUT_S, Context, percentiles
from hivectl.bench.subscriber import LINGER_S, authenticated
from hivectl.core.pacing import Pacer
from hivectl.core.settings import LimitsSettings
from hivectl.core.tokens import SigningKey, mint_token
from hivectl.core.wire import presence_filter, request
from hivectl.sim.recorder import LatencyRecorder

SETTLE_S = 1.0
"""Between the last create and the loaded RSS: work the creates caused has finished."""
PRE_QUERIES = 5
SETUP_TARGET_S = 5.0
"""Setup opens enough connections to create the realm in about this long under the default
rate limit (at most `MAX_SETUP_CONNECTIONS`)."""
MAX_SETUP_CONNECTIONS = 32
PACE_SHARE = 0.9
"""Setup paces itself at this share of the rate limit: clocks differ, 429s cost a retry."""
FRAME_SHARE = 0.5
"""A frame is at most this share of ``limits.max_message_size``."""
POLL_S = 0.05
"""How often a presence count is asked while waiting for presence to settle."""
TOKEN_TTL_S = 3600.0
GATEWAY_PREFIX = "g/"
"""Objects the disconnecting gateway covers are named ``g/<i>``, the others ``o/<i>``."""
READY_TIMEOUT_S = 30.0
"""Longest wait for subscriber processes to start, connect and subscribe."""
WINDOW_FRAMES = 4
"""Frames of updates between two ``sta`` requests of the updating gateway (its window)."""


def object_ids(objects: int, gateway_objects: int) -> list[str]:
    """The realm's object ids: the first `gateway_objects` match ``g/*``, the rest do not."""
    return [f"{GATEWAY_PREFIX if i < gateway_objects else 'o/'}{i}" for i in range(objects)]


def frame_size(message_bytes: int, limits: LimitsSettings) -> int:
    """Messages per frame: under the frame limit and well under the message size limit."""
    by_size = int(limits.max_message_size * FRAME_SHARE) // max(message_bytes, 1)
    return max(1, min(limits.max_messages_per_frame, by_size))


def setup_connections(objects: int, limits: LimitsSettings) -> int:
    """Connections that create `objects` in about `SETUP_TARGET_S` at the paced rate."""
    per_connection = limits.messages_per_second * PACE_SHARE * SETUP_TARGET_S
    return max(1, min(MAX_SETUP_CONNECTIONS, math.ceil(objects / per_connection)))


class _Session:
    """One authenticated connection of the load generator, for requests with replies."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._cids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, token: str) -> _Session:
        return cls(await authenticated(url, token))

    async def call(self, messages: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Send one frame of requests; their replies by cid (pushes in between are dropped)."""
        waiting = set()
        for message in messages:
            message["cid"] = cid = next(self._cids)
            waiting.add(cid)
        await self.ws.send(orjson.dumps(messages).decode())
        replies = {}
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while waiting:
                for message in orjson.loads(await self.ws.recv()):
                    cid = message.get("cid")
                    if cid in waiting:
                        waiting.discard(cid)
                        replies[cid] = message
        return replies

    async def one(self, message: dict[str, Any]) -> dict[str, Any]:
        (reply,) = (await self.call([message])).values()
        if reply.get("res") != "suc":
            raise SetupError(f"{message['typ']}/{message['act']} failed: {reply.get('err')}")
        return reply

    async def count(self, realm: str) -> tuple[int, int]:
        """(connected, disconnected) over the realm, from one ``pre`` count."""
        reply = await self.one(request("sys", "pre", rea=realm, dat=presence_filter("*")))
        return int(reply["dat"]["connected"]), int(reply["dat"]["disconnected"])

    async def messages_in(self) -> int:
        reply = await self.one(request("sys", "sta"))
        return int(reply["dat"]["messagesIn"])


async def run(ctx: Context) -> dict[str, Any]:
    if not isinstance(ctx.flavor, Hivectl):
        raise SetupError("scale runs against hivectl only: the baseline has no realms")
    key, plan, url = ctx.flavor.key, ctx.plan, ctx.url
    if len(plan.scale_sizes) != 1:  # each size needs a fresh server: the runner gives one
        raise SetupError("scale fills one realm per server: pass one size, --objects N")
    (objects,) = plan.scale_sizes
    gateway_objects = min(plan.scale_gateway_objects, objects // 2)
    limits = LimitsSettings()

    def token(claims: dict[str, Any]) -> str:
        return mint_token(claims, key, now=time.time(), ttl=TOKEN_TTL_S)

    admin_token = token({"sub": "bench-admin"})
    ids = object_ids(objects, gateway_objects)
    rss_empty = rss_bytes(ctx.server_pid) if ctx.server_pid else None
    setup = await _create(url, admin_token, REALM, ids, limits)
    await asyncio.sleep(SETTLE_S)
    rss_loaded = rss_bytes(ctx.server_pid) if ctx.server_pid else None
    per_object = None
    if rss_empty is not None and rss_loaded is not None:
        per_object = round((rss_loaded - rss_empty) / objects, 1)
    admin = await _Session.open(url, admin_token)
    try:
        counted = await _presence_count(admin, REALM, ctx.server_pid)
        one = await _full_state(url, admin_token, objects, 1, plan, ctx.server_pid)
        many = await _full_state(
            url, admin_token, objects, plan.scale_subscribers, plan, ctx.server_pid
        )
        gateway = token({"sub": "bench-gateway", "dpv": {REALM: ["*"]}})
        updates = await _updates(url, gateway, admin, ids, limits, plan, ctx.server_pid)
        partial = token({"sub": "bench-gateway-half", "dpv": {REALM: [f"{GATEWAY_PREFIX}*"]}})
        transitions = await _transitions(
            url, admin_token, partial, admin, gateway_objects, plan, ctx.server_pid
        )
    finally:
        await admin.ws.close()
    return {
        "objects": objects,
        "gateway_objects": gateway_objects,
        "subscribers": plan.scale_subscribers,
        "setup": setup,
        "rss_empty_bytes": rss_empty,
        "rss_loaded_bytes": rss_loaded,
        "bytes_per_object": per_object,
        "presence_count": counted,
        "full_state_one": one,
        "full_state_many": many,
        "updates": updates,
        "transitions": transitions,
    }


# -- setup -------------------------------------------------------------------------------------


def _create_message(realm: str, object_id: str, index: int) -> dict[str, Any]:
    """A fleet object as a gateway would create it: a position and a little data."""
    return request(
        "obj",
        "cre",
        rea=realm,
        id=object_id,
        loc={"lon": -0.1 + (index % 1000) / 1e4, "lat": 51.5 + (index // 1000) / 1e4},
        dat={"battery": index % 100},
    )


async def _create(
    url: str, token: str, realm: str, ids: Sequence[str], limits: LimitsSettings
) -> dict[str, Any]:
    """The realm and its objects, from several paced connections; how long it took."""
    started = time.monotonic()
    admin = await _Session.open(url, token)
    try:
        (reply,) = (await admin.call([request("rea", "cre", id=realm)])).values()
        if reply.get("res") != "suc" and reply.get("erc") != 409:
            raise SetupError(f"cannot create realm {realm}: {reply.get('err')}")
    finally:
        await admin.ws.close()
    sample = orjson.dumps({**_create_message(realm, ids[-1], len(ids)), "cid": 10**9})
    per_frame = frame_size(len(sample), limits)
    connections = setup_connections(len(ids), limits)
    retried = await asyncio.gather(
        *(
            _create_shard(
                url, token, realm, ids[offset::connections], offset, connections, per_frame, limits
            )
            for offset in range(connections)
        )
    )
    return {
        "seconds": round(time.monotonic() - started, 3),
        "connections": connections,
        "per_frame": per_frame,
        "retried": sum(retried),
    }


async def _create_shard(
    url: str,
    token: str,
    realm: str,
    shard: Sequence[str],
    offset: int,
    stride: int,
    per_frame: int,
    limits: LimitsSettings,
) -> int:
    """Create every object of `shard` (ids ``offset``, ``offset + stride``, ...) in frames,
    keeping under the rate limit with a `Pacer`; the 429s it retried."""
    rate = limits.messages_per_second * PACE_SHARE
    burst = min(limits.burst * PACE_SHARE, float(limits.burst - per_frame))
    per_frame = min(per_frame, max(1, int(burst)))
    pacer = Pacer(rate, max(0.0, burst - per_frame))
    session = await _Session.open(url, token)
    retried = 0
    todo = [(offset + i * stride, object_id) for i, object_id in enumerate(shard)]
    try:
        while todo:
            batch, todo = todo[:per_frame], todo[per_frame:]
            await asyncio.sleep(pacer.delay(len(batch), time.monotonic()))
            messages = [_create_message(realm, object_id, index) for index, object_id in batch]
            replies = await session.call(messages)
            failed = []
            for (index, object_id), message in zip(batch, messages, strict=True):
                reply = replies[message["cid"]]
                if reply.get("erc") == 429:
                    failed.append((index, object_id))
                elif reply.get("res") != "suc":
                    raise SetupError(f"cannot create {object_id}: {reply.get('err')}")
            if failed:
                retried += len(failed)
                todo = failed + todo
                await asyncio.sleep(len(failed) / rate)
    finally:
        await session.ws.close()
    return retried


# -- presence count ----------------------------------------------------------------------------


async def _presence_count(admin: _Session, realm: str, server_pid: int | None) -> dict[str, Any]:
    latency = LatencyRecorder()
    window = CpuWindow(server_pid)
    window.start()
    connected = disconnected = 0
    for _ in range(PRE_QUERIES):
        started = time.monotonic()
        connected, disconnected = await admin.count(realm)
        latency.record(time.monotonic() - started)
    return {
        "latency_ms": percentiles(latency),
        "connected": connected,
        "disconnected": disconnected,
        "cpu": window.stop(),
    }


async def _settle(admin: _Session, realm: str, connected: int, wait_s: float) -> float | None:
    """Wait until the realm counts `connected` connected objects; how long, None if never."""
    started = time.monotonic()
    deadline = started + wait_s
    while time.monotonic() < deadline:
        if (await admin.count(realm))[0] == connected:
            return round(time.monotonic() - started, 3)
        await asyncio.sleep(POLL_S)
    return None


# -- subscribers, each in a process of its own (`hivectl.bench.subscriber`) -------------------


class _Subscribers:
    """`count` subscriber processes given one order: started, ready, let go, heard from."""

    def __init__(self, order: dict[str, Any], count: int) -> None:
        self.order = order
        self.count = count
        self.children: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> _Subscribers:
        line = orjson.dumps(self.order) + b"\n"
        for _ in range(self.count):
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hivectl.bench.subscriber",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self.children.append(child)
            assert child.stdin is not None
            child.stdin.write(line)
        async with asyncio.timeout(READY_TIMEOUT_S):
            for child in self.children:
                ready = await self._line(child)
                if not ready.get("ready"):
                    raise SetupError(f"a subscriber process failed: {ready.get('error')}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for child in self.children:
            if child.returncode is None:
                child.kill()
            await child.wait()

    @staticmethod
    async def _line(child: asyncio.subprocess.Process) -> dict[str, Any]:
        assert child.stdout is not None
        line = await child.stdout.readline()
        return dict(orjson.loads(line)) if line else {"error": f"exit {await child.wait()}"}

    async def go(self) -> float:
        """Let them all start at once; when, on the monotonic clock they share."""
        started = time.monotonic()
        for child in self.children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
        await asyncio.gather(*(c.stdin.drain() for c in self.children if c.stdin is not None))
        return started

    async def outcomes(self) -> list[dict[str, Any]]:
        """Each one's outcome; one that does not answer in time counts as nothing seen."""
        wait_s = float(self.order["wait_s"]) + LINGER_S + READY_TIMEOUT_S

        async def outcome(child: asyncio.subprocess.Process) -> dict[str, Any]:
            try:
                async with asyncio.timeout(wait_s):
                    return await self._line(child)
            except TimeoutError:
                return {"error": f"no answer within {wait_s:g} s"}

        return list(await asyncio.gather(*(outcome(child) for child in self.children)))


def _group(outcomes: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """What a group of subscribers did: completed, slowest, closed (by code), their CPU."""
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        raise SetupError(f"a subscriber process failed: {errors[0]}")
    done = [round(o["done_at"] - started, 3) for o in outcomes if o["done_at"] is not None]
    closes = Counter(str(o["close"]) for o in outcomes if o["close"] is not None)
    cpu = [float(o["cpu_s"]) for o in outcomes]
    return {
        "subscribers": len(outcomes),
        "complete": len(done),
        "slowest_s": max(done) if len(done) == len(outcomes) else None,
        "fastest_s": min(done) if done else None,
        "closed": sum(closes.values()),
        "close_codes": dict(closes),
        "subscriber_cpu_s": round(sum(cpu), 3),
        "subscriber_cpu_max_s": max(cpu),
    }


async def _full_state(
    url: str, token: str, objects: int, count: int, plan: BenchPlan, server_pid: int | None
) -> dict[str, Any]:
    """`count` subscribers with ``exe`` at once: how long until each holds every object."""
    order = {
        "url": url,
        "token": token,
        "realm": REALM,
        "mode": "full",
        "expected": objects,
        "wait_s": plan.scale_wait_s,
    }
    async with _Subscribers(order, count) as subscribers:
        window = CpuWindow(server_pid)
        window.start()
        started = await subscribers.go()
        outcomes = await subscribers.outcomes()
        measured = window.stop()
    return {
        **_group(outcomes, started),
        "fewest_held": min(o["held"] for o in outcomes),
        "cpu": measured,
    }


# -- one gateway's updates ---------------------------------------------------------------------


def _set_message(realm: str, object_id: str, step: int) -> dict[str, Any]:
    return request(
        "obj", "set", rea=realm, id=object_id, loc={"lon": -0.1 + (step % 1000) / 1e4, "lat": 51.5}
    )


async def _updates(
    url: str,
    token: str,
    admin: _Session,
    ids: Sequence[str],
    limits: LimitsSettings,
    plan: BenchPlan,
    server_pid: int | None,
) -> dict[str, Any]:
    """One gateway connection sends updates for the realm's objects as fast as it may:
    paced (`Pacer`) at `PACE_SHARE` of the rate the server allows a connection that
    provides them all (``messages_per_second`` + ``messages_per_object`` each,
    `server.model.ratelimit`), as a gateway that keeps to its limit does. Its burst is left
    unused, so the figure is the sustained rate: at 10,000 objects about 19,000 updates/s;
    at 100,000 the allowance is more than one connection sends.

    Closed loop with a window: after every `WINDOW_FRAMES` frames a ``sta`` request, whose
    reply comes once the server has handled everything before it; the gateway sends on
    while one window is unanswered and waits at two. A gateway that sent blindly would
    pile megabytes up in the server's socket, with the server's keepalive pings behind
    them. A gateway the server closes (4029) has applied nothing after its close: the rate
    is taken over the whole period.
    """
    gateway = await _Session.open(url, token)
    connected_after_s = await _settle(admin, REALM, len(ids), plan.scale_wait_s)
    per_frame = frame_size(len(orjson.dumps(_set_message(REALM, ids[-1], 999))), limits)
    allowed = limits.messages_per_second + limits.messages_per_object * len(ids)
    pacer = Pacer(allowed * PACE_SHARE)
    rejected = answered = 0
    answer = asyncio.Event()
    answered_at: float | None = None
    closed_at: float | None = None

    async def read() -> None:
        nonlocal rejected, answered, answered_at, closed_at
        with contextlib.suppress(ConnectionClosed):
            async for frame in gateway.ws:
                for message in orjson.loads(frame):
                    if message.get("cid") == answered + 1:  # handled, if only with a 429
                        answered, answered_at = answered + 1, time.monotonic()
                        answer.set()
                    elif message.get("erc") == 429:
                        rejected += 1
        closed_at = time.monotonic()
        answer.set()

    async def answered_up_to(windows: int) -> None:
        while answered < windows and closed_at is None:
            answer.clear()
            await answer.wait()

    before = await admin.messages_in()
    reader = asyncio.create_task(read())
    window = CpuWindow(server_pid)
    window.start()
    started = time.monotonic()
    stop_at = started + plan.scale_update_seconds
    sent = step = windows = 0
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(plan.scale_update_seconds + plan.scale_wait_s):
            while time.monotonic() < stop_at and closed_at is None:
                for _ in range(WINDOW_FRAMES):
                    frame = []
                    for _ in range(per_frame):
                        frame.append(_set_message(REALM, ids[step % len(ids)], step))
                        step += 1
                    await asyncio.sleep(pacer.delay(len(frame), time.monotonic()))
                    await gateway.ws.send(orjson.dumps(frame).decode())
                    sent += len(frame)
                windows += 1
                stats = [request("sys", "sta", cid=windows)]
                await gateway.ws.send(orjson.dumps(stats).decode())
                await answered_up_to(windows - 1)
            await answered_up_to(windows)
    measured = window.stop()
    ended = answered_at if closed_at is None else closed_at
    closed = gateway.ws.close_code if closed_at is not None else None
    after = await admin.messages_in()
    handled = after - before - 1 - answered  # less the admin's sta and the gateway's
    applied = max(0, handled - rejected)
    seconds = max((ended or time.monotonic()) - started, plan.scale_update_seconds)
    await gateway.ws.close()
    await reader
    disconnected_after_s = await _settle(admin, REALM, 0, plan.scale_wait_s)
    return {
        "per_frame": per_frame,
        "sent": sent,
        "handled": handled,
        "applied": applied,
        "rejected": rejected,
        "updates_per_s": round(applied / seconds, 1),
        "seconds": round(seconds, 3),
        "closed": closed,
        "connected_after_s": connected_after_s,
        "disconnected_after_s": disconnected_after_s,
        "cpu": measured,
    }


# -- a gateway goes: the transitions -----------------------------------------------------------


async def _transitions(
    url: str,
    subscriber_token: str,
    gateway_token: str,
    admin: _Session,
    expected: int,
    plan: BenchPlan,
    server_pid: int | None,
) -> dict[str, Any]:
    """A gateway covering `expected` objects closes; each subscriber must see every one go."""
    gateway = await _Session.open(url, gateway_token)
    connected_after_s = await _settle(admin, REALM, expected, plan.scale_wait_s)
    order = {
        "url": url,
        "token": subscriber_token,
        "realm": REALM,
        "mode": "transitions",
        "expected": expected,
        "wait_s": plan.scale_wait_s,
    }
    async with _Subscribers(order, plan.scale_subscribers) as subscribers:
        window = CpuWindow(server_pid)
        window.start()
        started = await subscribers.go()
        await gateway.ws.close()
        outcomes = await subscribers.outcomes()
        measured = window.stop()
    return {
        "transitions": expected,
        "connected_after_s": connected_after_s,
        **_group(outcomes, started),
        "lost_events": sum(expected - o["events"] for o in outcomes),
        "lost_updates": sum(expected - o["updates"] for o in outcomes),
        "cpu": measured,
    }


# -- a restart on the populated database (run by the runner, which restarts the server) --------


async def restarted(url: str, key: SigningKey, objects: int, started: float) -> dict[str, Any]:
    """Seconds from `started` (the restart, on this process's monotonic clock) until
    ``/readyz`` says ready and until the realm answers with all its objects, and how many
    it counted."""
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    give_up = time.monotonic() + REPLY_TIMEOUT_S
    while not await _ready(host, port):
        if time.monotonic() > give_up:
            raise TimeoutError(f"{url} was not ready {REPLY_TIMEOUT_S:g} s after its start")
        await asyncio.sleep(POLL_S)
    ready = time.monotonic()
    token = mint_token({"sub": "bench-admin"}, key, now=time.time(), ttl=TOKEN_TTL_S)
    session = await _Session.open(url, token)
    try:
        await session.one(request("rea", "rea", id=REALM))
        connected, disconnected = await session.count(REALM)
    finally:
        await session.ws.close()
    readable = time.monotonic()
    return {
        "ready_s": round(ready - started, 3),
        "readable_s": round(readable - started, 3),
        "objects_loaded": connected + disconnected,
        "objects": objects,
    }


async def _ready(host: str, port: int) -> bool:
    """Whether ``GET /readyz`` answers 200 (a refused connection is not ready yet)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(f"GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status = await reader.readline()
    finally:
        writer.close()
    return status.split()[1:2] == [b"200"]
