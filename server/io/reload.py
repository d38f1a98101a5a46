"""What a configuration reload (SIGHUP) may change in a running server, decided purely.

An operator edits the config file and sends SIGHUP: rotated signing keys, a new log level,
new limits and a renewed TLS certificate must take effect without dropping a single
connection. Some settings cannot change under a running process:

======================================= =============================================
needs a restart                         why
======================================= =============================================
``server.host``, ``port``, ``api_port``  the sockets are bound
``server.api_enabled``, ``node_id``      the listener exists; the node's identity
TLS turned on or off                     the listener was created with or without it
``storage.*``                            the database is open (and locked)
``cluster.*``                            the node follows one stream on one NATS
``presence.*``                           the engine's grace timers are running
``limits.ping_interval`` to or from 0    keepalive runs or does not
``limits.compression``                   negotiated when each connection opened
======================================= =============================================

Everything else applies at once (``client.*`` is not the server's and is ignored). `plan`
compares the running settings with the new ones and returns the settings to run with: the
new ones, with every restart-only value kept as it runs now, so what the server reports
(its URL, its storage) stays true until the restart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hivectl.core.settings import Settings

RESTART_TABLES = ("storage", "cluster", "presence")
RESTART_KEYS = (
    "server.host",
    "server.port",
    "server.api_port",
    "server.api_enabled",
    "server.node_id",
    "limits.compression",
)
IGNORED_TABLES = ("client",)


@dataclass(frozen=True)
class ReloadPlan:
    applied: tuple[str, ...]
    """Dotted keys whose new value takes effect now."""
    needs_restart: tuple[str, ...]
    """Dotted keys whose new value waits for a restart (the running value is kept)."""
    effective: Settings
    """The settings to run with from now on."""


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Every dotted key whose value differs (a list of tables counts as one key)."""
    changed = []
    for table in dataclasses.fields(Settings):
        before, after = getattr(old, table.name), getattr(new, table.name)
        for item in dataclasses.fields(before):
            if getattr(before, item.name) != getattr(after, item.name):
                changed.append(f"{table.name}.{item.name}")
    return changed


def plan(old: Settings, new: Settings) -> ReloadPlan:
    applied: list[str] = []
    restart: list[str] = []
    for key in changed_keys(old, new):
        table = key.partition(".")[0]
        if table in IGNORED_TABLES:
            continue
        (restart if _needs_restart(key, old, new) else applied).append(key)
    kept: dict[str, dict[str, Any]] = {}
    for key in restart:
        table, _, name = key.partition(".")
        kept.setdefault(table, {})[name] = getattr(getattr(old, table), name)
    tables = {
        table: dataclasses.replace(getattr(new, table), **values) for table, values in kept.items()
    }
    return ReloadPlan(tuple(applied), tuple(restart), dataclasses.replace(new, **tables))


def _needs_restart(key: str, old: Settings, new: Settings) -> bool:
    table = key.partition(".")[0]
    if table in RESTART_TABLES or key in RESTART_KEYS:
        return True
    if key in ("server.tls_cert", "server.tls_key"):
        return bool(old.server.tls_cert) != bool(new.server.tls_cert)
    if key == "limits.ping_interval":
        return not (old.limits.ping_interval and new.limits.ping_interval)
    return False
