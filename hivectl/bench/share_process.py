"""A load process's side of a share (`hivectl.bench.worker` is the coordinator's):
``python -m hivectl.bench.share_process`` reads its order on stdin, runs the scenario's
`Share` and answers one JSON line per step. Apart from the coordinator's module so that
the scenarios, which use the coordinator, and this, which runs their shares, import each
other in one direction only.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

import orjson

from hivectl.bench.flavors import SetupError, flavor_named, key_from
from hivectl.bench.scenarios import SHARES
from hivectl.core.tokens import SigningKey

GC_THRESHOLD = (10_000, 10, 10)
"""As in the load process (`hivectl.bench.load`)."""


async def _next_line() -> Any:
    line = await asyncio.to_thread(sys.stdin.buffer.readline)
    if not line:
        raise SetupError("the coordinator went away")
    return orjson.loads(line)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def serve(key: SigningKey, order: dict[str, Any]) -> None:
    """The worker's side: set up, ready, go, result, end."""
    flavor = flavor_named(order["flavor"], key)
    share = SHARES[order["scenario"]](flavor, order["url"], order["share"])
    await share.setup()
    _say({"ready": True})
    go = await _next_line()
    cpu = time.process_time()
    result = await share.run(go["go"])
    _say({"result": result, "cpu_s": round(time.process_time() - cpu, 3)})
    await _next_line()  # "end"
    await share.teardown()
    _say({"ended": True})


def main() -> int:
    gc.set_threshold(*GC_THRESHOLD)
    try:
        key = key_from(orjson.loads(sys.stdin.buffer.readline()))
        order = orjson.loads(sys.stdin.buffer.readline())
        asyncio.run(serve(key, order))
    except Exception as exc:  # every failure goes to the coordinator, which reports it
        _say({"error": repr(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
