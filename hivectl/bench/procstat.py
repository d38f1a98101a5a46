"""Process and machine facts from ``/proc``: CPU time, resident memory, the hardware.

psutil is not a dependency, and the three files read here are all the bench needs. Linux
only; elsewhere the readers return None and the report says "n/a".
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.version import version as websockets_version

from hivectl import __version__

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used by `pid` so far (fields 14 and 15 of its stat line)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid` (``VmRSS``)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


@dataclass
class CpuWindow:
    """Wall time and the CPU time of this process and of the server over one measured window.

    The load generator opens the window when its measured phase starts and closes it when it
    ends, so setup (creating objects, minting tokens) is not charged to either side.
    """

    server_pid: int | None
    started: float = 0.0
    _own: float = 0.0
    _server: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._own = time.process_time()
        self._server = cpu_seconds(self.server_pid) if self.server_pid else None

    def stop(self, workers: Sequence[float] | None = None) -> dict[str, float | None]:
        """The window's figures; `workers` are the CPU seconds of the load processes this
        one drove over the window, which join its own as the load side's."""
        seconds = time.monotonic() - self.started
        server_now = cpu_seconds(self.server_pid) if self.server_pid else None
        own = time.process_time() - self._own
        server = None
        if server_now is not None and self._server is not None:
            server = round(server_now - self._server, 3)
        measured: dict[str, float | None] = {
            "seconds": round(seconds, 3),
            "load_cpu_s": round(own + sum(workers or ()), 3),
            "server_cpu_s": server,
        }
        if workers is not None:
            measured["load_processes"] = len(workers)
            measured["load_cpu_max_s"] = round(max(own, *workers), 3)
            measured["load_cores"] = len(usable_cores())
        return measured


def usable_cores() -> set[int]:
    """The cores this process may run on (all of them unless it was pinned)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


@contextlib.contextmanager
def running_on(cores: set[int] | None) -> Iterator[None]:
    """Processes started inside run on `cores` (None: wherever they like).

    A child inherits its parent's CPU affinity at fork, so this process pins itself for the
    moment it starts one: the child is pinned before its first instruction, with every
    thread it will ever start, which setting a pid's affinity after the start would not
    guarantee.
    """
    if cores is None:
        yield
        return
    before = usable_cores()
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and the load average when the run started."""
    model = None
    memory = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor() or None,
        "memory_bytes": memory,
        "load_average": [round(value, 2) for value in load] if load else None,
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "websockets": websockets_version,
        "hivectl": __version__,
    }
