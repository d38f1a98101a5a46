"""The run's counters and the end-of-run report built from them.

`RunStats` is what the driver counts while running; `build_report` turns it, the ledger's
summary and the plan into one JSON-ready dictionary (the schema of ``--json``, documented in
the README); `threshold_violations` says which ``--max-*`` limits the report crosses;
`LiveSnapshot` is what the live panel shows while running. All pure: the driver owns the
clock and passes elapsed times in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hivectl.sim.ledger import LedgerSummary
from hivectl.sim.plan import Plan
from hivectl.sim.recorder import LatencyRecorder

LATENCIES = ("connect", "auth", "update_rtt", "presence", "presence_abort")
"""connect: TCP + WebSocket handshake; auth: Bearer sent -> reply; update_rtt: update due ->
acknowledged; presence: Bearer sent / close started -> watcher saw the event; presence_abort:
abort (or server drop) -> watcher saw the disconnect."""


@dataclass
class RunStats:
    connect_attempts: int = 0
    connects: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    closes: int = 0
    aborts: int = 0
    dropped_by_server: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    peak_open: int = 0
    updates_due: int = 0
    updates_sent: int = 0
    updates_acked: int = 0
    update_failures: Counter[str] = field(default_factory=Counter)
    updates_late: int = 0
    updates_missed: int = 0
    updates_interrupted: int = 0
    watcher_reconnects: int = 0
    latency: dict[str, LatencyRecorder] = field(
        default_factory=lambda: {name: LatencyRecorder() for name in LATENCIES}
    )

    def opened(self) -> None:
        self.connects += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)


@dataclass(frozen=True)
class LiveSnapshot:
    """What the live panel shows, taken a few times a second while running."""

    elapsed_s: float
    duration_s: float
    realm: str
    planned_connections: int
    open_connections: int
    objects_online: int
    objects: int
    connects: int
    connect_failures: int
    updates_sent: int
    updates_acked: int
    updates_failed: int
    updates_late: int
    updates_per_s: float
    presence_expected: int
    presence_matched: int
    presence_pending: int
    update_p95_ms: float | None
    presence_p95_ms: float | None
    stopping: bool


@dataclass(frozen=True)
class OpenFiles:
    """The RLIMIT_NOFILE outcome: what we have, what the run needs, and why if too little."""

    soft: int | None
    hard: int | None
    needed: int
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"soft": self.soft, "hard": self.hard, "needed": self.needed, "note": self.note}


def build_report(
    *,
    plan: Plan,
    realm: str,
    url: str,
    stats: RunStats,
    presence: LedgerSummary,
    elapsed_s: float,
    interrupted: bool,
    connected_at_start: int,
    connected_at_end: int | None,
    open_files: OpenFiles,
    max_p99_ms: float | None = None,
    max_lost: int | None = None,
) -> dict[str, Any]:
    """The report as plain JSON types; `threshold_violations` reads its numbers back."""
    params = plan.params
    seconds = max(elapsed_s, 1e-9)
    report: dict[str, Any] = {
        "realm": realm,
        "url": url,
        "seed": params.seed,
        "plan": {
            "riders": params.riders,
            "devices_per_rider": params.devices_per_rider,
            "gateways": params.gateways,
            "connections": len(plan.connections),
            "duration_s": params.duration_s,
            "ramp_up_s": params.ramp_up_s,
            "update_interval_s": params.update_interval_s,
            "churn_per_min": params.churn_per_min,
            "offline_s": list(params.offline_s),
            "abort_ratio": params.abort_ratio,
            "planned_drops": plan.planned_drops,
        },
        "elapsed_s": round(elapsed_s, 3),
        "interrupted": interrupted,
        "connections": {
            "attempts": stats.connect_attempts,
            "opened": stats.connects,
            "failed": sum(stats.connect_failures.values()),
            "failures": dict(sorted(stats.connect_failures.items())),
            "closed": stats.closes,
            "aborted": stats.aborts,
            "dropped_by_server": dict(sorted(stats.dropped_by_server.items())),
            "peak_open": stats.peak_open,
        },
        "updates": {
            "due": stats.updates_due,
            "sent": stats.updates_sent,
            "acknowledged": stats.updates_acked,
            "failed": sum(stats.update_failures.values()),
            "failures": dict(sorted(stats.update_failures.items())),
            "late": stats.updates_late,
            "missed": stats.updates_missed,
            "interrupted": stats.updates_interrupted,
            "sent_per_s": round(stats.updates_sent / seconds, 2),
        },
        "presence": {
            **presence.as_dict(),
            "objects": params.riders,
            "connected_at_start": connected_at_start,
            "connected_at_end": connected_at_end,
            "watcher_reconnects": stats.watcher_reconnects,
        },
        "latency_ms": {name: stats.latency[name].summary_ms() for name in LATENCIES},
        "open_files": open_files.as_dict(),
    }
    report["thresholds"] = {
        "max_p99_ms": max_p99_ms,
        "max_lost": max_lost,
        "violations": threshold_violations(report, max_p99_ms=max_p99_ms, max_lost=max_lost),
    }
    return report


def threshold_violations(
    report: dict[str, Any], *, max_p99_ms: float | None, max_lost: int | None
) -> list[str]:
    """One line per crossed limit: every measured p99 against `max_p99_ms`, lost events
    against `max_lost`."""
    violations = []
    if max_p99_ms is not None:
        for name, summary in report["latency_ms"].items():
            p99 = summary.get("p99")
            if p99 is not None and p99 > max_p99_ms:
                violations.append(f"p99 {name} {p99:g} ms > {max_p99_ms:g} ms")
    if max_lost is not None and report["presence"]["lost"] > max_lost:
        violations.append(f"lost presence events {report['presence']['lost']} > {max_lost}")
    return violations
