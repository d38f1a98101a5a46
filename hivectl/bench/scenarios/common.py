"""What the scenarios share: their context, provider connects, the presence tracker.

Presence events are matched with the simulator's `PresenceLedger` (expected transitions per
object, in order; what is never seen is lost, what repeats is duplicated), and latencies go
into its mergeable `LatencyRecorder` -- one definition of "lost" and one of "p99" for the
whole project.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hivectl.bench.flavors import Flavor, SetupError, open_ws
from hivectl.bench.plan import BenchPlan
from hivectl.sim.ledger import Cause, Match, PresenceLedger, Status
from hivectl.sim.recorder import LatencyRecorder

REPLY_TIMEOUT_S = 30.0
"""Longest wait for a hello's reply before the connect counts as failed."""


@dataclass(frozen=True)
class Context:
    flavor: Flavor
    url: str
    plan: BenchPlan
    server_pid: int | None
    ping_interval: float
    ping_timeout: float
    """The server's keepalive (the plan's, or the server's default): *silent* needs it."""
    load_processes: int = 1
    """Processes *connect*, *churn* and *fanout* spread their connections over."""
    new_tokens: bool = False
    """*churn*: a new token for every connect (new riders) instead of one per provider."""


Scenario = Callable[[Context], Coroutine[Any, Any, dict[str, Any]]]


def percentiles(recorder: LatencyRecorder, scale: float = 1000.0) -> dict[str, float | int | None]:
    """count, min, p50, p90, p99 and max, seconds times `scale` (milliseconds by default);
    None when nothing was recorded."""

    def scaled(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * scale, 3)

    empty = not recorder.count
    return {
        "count": recorder.count,
        "min": None if empty else scaled(recorder.minimum),
        "p50": scaled(recorder.percentile(50)),
        "p90": scaled(recorder.percentile(90)),
        "p99": scaled(recorder.percentile(99)),
        "max": None if empty else scaled(recorder.maximum),
    }


async def register(flavor: Flavor, url: str, hello: str) -> tuple[ClientConnection, float]:
    """Connect, send the hello, wait for its acceptance; (connection, when the hello left)."""
    ws = await open_ws(url)
    try:
        sent = time.monotonic()
        await ws.send(hello)
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            reply = await ws.recv()
        if not flavor.accepted(reply):
            raise SetupError(f"registration refused: {reply!r:.200}")
    except BaseException:
        await ws.close()
        raise
    return ws, sent


async def close_all(connections: list[ClientConnection], in_flight: int) -> None:
    """Close cleanly, `in_flight` at a time (a close is a handshake too)."""
    gate = asyncio.Semaphore(in_flight)

    async def close(ws: ClientConnection) -> None:
        async with gate:
            await ws.close()

    await asyncio.gather(*(close(ws) for ws in connections))


class PresenceTracker:
    """One watcher's presence events, matched against the transitions the scenario caused.

    The scenario says when a provider came up (`up`, with the time its hello left) and when
    it went (`down`, when its close started); `run` feeds what the watcher sees. Join and
    leave latencies are recorded per matched transition.
    """

    def __init__(self, flavor: Flavor, ws: ClientConnection, *, deadline_s: float) -> None:
        self.flavor = flavor
        self.ws = ws
        self.ledger = PresenceLedger(deadline_s=deadline_s, abort_deadline_s=deadline_s)
        self.latency: dict[Status, LatencyRecorder] = {
            "con": LatencyRecorder(),
            "dis": LatencyRecorder(),
        }
        self.last_seen_at: float | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PresenceTracker:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.ws.close()

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                now = time.monotonic()
                for object_id, status in self.flavor.presence(frame):
                    self._note(self.ledger.seen(object_id, status, now))
                    self.last_seen_at = now
                self._changed.set()

    def up(self, conn: str, object_id: str, at: float) -> None:
        self._note(self.ledger.provider_up(conn, (object_id,), at))

    def down(self, conn: str, at: float, cause: Cause = "close") -> None:
        self._note(self.ledger.provider_down(conn, cause, at))

    def _note(self, matches: list[Match]) -> None:
        for match in matches:
            self.latency[match.expected.status].record(match.latency_s)

    async def settled(self, within_s: float) -> bool:
        """Wait until every expected transition was seen; False if `within_s` passed first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self.ledger.pending():
                    self._changed.clear()
                    await self._changed.wait()
        return not self.ledger.pending()

    def summary(self) -> dict[str, int]:
        return self.ledger.summary().as_dict()
