"""Rich renderables for the simulator: the live panel and the end-of-run report.

Pure functions from data (a `LiveSnapshot`, the report dictionary) to renderables, so they
are tested with a recording console and the CLI only prints or updates a `Live`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hivectl.sim.report import LATENCIES, LiveSnapshot, SetupSnapshot

LATENCY_LABELS = {
    "connect": "connect (TCP + WebSocket)",
    "auth": "auth (Bearer -> reply)",
    "update_rtt": "update round trip",
    "presence": "presence (connect/close)",
    "presence_abort": "presence after abort",
}


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render_progress(snap: LiveSnapshot) -> RenderableType:
    """The live panel: what is connected, what flows, how fast it comes back."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "connections",
        f"{snap.open_connections}/{snap.planned_connections} open   "
        f"objects online {snap.objects_online}/{snap.objects}   "
        f"connects {snap.connects}   failed {snap.connect_failures}",
    )
    grid.add_row(
        "updates",
        f"{snap.updates_per_s:.1f}/s   sent {snap.updates_sent}   acked {snap.updates_acked}   "
        f"failed {snap.updates_failed}   late {snap.updates_late}",
    )
    grid.add_row(
        "presence",
        f"seen {snap.presence_matched}/{snap.presence_expected}   pending {snap.presence_pending}",
    )
    grid.add_row(
        "recent p95",
        f"update {_ms(snap.update_p95_ms)}   presence {_ms(snap.presence_p95_ms)}",
    )
    title = f"simulate riders  {snap.realm}  {_clock(snap.elapsed_s)} / {_clock(snap.duration_s)}"
    if snap.stopping:
        title += "  stopping…"
    return Panel(grid, title=title, title_align="left")


def progress_line(snap: LiveSnapshot) -> str:
    """The live panel as one plain line, for a stderr that is not a terminal."""
    return (
        f"{_clock(snap.elapsed_s)}/{_clock(snap.duration_s)} "
        f"connections {snap.open_connections}/{snap.planned_connections} open, "
        f"objects online {snap.objects_online}/{snap.objects}, "
        f"updates {snap.updates_per_s:.0f}/s (failed {snap.updates_failed}), "
        f"presence seen {snap.presence_matched}/{snap.presence_expected}"
        + (", stopping" if snap.stopping else "")
    )


def render_setup(snap: SetupSnapshot) -> RenderableType:
    """Creating or deleting the rider objects: a bar and the counts."""
    bar = ProgressBar(total=max(snap.total, 1), completed=snap.done + snap.failed, width=40)
    grid = Table.grid(padding=(0, 2))
    grid.add_row(Text(snap.phase, style="bold"), bar, Text(snap.line().partition(": ")[2]))
    return grid


def render_report(report: dict[str, Any]) -> RenderableType:
    """The end-of-run summary (k6 style): counts, latency percentiles, thresholds."""
    plan, conns, updates, presence = (
        report["plan"],
        report["connections"],
        report["updates"],
        report["presence"],
    )
    head = Text.assemble(
        ("simulate riders", "bold"),
        f"  realm {report['realm']}  seed {report['seed']}  "
        f"{plan['riders']} riders, {plan['connections']} connections  "
        f"{report['elapsed_s']:.1f}s",
        (" (interrupted)", "yellow") if report["interrupted"] else "",
    )
    counts = Table.grid(padding=(0, 2))
    counts.add_column(style="bold")
    counts.add_column()
    counts.add_row(
        "connections",
        f"attempts {conns['attempts']}  opened {conns['opened']}  failed {conns['failed']}  "
        f"closed {conns['closed']}  aborted {conns['aborted']}  peak {conns['peak_open']}",
    )
    for reason, count in {**conns["failures"], **_prefixed(conns["dropped_by_server"])}.items():
        counts.add_row("", Text(f"{reason}: {count}", style="red"))
    counts.add_row(
        "updates",
        f"due {updates['due']}  sent {updates['sent']}  acked {updates['acknowledged']}  "
        f"failed {updates['failed']}  late {updates['late']}  missed {updates['missed']}  "
        f"({updates['sent_per_s']:g}/s)",
    )
    for reason, count in updates["failures"].items():
        counts.add_row("", Text(f"{reason}: {count}", style="red"))
    lost_style = "red" if presence["lost"] or presence["duplicated"] else "green"
    counts.add_row(
        "presence",
        Text.assemble(
            f"expected {presence['expected']}  seen {presence['seen']}  ",
            (
                f"lost {presence['lost']}  duplicated {presence['duplicated']}  "
                f"unexpected {presence['unexpected']}",
                lost_style,
            ),
            f"  late {presence['late']}  abort unconfirmed {presence['abort_unconfirmed']}",
        ),
    )
    counts.add_row(
        "objects",
        f"{presence['objects_connected_once']}/{presence['objects']} seen connected, "
        f"{_dash(presence['connected_at_end'])} still connected at the end",
    )
    for name, bulk in (("setup", report.get("setup")), ("cleanup", report.get("cleanup"))):
        if bulk is not None:
            verb = "created" if name == "setup" else "deleted"
            counts.add_row(
                name,
                f"{verb} {bulk['done']}/{bulk['objects']}  failed {bulk['failed']}  "
                f"in {bulk['seconds']:.1f}s",
            )

    latency = Table(title="latency (ms)", title_justify="left", box=None, padding=(0, 1))
    latency.add_column("")
    for column in ("count", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="right")
    for name in LATENCIES:
        summary = report["latency_ms"][name]
        latency.add_row(
            LATENCY_LABELS[name],
            str(summary["count"]),
            *(_dash(summary[key]) for key in ("p50", "p95", "p99", "max")),
        )

    parts: list[RenderableType] = [head, counts, latency]
    thresholds = report["thresholds"]
    judged = thresholds["max_p99_ms"] is not None or thresholds["max_lost"] is not None
    if judged or thresholds.get("rules"):
        if thresholds["violations"]:
            for line in thresholds["violations"]:
                parts.append(Text(f"✗ {line}", style="red"))
        else:
            parts.append(Text("✓ thresholds hold", style="green"))
    for line in report.get("shortfalls", ()):
        parts.append(Text(f"✗ {line}", style="red"))
    for note in (report["open_files"]["note"], report.get("load_generator", {}).get("note")):
        if note:
            parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)


def _prefixed(drops: dict[str, int]) -> dict[str, int]:
    return {f"dropped by server ({code})": count for code, count in drops.items()}


def _dash(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
