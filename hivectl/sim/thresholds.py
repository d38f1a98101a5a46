"""Per-figure thresholds for `simulate riders`, in the manner of k6's: ``--threshold
'presence.p99<500ms'`` (repeatable) fails the run (exit 3) when that one figure is over.

A threshold is ``METRIC<LIMIT`` or ``METRIC<=LIMIT``:

* a latency, ``<name>.<stat>``: name one of the report's ``latency_ms`` (``connect``,
  ``auth``, ``update_rtt``, ``presence``, ``presence_abort``), stat one of ``p50``, ``p95``,
  ``p99``, ``max``; the limit a duration (``500ms``, ``1.5s``, ``1m``) or, as in k6, a bare
  number of milliseconds. A latency with no samples passes: there is nothing to judge.
* a presence count: ``lost``, ``duplicated``, ``late`` or ``unexpected`` (events), the limit a
  whole number.

One ``--max-p99-ms N`` is the same as ``<name>.p99<=N`` for every latency, ``--max-lost N``
as ``lost<=N``. Pure: text in, `Threshold` out; a report in, the lines it fails out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hivectl.core.settings import parse_duration

LATENCY_STATS = ("p50", "p95", "p99", "max")
COUNTS = ("lost", "duplicated", "late", "unexpected")
FORM = (
    "METRIC<LIMIT or METRIC<=LIMIT, e.g. 'presence.p99<500ms' (latencies: NAME.p50|p95|p99|max"
    " with a duration; counts: lost, duplicated, late, unexpected)"
)
_THRESHOLD = re.compile(r"\s*([a-z_]+(?:\.[a-z0-9_]+)?)\s*(<=?)\s*(\S+)\s*")


@dataclass(frozen=True)
class Threshold:
    """``metric`` (``presence.p99`` or ``lost``) must stay under ``limit`` (milliseconds for
    a latency, a count otherwise), or at it when ``inclusive``."""

    metric: str
    inclusive: bool
    limit: float

    @property
    def text(self) -> str:
        unit = " ms" if "." in self.metric else ""
        return f"{self.metric}{'<=' if self.inclusive else '<'}{self.limit:.15g}{unit}"

    def holds(self, value: float) -> bool:
        return value <= self.limit if self.inclusive else value < self.limit

    def value(self, report: Mapping[str, Any]) -> float | None:
        """The report's figure for this metric (None: a latency without samples)."""
        if "." in self.metric:
            name, stat = self.metric.split(".")
            value = report["latency_ms"][name][stat]
        else:
            value = report["presence"][self.metric]
        return None if value is None else float(value)


def parse_threshold(text: str, latencies: Sequence[str]) -> Threshold:
    """``"presence.p99<500ms"`` -> Threshold; ValueError saying the form when malformed."""
    match = _THRESHOLD.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {FORM}, got {text!r}")
    metric, operator, limit_text = match.groups()
    name, _, stat = metric.partition(".")
    if stat:
        if name not in latencies or stat not in LATENCY_STATS:
            raise ValueError(
                f"unknown metric {metric!r}: latencies are {', '.join(latencies)},"
                f" each with .{', .'.join(LATENCY_STATS)}"
            )
        limit = _milliseconds(limit_text)
    elif metric in COUNTS:
        if not limit_text.isdigit():
            raise ValueError(f"{metric} is a count: expected a whole number, got {limit_text!r}")
        limit = float(limit_text)
    else:
        raise ValueError(f"unknown metric {metric!r}: expected {FORM}")
    return Threshold(metric, operator == "<=", limit)


def _milliseconds(text: str) -> float:
    try:
        seconds = float(text) / 1000 if re.fullmatch(r"\d+(\.\d+)?", text) else None
        return (parse_duration(text) if seconds is None else seconds) * 1000
    except ValueError:
        raise ValueError(f"expected a duration like 500ms or 1.5s, got {text!r}") from None


def violations(report: Mapping[str, Any], thresholds: Iterable[Threshold]) -> list[str]:
    """One line per threshold the report crosses: ``presence.p99 612 ms, not <500 ms``."""
    lines = []
    for threshold in thresholds:
        value = threshold.value(report)
        if value is not None and not threshold.holds(value):
            unit = " ms" if "." in threshold.metric else ""
            bound = threshold.text.removeprefix(threshold.metric)
            lines.append(f"{threshold.metric} {value:g}{unit}, not {bound}")
    return lines
