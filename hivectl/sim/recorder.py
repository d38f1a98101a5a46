"""Latency recording in constant memory, HDR-histogram style: mergeable, never averaged.

Why not a list of samples: a long run at thousands of updates per second would grow without
bound, and a bounded random reservoir cannot be merged exactly. Why not averaging p99s of
parts: the p99 of a union is not any mean of the parts' p99s. A log-bucketed histogram
avoids both: bucket ``i`` holds values in ``(FLOOR * GROWTH**(i-1), FLOOR * GROWTH**i]``,
so every value is known to within ``RELATIVE_ERROR`` (1 %) whatever its size, memory is
bounded by the number of distinct buckets (about 2,200 from 1 µs to an hour), and merging
two recorders is adding their counts -- the merged percentiles are exactly those of one
recorder that saw every sample.

Percentiles use the nearest-rank definition: p is the smallest recorded value with at least
p % of the samples at or below it. The answer is the bucket's upper bound, clamped to the
exact minimum and maximum, which are kept alongside (as are count and sum, for the mean).
Values at or below `FLOOR` share the first bucket; negative values count as zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FLOOR_S = 1e-6
RELATIVE_ERROR = 0.01
_GROWTH = 1.0 + RELATIVE_ERROR
_LOG_GROWTH = math.log(_GROWTH)
PERCENTILES = (50.0, 95.0, 99.0)


class LatencyRecorder:
    """Seconds in, percentiles out; `merge` combines recorders exactly."""

    __slots__ = ("_buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def record(self, seconds: float) -> None:
        value = max(0.0, seconds)
        self._buckets[_bucket(value)] += 1
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def merge(self, other: LatencyRecorder) -> None:
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def copy(self) -> LatencyRecorder:
        clone = LatencyRecorder()
        clone.merge(self)
        return clone

    def state(self) -> dict[str, Any]:
        """Everything the recorder holds, JSON-ready: a recorder filled in another process
        (a bench load process) travels as this and is merged exactly (`from_state`)."""
        return {
            "buckets": [[index, count] for index, count in self._buckets.items()],
            "count": self.count,
            "total": self.total,
            "minimum": self.minimum if self.count else None,
            "maximum": self.maximum if self.count else None,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatencyRecorder:
        recorder = cls()
        recorder._buckets.update({int(index): int(count) for index, count in state["buckets"]})
        recorder.count = int(state["count"])
        recorder.total = float(state["total"])
        if recorder.count:
            recorder.minimum = float(state["minimum"])
            recorder.maximum = float(state["maximum"])
        return recorder

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile in seconds (None when empty)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(self.maximum, max(self.minimum, _upper(index)))
        return self.maximum

    def summary_ms(self) -> dict[str, float | int | None]:
        """count, min, mean, p50, p95, p99 and max in milliseconds (None when empty)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000.0, 3)

        empty = not self.count
        summary: dict[str, float | int | None] = {
            "count": self.count,
            "min": None if empty else ms(self.minimum),
            "mean": None if empty else ms(self.total / self.count),
        }
        for p in PERCENTILES:
            summary[f"p{p:g}"] = ms(self.percentile(p))
        summary["max"] = None if empty else ms(self.maximum)
        return summary


def _bucket(value: float) -> int:
    if value <= FLOOR_S:
        return 0
    return max(1, math.ceil(math.log(value / FLOOR_S) / _LOG_GROWTH - 1e-9))


def _upper(index: int) -> float:
    return float(FLOOR_S * _GROWTH**index)


@dataclass
class WindowedRecorder:
    """The recent past for a live view: the current and the previous window, merged.

    Time is passed in. A window rolls over after `window_s`; `recent` covers between one and
    two windows, enough for "p95 right now" without keeping samples.
    """

    window_s: float = 5.0
    _current: LatencyRecorder | None = None
    _previous: LatencyRecorder | None = None
    _started: float | None = None

    def record(self, seconds: float, now: float) -> None:
        self._roll(now)
        assert self._current is not None
        self._current.record(seconds)

    def recent(self, now: float) -> LatencyRecorder:
        self._roll(now)
        merged = LatencyRecorder()
        for part in (self._previous, self._current):
            if part is not None:
                merged.merge(part)
        return merged

    def _roll(self, now: float) -> None:
        if self._started is None or self._current is None:
            self._started, self._current = now, LatencyRecorder()
            return
        elapsed = now - self._started
        if elapsed >= 2 * self.window_s:
            self._previous, self._current, self._started = None, LatencyRecorder(), now
        elif elapsed >= self.window_s:
            self._previous, self._current = self._current, LatencyRecorder()
            self._started += self.window_s
