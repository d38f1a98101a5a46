"""`hivectl watch realm`: JSON lines against a real server, exit codes, surviving a server
restart, saying when the server keeps closing the watch, and the live table rendered by a
pure function into a recording console."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console
from websockets.asyncio.client import connect

from hivectl.client import HivekitClient
from hivectl.watch.driver import LookupBudget, RealmWatcher
from hivectl.watch.render import (
    close_caption,
    event_json,
    event_line,
    format_for,
    render_watch,
)
from hivectl.watch.state import WatchEvent, WatchState
from server.io.app import HivekitServer
from tests.cli.conftest import ServeProcess, clean_env, words
from tests.client.closing import closing_server
from tests.conftest import SECRET, make_settings, mint
from tests.server.wsutil import eventually, until

LINE_TIMEOUT = 10.0


@pytest.fixture
def server(reaping_server: ServeProcess) -> ServeProcess:
    return reaping_server


async def watch(cwd: Path, url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "hivectl", "watch", "realm", "london", "--url", url, *args),
        cwd=cwd,
        env=clean_env(HIVECTL_AUTH_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def subscribed(admin: HivekitClient, pubsub: int, objects: int) -> None:
    """Wait until the watcher's two subscriptions exist on the server (no event is missed)."""

    async def ready() -> bool:
        stats = await admin.system.stats()
        return bool(stats["pubsubSubscriptions"] >= pubsub and stats["subscriptions"] >= objects)

    await eventually(ready, timeout=LINE_TIMEOUT, interval=0.05)


def provider(url: str, *ids: str) -> HivekitClient:
    return HivekitClient(url, mint("device", dpv={"london": list(ids)}), reconnect=False)


async def test_json_prints_one_line_per_transition_with_the_documented_fields(
    server: ServeProcess, tmp_path: Path
) -> None:
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        await realm.object.create("riders/jo", label="Jo")
        await realm.object.create("riders/al", label="Al")
        await realm.object.create("depots/x", label="Depot")
        proc = await watch(tmp_path, server.ws_url, "--json", "--pattern", "riders/*")
        await subscribed(admin, pubsub=1, objects=1)

        phone = provider(server.ws_url, "riders/jo")
        await phone.connect()  # 1: connected
        second = provider(server.ws_url, "riders/jo")
        await second.connect()  # jo already connected: nothing
        await second.close()  # jo still has the phone: nothing
        depot = provider(server.ws_url, "depots/x")
        await depot.connect()  # outside the pattern
        await depot.close()
        await phone.close()  # 2: disconnected
        again = provider(server.ws_url, "riders/jo")
        await again.connect()  # 3: connected
        await again.connection.abort()  # 4: disconnected, without a close frame

        assert proc.stdout is not None
        lines = []
        for _ in range(4):
            async with asyncio.timeout(LINE_TIMEOUT):
                lines.append(await proc.stdout.readline())
        # A marker transition: its line must come next, so no wrong line came before it.
        marker = provider(server.ws_url, "riders/al")
        await marker.connect()
        async with asyncio.timeout(LINE_TIMEOUT):
            marked = json.loads(await proc.stdout.readline())
        assert (marked["id"], marked["status"]) == ("riders/al", "connected")
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(LINE_TIMEOUT):
            rest, err = await proc.communicate()
        await marker.close()
    assert proc.returncode == 0, err.decode()
    assert rest == b""
    events = [json.loads(line) for line in lines]
    assert [e["status"] for e in events] == ["connected", "disconnected"] * 2
    for event in events:
        assert set(event) == {
            *("ts", "realm", "event", "id", "status", "label", "previousFor", "reason")
        }
        assert event["ts"].endswith("Z")
        datetime.fromisoformat(event["ts"])
        assert (event["realm"], event["event"]) == ("london", "connectionStatusChanged")
        assert (event["id"], event["label"]) == ("riders/jo", "Jo")
    assert events[0]["previousFor"] is None
    assert all(isinstance(e["previousFor"], float) for e in events[1:])
    assert [e["reason"] for e in events] == [None, "closed", None, "closed"]


