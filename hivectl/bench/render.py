"""Rich renderables for the bench report: the side-by-side table, the targets, the notes.

A pure function of the report dictionary (`hivectl.bench.report`), so it is tested with a
recording console and the CLI only prints it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hivectl.bench.plan import SCALE

GIB = 1024.0**3
MET = {True: "[green]met[/green]", False: "[red]not met[/red]", None: "[dim]not judged[/dim]"}


def value_text(value: Any, unit: str) -> str:
    """A figure for a table cell: thousands separators, units, "-" when not measured."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:,.1f} ms"
    if unit == "µs":
        return f"{value:.1f} µs"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "% of a core":
        return f"{value:.0f} %"
    if unit in ("KiB", "s"):
        # Sub-second times (a restart, a full state at 10,000 objects) need their digits.
        digits = 1 if value >= 10 else 2 if value >= 0.1 else 3
        return f"{value:,.{digits}f} {unit}"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "code":
        return f"{value:.0f}" if value else "no"
    return f"{value:,.0f}"


def _header(report: dict[str, Any]) -> Text:
    machine, versions = report["machine"], report["versions"]
    memory = machine.get("memory_bytes")
    load = machine.get("load_average")
    parts = [
        f"{machine.get('cores')} cores, {machine.get('cpu') or 'unknown CPU'}",
        f"{memory / GIB:.1f} GiB" if memory else "memory unknown",
        f"load average {' '.join(f'{v:.2f}' for v in load)} at start" if load else "",
    ]
    text = Text(f"hivectl bench, {report['date']}\n", style="bold")
    text.append(", ".join(part for part in parts if part) + "\n")
    text.append(
        f"python {versions['python']}, websockets {versions['websockets']},"
        f" hivectl {versions['hivectl']}"
    )
    if report.get("url"):
        text.append(f"\nhivectl at {report['url']} (not started by the bench)")
    end = machine.get("load_average_end")
    if end:
        text.append(f"\nload average {' '.join(f'{v:.2f}' for v in end)} at the end")
    placement = report.get("load")
    if placement:
        text.append(f"\n{load_text(placement)}")
    return text


def load_text(load: dict[str, Any]) -> str:
    """How many load processes drove connect, churn and fanout, and what was pinned."""
    text = f"load processes: {load['processes']} for connect, churn and fanout"
    pinned = load.get("pinned")
    if not pinned:
        return text + "; nothing pinned"
    cores = ", ".join(str(core) for core in pinned["load"])
    server = ", ".join(str(core) for core in pinned["server"])
    return text + f"; each server pinned to core {server}, the load to core(s) {cores}"


def _figures(report: dict[str, Any]) -> Table:
    rounds = report["plan"].get("rounds", 1)
    title = "hivectl vs a bare websockets server"
    if rounds > 1:
        title += f" (medians of {rounds} rounds; silent: one)"
    table = Table(title=title, title_justify="left")
    table.add_column("scenario", style="bold")
    table.add_column("figure")
    table.add_column("hivectl", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    previous = None
    for row in _compared(report):
        scenario = row["scenario"] if row["scenario"] != previous else ""
        if scenario and previous is not None:
            table.add_section()
        previous = row["scenario"]
        table.add_row(
            scenario,
            row["figure"],
            value_text(row["hivectl"], row["unit"]),
            value_text(row["baseline"], row["unit"]),
            value_text(row["ratio"], "x") if row["ratio"] is not None else "",
        )
    return table


def _compared(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the side-by-side table: all but *scale*'s, which have a table of their own."""
    return [row for row in report["rows"] if not _is_scale(row)]


def _is_scale(row: dict[str, Any]) -> bool:
    return bool(row["scenario"].split(" ", 1)[0] == SCALE)


def _scale(report: dict[str, Any]) -> Table:
    """One column per realm size and storage backend, one row per figure."""
    rows = [row for row in report["rows"] if _is_scale(row)]
    labels = list(dict.fromkeys(row["scenario"] for row in rows))
    table = Table(title="fleet scale, hivectl only", title_justify="left")
    table.add_column("figure")
    for label in labels:
        table.add_column(label.split(" ", 1)[1], justify="right")
    cells: dict[str, dict[str, str]] = {}
    for row in rows:
        cells.setdefault(row["figure"], {})[row["scenario"]] = value_text(
            row["hivectl"], row["unit"]
        )
    for figure, values in cells.items():
        table.add_row(figure, *(values.get(label, "-") for label in labels))
    return table


def _growth(report: dict[str, Any]) -> Table:
    table = Table(
        title="fleet scale: growth per object from the smallest realm to the largest"
        " (1.00 linear, below: better)",
        title_justify="left",
    )
    for name in ("storage", "figure", "small", "large", "per object", ""):
        table.add_column(name, justify="left" if name in ("storage", "figure") else "right")
    for entry in report["growth"]:
        small, large = entry["objects"]
        verdict = "linear or better" if entry["linear"] else "[red]worse than linear[/red]"
        table.add_row(
            entry["storage"],
            entry["figure"],
            f"{value_text(entry['small'], entry['unit'])} at {small:,}",
            f"{value_text(entry['large'], entry['unit'])} at {large:,}",
            f"{entry['per_object']:.2f}",
            verdict,
        )
    return table


def _targets(report: dict[str, Any]) -> Table:
    table = Table(title="targets", title_justify="left")
    table.add_column("target")
    table.add_column("figure", justify="right")
    table.add_column("")
    table.add_column("detail", style="dim")
    for target in report["targets"]:
        table.add_row(
            target["target"],
            value_text(target["value"], target["unit"]),
            MET[target["met"]],
            target["detail"] or "",
        )
    return table


def render_report(report: dict[str, Any]) -> RenderableType:
    parts: list[RenderableType] = [_header(report)]
    if report.get("interrupted"):
        parts.append(Text("interrupted: only the runs that finished", style="yellow"))
    if _compared(report):
        parts.append(_figures(report))
    if any(_is_scale(row) for row in report["rows"]):
        parts.append(_scale(report))
    if report.get("growth"):
        parts.append(_growth(report))
    if report["targets"]:
        parts.append(_targets(report))
    for note in report["notes"]:
        parts.append(Text(f"note: {note}", style="yellow"))
    for error in report["errors"]:
        parts.append(
            Text(f"{error['scenario']} on {error['target']} failed: {error['error']}", style="red")
        )
    return Group(*parts)
