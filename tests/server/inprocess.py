"""Helpers for tests that look at the server from inside this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.io.auth import keyring_from_settings
from server.protocol.hub import Hub
from tests.conftest import make_settings


def bare_hub(**overrides: Any) -> tuple[Hub, list[Callable[[], None]]]:
    """A hub without sockets (settings overrides as dotted keys) and its pending timers.

    The shell would run each timer callback after its delay, then flush; tests run them
    when they choose. Nothing drains the hub's writes for storage (`Hub.take_writes`)
    unless a test does.
    """
    settings = make_settings(**overrides)
    pending: list[Callable[[], None]] = []
    hub = Hub(
        settings,
        keyring_from_settings(settings.auth),
        node_id="n",
        started_at=0.0,
        schedule=lambda delay, callback: pending.append(callback),
    )
    return hub, pending


def rss() -> int:
    """This process's resident set size in bytes (servers under test run in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