async def test_json_says_why_an_object_disconnected(server: ServeProcess, tmp_path: Path) -> None:
    """A provider that closes and one that goes silent (reaped by the ping timeout) differ
    in ``reason``, where both used to read only ``disconnected``."""
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        await realm.object.create("riders/a")
        await realm.object.create("riders/b")
        proc = await watch(tmp_path, server.ws_url, "--json", "--count", "4")
        await subscribed(admin, pubsub=1, objects=1)
        closing = provider(server.ws_url, "riders/a")
        await closing.connect()
        silent = await connect(server.ws_url, proxy=None, ping_interval=None)
        await silent.send("Bearer " + mint("device", dpv={"london": ["riders/b"]}))
        assert json.loads(await silent.recv())[0]["res"] == "suc"
        await closing.close()
        assert silent.transport is not None
        silent.transport.pause_reading()  # no pong, no close: reaped by the ping timeout
        async with asyncio.timeout(LINE_TIMEOUT):
            out, err = await proc.communicate()
        silent.transport.abort()
    assert proc.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines()]
    gone = {e["id"]: e["reason"] for e in events if e["status"] == "disconnected"}
    assert gone == {"riders/a": "closed", "riders/b": "timeout"}
    assert [e["reason"] for e in events if e["status"] == "connected"] == [None, None]


async def test_count_exits_0_and_a_timeout_before_the_count_exits_3(
    server: ServeProcess, tmp_path: Path
) -> None:
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        await realm.object.create("riders/jo")
        proc = await watch(tmp_path, server.ws_url, "--json", "--count", "2")
        await subscribed(admin, pubsub=1, objects=1)
        async with provider(server.ws_url, "riders/jo"):
            pass
        async with asyncio.timeout(LINE_TIMEOUT):
            out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert len(out.splitlines()) == 2

        proc = await watch(tmp_path, server.ws_url, "--json", "--count", "1", "--timeout", "1s")
        async with asyncio.timeout(LINE_TIMEOUT):
            out, err = await proc.communicate()
        assert proc.returncode == 3
        assert out == b"" and b"0 of 1 events before the timeout" in err


