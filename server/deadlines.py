"""Deadlines one fixed delay away, for many connections, on one event-loop timer.

Each connection has deadlines that are nearly always cancelled: its opening handshake
(``open_timeout``), its authentication (``auth_timeout``), the peer's answer to a close
(``close_timeout``). `loop.call_later` gives each one a `TimerHandle` (a context copy, a
heap push, then a cancellation the loop has to sweep out of its heap): about 5 % of the
server's CPU in a connect + close (``hivectl bench`` churn, py-spy). Deadlines with the same
delay fall due in the order they were set, so a `Deadlines` keeps them in a FIFO queue and
arms one loop timer at a time, for the first one still live. A cancelled entry only loses
its callback; cancelled entries at the front are dropped whenever one is added or one falls
due, so the queue holds about what is live, not everything set within the last delay.

Timing is the loop's: a callback runs when its deadline (the loop's clock at `add` plus the
delay) has passed, as with `call_later`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

Entry = list[Any]
"""``[deadline, callback, argument]``; the callback is None once cancelled."""

_EARLY = 0.001
"""The loop runs a timer up to its clock resolution early: so may a deadline."""


class Deadlines:
    """``callback(argument)`` `delay` seconds after `add`, unless cancelled first."""

    __slots__ = ("_loop", "_queue", "_timer", "delay")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._queue: deque[Entry] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first `add` (every later one runs in it too)."""

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, callback: Callable[[Any], object], argument: Any) -> Entry:
        """Set a deadline; `cancel` the entry returned to call it off."""
        queue = self._queue
        while queue and queue[0][1] is None:
            queue.popleft()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        entry: Entry = [loop.time() + self.delay, callback, argument]
        queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry[0], self._due)
        return entry

    @staticmethod
    def cancel(entry: Entry) -> None:
        entry[1] = entry[2] = None

    def close(self) -> None:
        """Call off every deadline (the server is stopping)."""
        self._queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        queue = self._queue
        loop = asyncio.get_running_loop()
        now = loop.time() + _EARLY
        while queue:
            entry = queue[0]
            callback = entry[1]
            if callback is None:
                queue.popleft()
                continue
            if entry[0] > now:
                if self._timer is not None:  # armed by a callback's own `add`
                    self._timer.cancel()
                self._timer = loop.call_at(entry[0], self._due)
                return
            queue.popleft()
            argument = entry[2]
            entry[1] = entry[2] = None
            callback(argument)
