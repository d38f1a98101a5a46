"""The run's counters and the end-of-run report built from them.

`RunStats` is what the driver counts while running, `BulkStats` what it counts while
creating and deleting the rider objects; `build_report` turns them, the ledger's summary and
the plan into one JSON-ready dictionary (the schema of ``--json``, documented in the README);
`threshold_violations` says which ``--max-*`` limits the report crosses, `shortfalls` where
the run did not carry out its plan; `LiveSnapshot` and `SetupSnapshot` are what the progress
displays show. All pure: the driver owns the clock and passes elapsed times in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hivectl.sim.ledger import LedgerSummary
from hivectl.sim.plan import Plan
from hivectl.sim.recorder import LatencyRecorder
from hivectl.sim.thresholds import Threshold, violations

UPDATE_SHORTFALL_TOLERANCE = 0.01
"""Share of due updates that may go unsent or fail before the run counts as not carried
out: a momentary stall of a busy machine skips a few, a plan the server or this process
cannot keep up with misses many."""

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


@dataclass
class BulkStats:
    """Creating (or deleting) the rider objects: how many, how far, what failed and why."""

    total: int
    existing: int = 0
    """Rider objects that were there before the run (not created, never deleted)."""
    done: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def fail(self, reason: str, count: int) -> None:
        self.failures[reason] += count

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def snapshot(self, phase: str, elapsed_s: float) -> SetupSnapshot:
        return SetupSnapshot(phase, self.done, self.failed, self.total, elapsed_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.total,
            "existing": self.existing,
            "done": self.done,
            "failed": self.failed,
            "failures": dict(sorted(self.failures.items())),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class SetupSnapshot:
    """Progress of creating or deleting the rider objects."""

    phase: str
    done: int
    failed: int
    total: int
    elapsed_s: float

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total

    def line(self) -> str:
        """The plain progress line (stderr that is not a terminal)."""
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        text = f"{self.phase}: {self.done}/{self.total} ({rate:.0f}/s"
        if self.failed:
            text += f", {self.failed} failed"
        return text + (", done)" if self.finished else ")")


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
    setup: BulkStats | None = None,
    cleanup: BulkStats | None = None,
    never_connected: int = 0,
    max_p99_ms: float | None = None,
    max_lost: int | None = None,
    thresholds: Sequence[Threshold] = (),
    load_cpu_s: float | None = None,
) -> dict[str, Any]:
    """The report as plain JSON types; `threshold_violations` and `thresholds.violations`
    read its numbers back. `load_cpu_s` is the CPU time this process used over the
    `elapsed_s` of riding (see `load_generator`)."""
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
            "never_connected": never_connected,
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
        "setup": None if setup is None else setup.as_dict(),
        "cleanup": None if cleanup is None else cleanup.as_dict(),
        "load_generator": load_generator(load_cpu_s, elapsed_s),
    }
    report["thresholds"] = {
        "max_p99_ms": max_p99_ms,
        "max_lost": max_lost,
        "rules": [threshold.text for threshold in thresholds],
        "violations": [
            *threshold_violations(report, max_p99_ms=max_p99_ms, max_lost=max_lost),
            *violations(report, thresholds),
        ],
    }
    report["shortfalls"] = shortfalls(report)
    return report


CPU_BOUND_SHARE = 0.9
"""A load generator busy this much of the run on one core was likely the bottleneck."""


def load_generator(cpu_s: float | None, elapsed_s: float) -> dict[str, Any]:
    """How busy this process was while riding: its CPU seconds against the wall clock. The
    simulator is one Python process, on one core; near 100 % it sends late and reads late,
    and the latencies it measures are partly its own: the note says so."""
    if cpu_s is None or elapsed_s <= 0:
        return {"cpu_s": cpu_s, "wall_s": round(elapsed_s, 3), "cpu_share": None, "note": None}
    share = cpu_s / elapsed_s
    note = None
    if share >= CPU_BOUND_SHARE:
        note = (
            f"the load generator used {share:.0%} of a core: it was CPU-bound, so rates may be"
            " its limit and latencies partly its own delay (fewer riders, --gateways, or"
            " several simulate processes)"
        )
    return {
        "cpu_s": round(cpu_s, 3),
        "wall_s": round(elapsed_s, 3),
        "cpu_share": round(share, 3),
        "note": note,
    }


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


def shortfalls(report: dict[str, Any]) -> list[str]:
    """One line per way the run did not carry out its plan: rider objects not created,
    planned connections that tried and never connected, location updates not delivered
    (beyond `UPDATE_SHORTFALL_TOLERANCE`), created objects not deleted by ``--cleanup``."""
    found = []
    setup = report.get("setup")
    if setup is not None and setup["failed"]:
        found.append(
            f"{setup['failed']} of {setup['objects']} rider objects were not created"
            f"{_reasons(setup['failures'])}"
        )
    conns = report["connections"]
    if conns["never_connected"]:
        found.append(
            f"{conns['never_connected']} of {report['plan']['connections']} planned "
            f"connections never connected{_reasons(conns['failures'])}"
        )
    updates = report["updates"]
    undelivered = updates["missed"] + updates["failed"]
    if undelivered > UPDATE_SHORTFALL_TOLERANCE * max(updates["due"], 1):
        parts = []
        if updates["missed"]:
            parts.append(f"{updates['missed']} missed (the senders fell a whole interval behind)")
        if updates["failed"]:
            parts.append(f"{updates['failed']} failed{_reasons(updates['failures'])}")
        advice = ""
        if any("rate limited" in reason for reason in updates["failures"]):
            advice = (
                "; the server rate-limited them: lower --rate-per-connection or "
                "--rate-per-object (0 for servers without a per-object allowance), or "
                "lengthen --update-interval"
            )
        found.append(
            f"{undelivered} of {updates['due']} location updates were not delivered: "
            + ", ".join(parts)
            + advice
        )
    cleanup = report.get("cleanup")
    if cleanup is not None and cleanup["failed"]:
        found.append(
            f"{cleanup['failed']} of {cleanup['objects']} objects created by the run were "
            f"not deleted{_reasons(cleanup['failures'])}"
        )
    return found


def _reasons(failures: dict[str, int]) -> str:
    if not failures:
        return ""
    return " (" + ", ".join(f"{reason}: {count}" for reason, count in failures.items()) + ")"