async def test_watch_waits_for_the_realm_and_survives_a_server_restart(tmp_path: Path) -> None:
    first = HivekitServer(make_settings(**_storage(tmp_path)))
    await first.start()
    url, port = first.ws_url, first.port
    seen: list[WatchEvent] = []
    watcher = RealmWatcher(url, mint("watcher"), "london", on_event=seen.append)
    running = asyncio.create_task(watcher.run())
    await until_line(lambda: watcher.state.link == "waiting for realm")
    async with HivekitClient(url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        await realm.object.create("riders/jo", label="Jo")
    await until_line(lambda: watcher.state.link == "connected" and watcher.state.total == 1)

    await first.close()
    await until_line(lambda: watcher.state.link == "reconnecting")
    assert "reconnecting…" in _text(render_watch(watcher.state, time.time()))
    second = HivekitServer(make_settings(**{**_storage(tmp_path), "server.port": port}))
    await second.start()
    try:
        await until_line(lambda: watcher.state.link == "connected")
        async with provider(url, "riders/jo"):
            await until_line(lambda: len(seen) == 1)
        await until_line(lambda: len(seen) == 2)
        assert [(e.object_id, e.status, e.label) for e in seen] == [
            ("riders/jo", "connected", "Jo"),
            ("riders/jo", "disconnected", "Jo"),
        ]
        watcher.stop()
        assert await running == "stopped"
    finally:
        await second.close()


async def test_a_watch_the_server_keeps_closing_says_so_on_stderr(tmp_path: Path) -> None:
    async with closing_server(after_subscribing=True) as closing:
        proc = await watch(tmp_path, closing.url, "--json", "--token", "t", "--timeout", "3s")
        async with asyncio.timeout(LINE_TIMEOUT):
            out, err = await proc.communicate()
    assert proc.returncode == 0
    assert out == b""
    lines = err.decode().splitlines()
    closes = [line for line in lines if line.startswith("warning: watch connection closed: ")]
    assert len(closes) >= 2 and len(closes) == len(closing.accepted) == len(lines) - 1
    assert "closed: 4008 slow consumer after 0.0s; reconnect 1 in " in closes[0]
    assert "closed: 4008 slow consumer after 0.0s; reconnect 2 in " in closes[1]
    assert lines[-1] == (
        f"warning: the server closed this watch {len(closes)} times "
        "(last: 4008 slow consumer after 0.0s)"
    )


async def test_the_live_view_shows_the_close_and_the_next_try() -> None:
    async with closing_server(after_subscribing=True) as closing:
        watcher = RealmWatcher(closing.url, "t", "london")
        running = asyncio.create_task(watcher.run())
        await until_line(lambda: watcher.state.closes >= 1 and watcher.state.link == "reconnecting")
        text = _text(render_watch(watcher.state, time.time()))
        watcher.stop()
        assert await running == "stopped"
    assert "reconnecting…" in text
    assert "closed once, last: 4008 slow consumer after 0.0s; retry in" in words(text)


async def until_line(condition: Callable[[], bool]) -> None:
    await until(condition, timeout=LINE_TIMEOUT, interval=0.02)


def _storage(tmp_path: Path) -> dict[str, object]:
    return {"storage.backend": "sqlite", "storage.path": str(tmp_path / "hive.db")}


# -- the pure parts ---------------------------------------------------------------------


def _text(renderable: object) -> str:
    console = Console(record=True, width=100)
    console.print(renderable)
    return console.export_text()


def a_state() -> WatchState:
    state = WatchState("london", pattern="riders/*", limit=3)
    state.replace_objects(
        {
            "riders/a": ("Ann", "dis"),
            "riders/b": ("Bob", "con"),
            "riders/c": ("Cy", "dis"),
            "depots/x": ("Depot", "con"),  # outside the pattern: not counted
        }
    )
    state.link = "connected"
    return state


def test_table_shows_counts_and_the_newest_events_first() -> None:
    state = a_state()
    state.record("riders/a", "con", at=1000.0)
    state.record("riders/c", "con", at=1001.0)
    state.record("riders/a", "dis", at=1065.0)
    state.record("riders/b", "dis", at=1066.0)  # four events, three rows
    text = _text(render_watch(state, now=1067.0))
    lines = text.splitlines()
    assert lines[0].split() == ["london", "online", "1/3", "events", "0.2/s"]
    assert lines[1].split() == ["TIME", "OBJECT", "STATUS", "LABEL", "FOR"]
    rows = [line.split()[1:] for line in lines[2:] if line.strip()]
    assert rows == [
        ["riders/b", "disconnected", "Bob", "-"],
        ["riders/a", "disconnected", "Ann", "1m05s"],
        ["riders/c", "connected", "Cy", "-"],
    ]
    assert "reconnecting" not in text and "closed" not in text


def test_the_close_caption_counts_closes_and_counts_down_to_the_next_try() -> None:
    state = a_state()
    state.link = "reconnecting"
    state.record_close("4008 slow consumer after 0.2s", retry_at=105.0)
    state.record_close("4008 slow consumer after 0.1s", retry_at=110.0)
    assert close_caption(state, now=107.5) == (
        "closed 2 times, last: 4008 slow consumer after 0.1s; retry in 2.5s"
    )
    state.link = "connected"
    assert close_caption(state, now=111.0) == "closed 2 times, last: 4008 slow consumer after 0.1s"
    assert "closed 2 times" in _text(render_watch(state, now=111.0))


def test_status_colours_and_the_link_in_the_header() -> None:
    state = a_state()
    state.record("riders/a", "con", at=10.0)
    state.record("riders/b", "dis", at=11.0)
    state.link = "reconnecting"
    console = Console(record=True, width=100, force_terminal=True, color_system="standard")
    console.print(render_watch(state, now=12.0))
    styled = console.export_text(styles=True, clear=False)
    assert "\x1b[32mconnected" in styled and "\x1b[31mdisconnected" in styled
    assert "reconnecting…" in console.export_text()


def test_json_line_and_durations() -> None:
    event = WatchEvent(
        at=0.25, object_id="riders/a", status="connected", label=None, previous_for=2.5
    )
    assert json.loads(event_json(event, "london")) == {
        "ts": "1970-01-01T00:00:00.250Z",
        "realm": "london",
        "event": "connectionStatusChanged",
        "id": "riders/a",
        "status": "connected",
        "label": None,
        "previousFor": 2.5,
        "reason": None,
    }
    gone = WatchEvent(
        at=1.0,
        object_id="riders/a",
        status="disconnected",
        label="A",
        previous_for=None,
        reason="node_lost",
    )
    assert json.loads(event_json(gone, "london"))["reason"] == "node_lost"
    assert event_line(gone).endswith(" riders/a disconnected (node_lost) (A)")


def test_reason_lookups_are_budgeted() -> None:
    budget = LookupBudget(rate=100.0, burst=200.0, now=0.0)
    assert budget.take(150, now=0.0) == 150
    assert budget.take(150, now=0.0) == 50  # the burst is spent
    assert budget.take(10, now=0.05) == 5  # 100/s refills 5 in 50 ms
    assert budget.take(500, now=100.0) == 200  # never more than the burst
    assert [format_for(s) for s in (None, 0.25, 12.34, 245, 7380)] == [
        "-",
        "250ms",
        "12.3s",
        "4m05s",
        "2h03m",
    ]
