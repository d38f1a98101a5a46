"""Load processes: a scenario's connections spread over several processes, so that the
load side is not one Python process that runs out of CPU before the server does.

*connect*, *churn* and *fanout* each split their connections into shares
(`split`), one per load process, and stay the coordinator: they watch, keep the CPU window
and merge the figures. Each share runs in ``python -m hivectl.bench.share_process``
(`hivectl.bench.share_process`), driven over
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
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from hivectl.bench.flavors import Flavor, SetupError, key_line

READY_TIMEOUT_S = 300.0
"""Longest a worker may take to set its share up (minting thousands of tokens, connecting
a thousand riders on a busy machine)."""
RUN_MARGIN_S = 300.0
"""How much longer than its planned duration a measured phase may take before the
coordinator gives up on a worker (every connect has timeouts of its own)."""
END_TIMEOUT_S = 120.0
LINE_LIMIT = 256 * 1024 * 1024
"""A result line may be long: *churn* reports each connect + close it made."""
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
                "hivectl.bench.share_process",
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
