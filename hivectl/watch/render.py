"""How `hivectl watch realm` shows a `WatchState`: a Rich view, a plain line, a JSON line.

Pure functions of (state, now) or of one event, so the live loop only calls
``live.update(render_watch(state, time.time()))`` and tests render into a recording console.
"""

from __future__ import annotations

import json
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hivectl.watch.state import WatchEvent, WatchState

STATUS_STYLES = {"connected": "green", "disconnected": "red"}


def format_for(seconds: float | None) -> str:
    """A short duration for the "for" column: 850ms, 12.3s, 4m05s, 2h03m; "-" if unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def close_caption(state: WatchState, now: float) -> str | None:
    """``closed 3 times, last: 4008 slow consumer; retry in 2.1s`` (None before any close)."""
    if state.last_close is None:
        return None
    times = "once" if state.closes == 1 else f"{state.closes} times"
    text = f"closed {times}, last: {state.last_close}"
    if state.link == "reconnecting" and state.retry_at is not None:
        text += f"; retry in {max(0.0, state.retry_at - now):.1f}s"
    return text


def render_watch(state: WatchState, now: float) -> RenderableType:
    """Header (realm, online/total, event rate, link), the last close if the link was ever
    lost, then the newest events, newest first."""
    header = Text.assemble(
        (state.realm, "bold"),
        f"  online {state.online}/{state.total}",
        f"  events {state.rate(now):.1f}/s",
    )
    if state.link != "connected":
        header.append(f"  {state.link}…", style="yellow")
    caption = close_caption(state, now)
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("TIME")
    table.add_column("OBJECT")
    table.add_column("STATUS")
    table.add_column("LABEL")
    table.add_column("FOR", justify="right")
    for event in reversed(state.events):
        table.add_row(
            _clock(event.at),
            Text(event.object_id),
            Text(_status(event), style=STATUS_STYLES.get(event.status, "")),
            Text(event.label or ""),
            format_for(event.previous_for),
        )
    if caption is None:
        return Group(header, table)
    return Group(header, Text(caption, style="yellow"), table)


def event_line(event: WatchEvent) -> str:
    """One plain line per event, for a terminal-less stdout without ``--json``."""
    label = f" ({event.label})" if event.label else ""
    after = "" if event.previous_for is None else f" after {format_for(event.previous_for)}"
    return f"{_clock(event.at)} {event.object_id} {_status(event)}{label}{after}"


def _status(event: WatchEvent) -> str:
    """``disconnected (node_lost)``: the status, and why when the watch knows."""
    return f"{event.status} ({event.reason})" if event.reason else event.status


def event_json(event: WatchEvent, realm: str) -> str:
    """One ``--json`` line (no newline); field names are documented API."""
    return json.dumps(event.as_json(realm), ensure_ascii=False)
