"""Process and machine facts from ``/proc``: CPU time, resident memory, the hardware.

psutil is not a dependency, and the three files read here are all the bench needs. Linux
only; elsewhere the readers return None and the report says "n/a".
"""

from __future__ import annotations

import os
import platform
import time
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

    def stop(self) -> dict[str, float | None]:
        seconds = time.monotonic() - self.started
        server_now = cpu_seconds(self.server_pid) if self.server_pid else None
        server = None
        if server_now is not None and self._server is not None:
            server = round(server_now - self._server, 3)
        return {
            "seconds": round(seconds, 3),
            "load_cpu_s": round(time.process_time() - self._own, 3),
            "server_cpu_s": server,
        }


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
