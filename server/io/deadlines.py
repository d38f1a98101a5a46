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
import heapq
import itertools
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


class Moments:
    """``callback(argument)`` at a moment of the loop's clock, unless cancelled first: one
    loop timer for many deadlines that are each their own distance away (a token's expiry).

    A heap instead of `Deadlines`' queue; a cancelled entry loses its callback and stays in
    the heap until it reaches the top, or until cancelled entries are most of the heap,
    which is then rebuilt without them (what the loop does with its own timers).
    """

    __slots__ = ("_cancelled", "_heap", "_loop", "_order", "_timer")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Entry]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def add(self, delay: float, callback: Callable[[Any], object], argument: Any) -> Entry:
        """Set a deadline `delay` seconds from now; `cancel` the entry returned to call it off."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        when = loop.time() + delay
        entry: Entry = [when, callback, argument]
        heap = self._heap
        heapq.heappush(heap, (when, next(self._order), entry))
        if heap[0][2] is entry:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._due)
        return entry

    def cancel(self, entry: Entry) -> None:
        if entry[1] is None:
            return
        entry[1] = entry[2] = None
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 64 and self._cancelled * 2 > len(heap):
            self._heap = [item for item in heap if item[2][1] is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def close(self) -> None:
        """Call off every deadline (the server is stopping)."""
        for _, _, entry in self._heap:
            entry[1] = entry[2] = None
        self._heap.clear()
        self._cancelled = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        heap = self._heap
        loop = asyncio.get_running_loop()
        now = loop.time() + _EARLY
        while heap:
            when, _, entry = heap[0]
            callback = entry[1]
            if callback is None:
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if when > now:
                if self._timer is not None:  # armed by a callback's own `add`
                    self._timer.cancel()
                self._timer = loop.call_at(when, self._due)
                return
            heapq.heappop(heap)
            argument = entry[2]
            entry[1] = entry[2] = None
            callback(argument)
