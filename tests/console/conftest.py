"""Browser tests of the web console: Playwright driving Debian's chromium (never a browser
that Playwright downloads), a real server, riders that are real WebSocket clients."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from hivectl.client import HivekitClient
from server.io.app import HivekitServer
from tests.conftest import mint, running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REALM = "london"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
"""Where ``HIVECTL_SCREENSHOTS=1`` puts the README's pictures."""
CHUNK = 200
"""Objects per setup frame: well under the server's 64 KiB frames."""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def console_server() -> AsyncIterator[HivekitServer]:
    """A server whose console draws no tiles: the tests have no network, and a failed tile
    would be a console error."""
    async with running({"console.tile_url": ""}) as server:
        yield server


def viewer_token() -> str:
    """A console's token that may only read the realm."""
    return mint("console-viewer", per={REALM: {"*": "R"}})


def console_url(server_ws_url: str, token: str, realm: str | None = REALM) -> str:
    base = server_ws_url.removesuffix("/ws").replace("ws://", "http://")
    fragment = f"token={token}" + (f"&realm={realm}" if realm else "")
    return f"{base}/console/#{fragment}"


class Watched:
    """A page with its console errors and uncaught exceptions collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def wait(
        self, expression: str, arg: Any = None, *, within: float = 10.0, explain: str = ""
    ) -> Any:
        """Wait until `expression` is truthy; on a timeout, say what `explain` shows then."""
        try:
            handle = await self.page.wait_for_function(expression, arg=arg, timeout=within * 1000)
        except PlaywrightTimeout:
            shown = await self.page.evaluate(explain) if explain else None
            raise AssertionError(
                f"not within {within}s: {expression}; {shown}; errors {self.errors}"
            ) from None
        return await handle.json_value()


async def open_console(
    browser: Browser, url: str, *, width: int = 1280, height: int = 720
) -> Watched:
    page = await browser.new_page(viewport={"width": width, "height": height})
    watched = Watched(page)
    await page.goto(url)
    return watched


def rider_id(n: int) -> str:
    return f"riders/r{n:02d}"


def spot(n: int, count: int) -> dict[str, float]:
    """A rider's place: a grid over central London, a few hundred metres apart."""
    side = max(1, math.ceil(math.sqrt(count)))
    return {"lat": 51.49 + 0.004 * (n // side), "lon": -0.16 + 0.006 * (n % side)}


async def create_riders(url: str, count: int, realm: str = REALM) -> None:
    """The realm and `count` located rider objects, nobody providing them yet."""
    async with HivekitClient(url, mint("setup")) as admin:
        await admin.realm.create(realm)
        for start in range(0, count, CHUNK):
            await admin.connection.request_batch(
                [
                    {
                        "typ": "obj",
                        "act": "cre",
                        "rea": realm,
                        "id": rider_id(n),
                        "lab": f"Rider {n:02d}",
                        "loc": spot(n, count),
                        "dat": {"vehicle": "bike", "shift": n % 3},
                    }
                    for n in range(start, min(start + CHUNK, count))
                ]
            )


async def connect_rider(url: str, n: int, realm: str = REALM) -> HivekitClient:
    """Rider `n`'s phone: a data provider for its object, so the object goes online."""
    token = mint(
        f"phone-{n:02d}", jti=f"jti-{n:02d}", dpv={realm: [rider_id(n)]}, per={realm: {"*": "R"}}
    )
    client = HivekitClient(url, token, reconnect=False)
    await client.connect()
    return client
