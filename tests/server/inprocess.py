"""Helpers for tests that look at the server from inside this process."""

from __future__ import annotations

from typing import Any

import orjson

from server.io.auth import keyring_from_settings
from server.protocol.hub import Hub
from tests.conftest import make_settings


def bare_hub(**overrides: Any) -> Hub:
    """A hub without sockets (settings overrides as dotted keys). Nothing drains its writes
    for storage (`Hub.take_writes`) unless a test does."""
    settings = make_settings(**overrides)
    return Hub(
        settings,
        keyring_from_settings(settings.auth),
        node_id="n",
        started_at=0.0,
    )


def take_sent(hub: Hub) -> dict[str, list[Any]]:
    """What the shell would send now: the messages of every ready frame, by connection id."""
    sent: dict[str, list[Any]] = {}
    for session, frame in hub.outgoing():
        sent.setdefault(session.conn_id, []).extend(orjson.loads(frame))
    return sent


def run_due(hub: Hub, now: float) -> dict[str, list[Any]]:
    """Tick the hub at each of its deadlines up to `now` and pump its streams to their end,
    taking what is sent as the shell does with its timer; what was sent, by connection id."""
    while (deadline := hub.next_deadline()) is not None and deadline <= now:
        hub.tick(deadline)
    hub.tick(now)
    sent = take_sent(hub)
    while hub.streaming:
        hub.pump(lambda session: True)
        for conn_id, messages in take_sent(hub).items():
            sent.setdefault(conn_id, []).extend(messages)
    return sent


def rss() -> int:
    """This process's resident set size in bytes (servers under test run in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
