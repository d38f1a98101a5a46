"""Run a server until a signal stops it: the process-level shell used by `hivectl serve`.

SIGTERM or SIGINT starts a graceful shutdown (readiness goes 503, clients are closed
with 1001, storage is flushed) bounded by ``shutdown_timeout``; a second signal
exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from hivectl.core.settings import Settings
from server.app import HivekitServer

log = logging.getLogger("hivectl.server")


def run(settings: Settings, *, announce: Callable[[HivekitServer], None] | None = None) -> int:
    """Serve until stopped; returns the process exit code."""
    return asyncio.run(_serve(settings, announce))


async def _serve(settings: Settings, announce: Callable[[HivekitServer], None] | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once")
            os._exit(1)
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    # Handlers first: a signal right after the startup line must still stop gracefully.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    server = HivekitServer(settings)
    await server.start()
    if announce is not None:
        announce(server)
    await stop.wait()
    await server.close()
    log.info("stopped")
    return 0
