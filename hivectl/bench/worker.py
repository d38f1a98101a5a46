"""Load processes: a scenario's connections spread over several processes, so that the
load side is not one Python process that runs out of CPU before the server does.

*connect*, *churn* and *fanout* each split their connections into shares
(`split`), one per load process, and stay the coordinator: they watch, keep the CPU window
and merge the figures. Each share runs in ``python -m hivectl.bench.worker``, driven over
its stdin and stdout with one JSON line each way per step:

1. the coordinator writes the order: ``{"scenario", "url", "flavor", "key", "share"}``;
2. the worker sets its share up (mints its tokens, opens what must be open before the
   measured phase) and prints ``{"ready": true}`` (or ``{"error": ...}``);
3. on a ``go`` line (``{"go": {...}}``, e.g. when to stop) it runs the measured phase and
   prints ``{"result": ..., "cpu_s": ...}``: its figures and the CPU seconds it used
   running them;
4. on an ``end`` line it closes what it holds, prints ``{"ended": true}`` and exits.

All processes of the machine share its monotonic clock, so times in results (when a hello
left, when an update was due) compare with the coordinator's. The worker code of each
scenario is its `Share` (in the scenario's module). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from hivectl.bench.flavors import Flavor, SetupError, flavor_named, key_from, key_line
from hivectl.core.tokens import SigningKey

READY_TIMEOUT_S = 300.0
"""Longest a worker may take to set its share up (minting thousands of tokens, connecting
a thousand riders on a busy machine)."""
RUN_MARGIN_S = 300.0
"""How much longer than its planned duration a measured phase may take before the
coordinator gives up on a worker (every connect has timeouts of its own)."""
END_TIMEOUT_S = 120.0
LINE_LIMIT = 256 * 1024 * 1024
"""A result line may be long: *churn* reports each connect + close it made."""
GC_THRESHOLD = (10_000, 10, 10)
"""As in the load process (`hivectl.bench.load`)."""

T = TypeVar("T")


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` in at most `parts` contiguous shares whose sizes differ by one at most; no
    empty share (fewer items than parts: fewer shares)."""
    count = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), count)
    shares, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        shares.append(list(items[start:end]))
        start = end
    return [share for share in shares if share]


class Share(Protocol):
    """What one worker does with its share of a scenario."""

    async def setup(self) -> None: ...

    async def run(self, go: dict[str, Any]) -> dict[str, Any]: ...

    async def teardown(self) -> None: ...


ShareFactory = Callable[[Flavor, str, dict[str, Any]], Share]


class Workers:
    """The coordinator's side: start the workers, let them go together, collect, end."""

    def __init__(
        self, scenario: str, url: str, flavor: Flavor, shares: Sequence[dict[str, Any]]
    ) -> None:
        self.orders = [
            {"scenario": scenario, "url": url, "flavor": flavor.name, "share": share}
            for share in shares
        ]
        self.key = flavor.key
        self.children: list[asyncio.subprocess.Process] = []
        self.cpu: list[float] = []

    async def __aenter__(self) -> Workers:
        for order in self.orders:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hivectl.bench.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            self.children.append(child)
            self._write(child, key_line(self.key) + orjson.dumps(order) + b"\n")
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                for child in self.children:
                    await self._answer(child, "ready")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for child in self.children:
            if child.returncode is None:
                child.kill()
            await child.wait()

    async def run(self, go: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        """Let every worker go at once; their results, once all have come (in order)."""
        line = orjson.dumps({"go": go}) + b"\n"
        for child in self.children:
            self._write(child, line)
        async with asyncio.timeout(timeout_s):
            answers = await asyncio.gather(
                *(self._answer(child, "result") for child in self.children)
            )
        self.cpu = [float(answer["cpu_s"]) for answer in answers]
        return [answer["result"] for answer in answers]

    async def end(self) -> None:
        """Have every worker close what it holds (``close_all``), and wait for them to."""
        for child in self.children:
            self._write(child, b'"end"\n')
        async with asyncio.timeout(END_TIMEOUT_S):
            await asyncio.gather(*(self._answer(child, "ended") for child in self.children))

    @staticmethod
    def _write(child: asyncio.subprocess.Process, line: bytes) -> None:
        assert child.stdin is not None
        child.stdin.write(line)

    @staticmethod
    async def _answer(child: asyncio.subprocess.Process, expected: str) -> dict[str, Any]:
        assert child.stdout is not None
        line = await child.stdout.readline()
        answer = orjson.loads(line) if line else {"error": f"exit {await child.wait()}"}
        if not isinstance(answer, dict) or expected not in answer:
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise SetupError(f"a load process failed: {error}")
        return answer


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
    from hivectl.bench.scenarios import SHARES

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
