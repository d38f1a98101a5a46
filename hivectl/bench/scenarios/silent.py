"""silent: providers that stop answering; how long until the server says ``disconnected``.

The providers live in a child process (`hivectl.bench.provider`), connected one ping
interval's worth apart so that their phases in the keepalive cycle differ; once the watcher
has seen them all connected, the child is stopped with SIGSTOP. Each provider's figure runs
from that moment to the watcher receiving its ``dis``: up to one ping interval until the
next ping, the ping timeout, then the closing handshake's timeout (the server sends a close
frame nobody answers). The maximum over the providers approaches the worst case.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import orjson

from hivectl.bench.baseline import CLOSE_TIMEOUT
from hivectl.bench.flavors import SetupError
from hivectl.bench.procstat import CpuWindow
from hivectl.bench.scenarios.common import Context, PresenceTracker, percentiles

READY_TIMEOUT_S = 30.0
"""Longest wait for one stopped-to-be provider to register, on top of its stagger."""


async def run(ctx: Context) -> dict[str, Any]:
    plan, flavor = ctx.plan, ctx.flavor
    object_ids = [f"s/{i}" for i in range(plan.silent_providers)]
    await flavor.prepare(ctx.url, object_ids)
    order = {"url": ctx.url, "hellos": flavor.hellos(object_ids), "stagger_s": ctx.ping_interval}
    watcher = await flavor.watch(ctx.url)
    started = time.monotonic()  # no hello leaves before: every con is seen after this
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hivectl.bench.provider",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    window = CpuWindow(ctx.server_pid)
    try:
        child.stdin.write(orjson.dumps(order) + b"\n")
        await child.stdin.drain()
        child.stdin.close()
        give_up = ctx.ping_interval + ctx.ping_timeout + CLOSE_TIMEOUT + plan.drain_seconds
        async with PresenceTracker(flavor, watcher, deadline_s=give_up) as tracker:
            async with asyncio.timeout(ctx.ping_interval + READY_TIMEOUT_S):
                for _ in object_ids:
                    ready = orjson.loads(await child.stdout.readline())
                    if not flavor.accepted(ready["reply"]):
                        raise SetupError(f"a silent provider was refused: {ready['reply']:.200}")
                    index = ready["index"]
                    tracker.up(f"s{index}", object_ids[index], started)
            await tracker.settled(plan.drain_seconds)
            window.start()
            stopped = time.monotonic()
            os.kill(child.pid, signal.SIGSTOP)
            for index in range(len(object_ids)):
                tracker.down(f"s{index}", stopped, cause="abort")
            await tracker.settled(give_up)
            measured = window.stop()
    finally:
        if child.returncode is None:
            child.kill()  # SIGKILL ends a stopped process too
        await child.wait()
    detection = percentiles(tracker.latency["dis"], scale=1.0)
    return {
        "providers": len(object_ids),
        "ping_interval_s": ctx.ping_interval,
        "ping_timeout_s": ctx.ping_timeout,
        "detection_s": detection,
        "presence": tracker.summary(),
        **measured,
    }
