"""Frames per second of the console with 10,000 objects moving once per second.

The server is a `hivectl serve` process (its own core, as in production), a gateway
provider in this process moves every object once a second, and the browser counts its
animation frames for a few seconds. The figure is printed (and quoted in the README), not
asserted: a shared 2-core machine's timing is no pass mark. What is asserted is that the
console kept up: every object on the map, and the positions it shows are recent ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from hivectl.client import HivekitClient
from tests.cli.conftest import ServeProcess, clean_env
from tests.conftest import SECRET, mint
from tests.console.conftest import CHUNK, REALM, console_url, create_riders, open_console

OBJECTS = 10_000
MEASURE_S = 5.0
MEASURE_FRAMES = """
async seconds => {
  const frames = [];
  const end = performance.now() + seconds * 1000;
  await new Promise(done => {
    const step = now => { frames.push(now); now < end ? requestAnimationFrame(step) : done(); };
    requestAnimationFrame(step);
  });
  const gaps = frames.slice(1).map((t, i) => t - frames[i]).sort((a, b) => a - b);
  return {
    fps: (frames.length - 1) / ((frames.at(-1) - frames[0]) / 1000),
    p95FrameMs: gaps[Math.floor(gaps.length * 0.95)],
    updatesPerSecond: Number(document.querySelector('#update-rate').textContent),
    drawn: window.hivectlConsole.frames(),
  };
}
"""


EXPLAIN = (
    "() => [window.hivectlConsole?.markers().length, window.hivectlConsole?.online,"
    " document.querySelector('#connection')?.textContent]"
)
POSITIONS = (
    "() => Object.fromEntries(window.hivectlConsole.markers().map(m => [m.id, [m.lat, m.lon]]))"
)


def _spot(n: int, tick: int) -> dict[str, float]:
    """Object n's place at second `tick`: a small step around its own grid point."""
    row, col = divmod(n, 100)
    step = 0.0004 * (tick % 4)
    return {"lat": 51.45 + 0.0008 * row + step, "lon": -0.2 + 0.0012 * col + step}


async def _move_everything(url: str, stop: asyncio.Event) -> None:
    """One gateway for every object; each second every object sends one location."""
    gateway = HivekitClient(url, mint("gateway", dpv={REALM: ["riders/*"]}), reconnect=False)
    await gateway.connect()
    try:
        tick = 0
        while not stop.is_set():
            started = time.monotonic()
            tick += 1
            for start in range(0, OBJECTS, CHUNK):
                await gateway.connection.send(
                    [
                        {
                            "typ": "obj",
                            "act": "set",
                            "rea": REALM,
                            "id": f"riders/r{n:02d}",
                            "loc": _spot(n, tick),
                        }
                        for n in range(start, min(start + CHUNK, OBJECTS))
                    ]
                )
                await asyncio.sleep(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        await gateway.close()


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[ServeProcess]:
    env = clean_env(
        HIVECTL_AUTH_SECRET=SECRET,
        HIVECTL_CONSOLE_TILE_URL="",
        HIVECTL_LIMITS_MESSAGES_PER_SECOND="50000",
        HIVECTL_LIMITS_BURST="50000",
    )
    process = ServeProcess(tmp_path, env, "--storage", "memory")
    yield process
    process.kill()


async def test_frames_per_second_with_ten_thousand_moving_objects(
    browser: Browser, fast_server: ServeProcess
) -> None:
    url = fast_server.ws_url
    await create_riders(url, OBJECTS)
    stop = asyncio.Event()
    mover = asyncio.create_task(_move_everything(url, stop))
    try:
        page = await open_console(
            browser, console_url(url, mint("viewer", per={REALM: {"*": "R"}}))
        )
        await page.wait(
            f"() => window.hivectlConsole?.markers().length === {OBJECTS}"
            f" && window.hivectlConsole.online === {OBJECTS}",
            within=60,
            explain=EXPLAIN,
        )
        await asyncio.sleep(2)  # the initial state is in; measure the steady moving state
        measured = await page.page.evaluate(MEASURE_FRAMES, MEASURE_S)
        # The markers move: compare where they are drawn 1.5 s apart.
        before = await page.page.evaluate(POSITIONS)
        await asyncio.sleep(1.5)
        after = await page.page.evaluate(POSITIONS)
        moved = sum(1 for key, where in after.items() if before[key] != where)
        assert len(after) == OBJECTS
        assert moved > 0
        assert measured["updatesPerSecond"] > 0
        assert page.errors == []
    finally:
        stop.set()
        await mover
    drawn = measured.pop("drawn")
    report = {
        "objects": OBJECTS,
        "movedIn1.5s": moved,
        **{key: round(value, 1) for key, value in measured.items()},
        "meanDrawMs": round(drawn["busyMs"] / max(1, drawn["count"]), 2),
        "worstDrawMs": round(drawn["worstMs"], 1),
    }
    print(f"\nconsole fps: {json.dumps(report)}")
