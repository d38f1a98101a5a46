"""The console in a real browser against a real server with riders connected."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from hivectl.client import HivekitClient
from server.io.app import HivekitServer
from tests.conftest import SECRET, mint, running
from tests.console.conftest import (
    REALM,
    SCREENSHOTS,
    Watched,
    connect_rider,
    console_url,
    create_riders,
    open_console,
    rider_id,
    viewer_token,
)

RIDERS = 12


@pytest.fixture
async def riders(console_server: HivekitServer) -> AsyncIterator[list[HivekitClient]]:
    await create_riders(console_server.ws_url, RIDERS)
    phones = [await connect_rider(console_server.ws_url, n) for n in range(RIDERS)]
    try:
        yield phones
    finally:
        for phone in phones:
            await phone.close()


async def signed_in(browser: Browser, server: HivekitServer, **viewport: int) -> Watched:
    page = await open_console(browser, console_url(server.ws_url, viewer_token()), **viewport)
    await page.wait(f"() => window.hivectlConsole?.markers().length === {RIDERS}")
    return page


async def test_the_console_loads_with_a_token_and_shows_every_rider(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await signed_in(browser, console_server)
    markers = await page.page.evaluate("() => window.hivectlConsole.markers()")
    assert sorted(m["id"] for m in markers) == [rider_id(n) for n in range(RIDERS)]
    assert {m["status"] for m in markers} == {"connected"}
    await page.wait(f"() => document.querySelectorAll('#objects li').length === {RIDERS}")
    rows = page.page.locator("#objects li[data-status='connected']")
    assert await rows.count() == RIDERS
    assert await page.page.text_content("#online") == str(RIDERS)
    assert await page.page.text_content("#total") == str(RIDERS)
    assert await page.page.text_content("#connection") == "connected"
    # The token was read from the fragment and taken out of the address bar.
    assert page.page.url.endswith(f"/console/#realm={REALM}")
    assert "token" not in page.page.url
    assert page.errors == []


async def test_a_closed_provider_turns_its_marker_disconnected_within_a_second(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await signed_in(browser, console_server)
    gone = rider_id(3)
    started = time.monotonic()
    await riders[3].close()
    await page.wait(
        "id => window.hivectlConsole.markers().find(m => m.id === id).status === 'disconnected'",
        gone,
        within=1.0,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 1.0
    # The event list and the online count follow.
    await page.wait(
        "id => document.querySelector("
        "`#events li[data-object-id='${id}'][data-status='disconnected']`)",
        gone,
    )
    await page.wait(f"() => document.querySelector('#online').textContent === '{RIDERS - 1}'")
    await page.wait(
        "id => document.querySelector(`#objects li[data-object-id='${id}']`)?.dataset.status"
        " === 'disconnected'",
        gone,
    )
    assert "disconnected" in await page.page.text_content(f"#events li[data-object-id='{gone}']")
    assert page.errors == []


async def test_the_event_filter_keeps_the_events_of_matching_ids(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await signed_in(browser, console_server)
    for n in (1, 2, 7):
        await riders[n].close()
    await page.wait("() => document.querySelectorAll('#events li').length === 3")
    await page.page.fill("#event-filter", "riders/r0*")
    await page.wait("() => document.querySelectorAll('#events li').length === 3")
    await page.page.fill("#event-filter", rider_id(7))
    await page.wait("() => document.querySelectorAll('#events li').length === 1")
    assert await page.page.get_attribute("#events li", "data-object-id") == rider_id(7)
    await page.page.fill("#event-filter", "trucks/*")
    await page.wait("() => document.querySelectorAll('#events li').length === 0")
    # A rider coming back shows while filtered by its id pattern.
    await page.page.fill("#event-filter", "*r07")
    riders[7] = await connect_rider(console_server.ws_url, 7)
    await page.wait(
        "() => document.querySelector('#events li')?.dataset.status === 'connected'"
        " && document.querySelectorAll('#events li').length === 2"
    )
    assert page.errors == []


async def test_clicking_a_marker_shows_the_object_and_its_presence_explanation(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await signed_in(browser, console_server)
    chosen = rider_id(5)
    spot = await page.page.evaluate("id => window.hivectlConsole.marker(id)", chosen)
    box = await page.page.locator("#map").bounding_box()
    assert box is not None
    await page.page.mouse.click(box["x"] + spot["x"], box["y"] + spot["y"])
    await page.wait("id => document.querySelector('#details-heading').textContent === id", chosen)
    await page.wait("() => document.querySelector('#providers tbody tr')")
    cells = await page.page.locator("#providers tbody tr td").all_text_contents()
    assert cells[:3] == ["phone-05", "jti-05", console_server.node_id]
    assert cells[3].startswith("20")  # an ISO-8601 time
    assert "Rider 05" in await page.page.text_content("#details-fields")
    assert '"vehicle": "bike"' in await page.page.text_content("#details-data")
    assert "connected since" in await page.page.text_content("#ledger")
    assert await page.page.is_hidden("#providers-action")  # a read-only token: no Disconnect
    # When its phone goes, the explanation follows: no provider, the reason it went.
    await riders[5].close()
    await page.wait("() => document.querySelector('#ledger').textContent.includes('closed')")
    assert await page.page.text_content("#presence-summary") == "No provider holds it."
    assert page.errors == []


async def test_the_lists_and_the_object_panel_work_from_the_keyboard(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await signed_in(browser, console_server)
    keys = page.page.keyboard
    await keys.press("Tab")  # the skip link comes first
    await keys.press("Enter")
    assert await page.page.evaluate("() => document.activeElement.id") == "search"
    await keys.type("r1")
    await page.wait("() => document.querySelectorAll('#objects li').length === 2")
    await keys.press("ArrowDown")
    await keys.press("ArrowDown")
    focused = "() => document.activeElement.closest('li')?.dataset.objectId"
    assert await page.page.evaluate(focused) == rider_id(11)
    await keys.press("ArrowUp")
    assert await page.page.evaluate(focused) == rider_id(10)
    await keys.press("Enter")
    await page.wait(
        "id => document.activeElement.id === 'details-heading'"
        " && document.activeElement.textContent === id",
        rider_id(10),
    )
    await page.wait("() => document.querySelector('#providers tbody tr')")
    await keys.press("Escape")
    assert await page.page.is_hidden("#details")
    assert await page.page.evaluate(focused) == rider_id(10)
    # Enter in the search box shows the one object that matches.
    await page.page.fill("#search", rider_id(4))
    await page.page.focus("#search")
    await keys.press("Enter")
    await page.wait(
        "id => document.querySelector('#details-heading').textContent === id", rider_id(4)
    )
    assert page.errors == []


async def test_a_refused_token_says_why_and_a_pasted_one_signs_in(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    wrong = mint("intruder", secret=SECRET[::-1])
    page = await open_console(browser, console_url(console_server.ws_url, wrong))
    text = await page.wait(
        "() => !document.querySelector('#alert').hidden"
        " && document.querySelector('#alert').textContent"
    )
    assert text == "The server refused the token: signature is invalid."
    assert await page.page.is_visible("#login")
    assert await page.page.is_hidden("#main")
    assert await page.page.input_value("#realm-input") == REALM
    await page.page.fill("#token-input", viewer_token())
    await page.page.click("#login button[type=submit]")
    await page.wait(f"() => window.hivectlConsole.markers().length === {RIDERS}")
    assert await page.page.is_hidden("#alert")
    assert page.errors == []


async def test_without_a_token_it_asks_for_one_and_lists_the_realms(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    base = console_server.ws_url.removesuffix("/ws").replace("ws://", "http://")
    page = await open_console(browser, base + "/console")
    await page.wait("() => !document.querySelector('#login').hidden")
    assert await page.page.evaluate("() => document.activeElement.id") == "token-input"
    await page.page.fill("#token-input", mint("everything", per={"*": {"*": "R"}}))
    await page.page.keyboard.press("Tab")
    await page.page.keyboard.press("Tab")
    await page.page.keyboard.press("Enter")
    await page.wait(f"() => window.hivectlConsole.realm === '{REALM}'")
    await page.wait(f"() => window.hivectlConsole.total === {RIDERS}")
    options = await page.page.locator("#realm option").all_text_contents()
    assert options == [REALM]
    assert page.errors == []


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (390, 844)])
async def test_readable_without_horizontal_scrolling(
    browser: Browser,
    console_server: HivekitServer,
    riders: list[HivekitClient],
    width: int,
    height: int,
    tmp_path: Path,
) -> None:
    page = await signed_in(browser, console_server, width=width, height=height)
    await page.page.click("#objects li:nth-child(2) button")
    await page.wait("() => document.querySelector('#providers tbody tr')")
    sizes = await page.page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth,"
        " client: document.documentElement.clientWidth,"
        " map: document.querySelector('#map').getBoundingClientRect(),"
        " details: document.querySelector('#details').getBoundingClientRect()})"
    )
    assert sizes["scroll"] <= sizes["client"] == width
    assert sizes["map"]["height"] >= 250 and sizes["map"]["width"] >= 300
    assert sizes["details"]["right"] <= width
    await page.page.screenshot(path=str(tmp_path / f"console-{width}x{height}.png"), full_page=True)
    assert page.errors == []


async def test_screenshots_of_a_thousand_riders_and_the_object_panel(
    browser: Browser, console_server: HivekitServer, tmp_path: Path
) -> None:
    """Saved in the test's directory; with HIVECTL_SCREENSHOTS=1 into docs/console for the
    README. One gateway provides every rider (``riders/*``), a few are left offline."""
    count = 1000
    url = console_server.ws_url
    await create_riders(url, count)
    offline = {rider_id(n) for n in range(0, count, 9)}
    gateway_ids = [rider_id(n) for n in range(count) if rider_id(n) not in offline]
    gateway = HivekitClient(url, mint("gateway-1", jti="gw-1", dpv={REALM: gateway_ids}))
    await gateway.connect()
    try:
        page = await signed_in_many(browser, console_server, count, online=len(gateway_ids))
        where = SCREENSHOTS if os.environ.get("HIVECTL_SCREENSHOTS") == "1" else tmp_path
        where.mkdir(parents=True, exist_ok=True)
        await page.page.screenshot(path=str(where / "map-1000.png"))
        await page.page.evaluate("id => window.hivectlConsole.select(id)", rider_id(10))
        await page.wait("() => document.querySelector('#providers tbody tr')")
        await page.page.screenshot(path=str(where / "object-panel.png"))
        assert (where / "map-1000.png").stat().st_size > 10_000
        assert page.errors == []
    finally:
        await gateway.close()


async def signed_in_many(
    browser: Browser, server: HivekitServer, count: int, *, online: int
) -> Watched:
    page = await open_console(browser, console_url(server.ws_url, viewer_token()))
    await page.wait(
        f"() => window.hivectlConsole?.markers().length === {count}"
        f" && window.hivectlConsole.online === {online}",
        within=30,
    )
    await asyncio.sleep(0)  # let the frame that drew the last markers finish
    await page.wait(f"() => document.querySelector('#online').textContent === '{online}'")
    return page


async def test_unreachable_tiles_leave_a_plain_map_with_a_scale(browser: Browser) -> None:
    """Nothing listens on port 9 here: every tile fails, as on an air-gapped network."""
    tiles = "http://127.0.0.1:9/{z}/{x}/{y}.png"
    async with running({"console.tile_url": tiles}) as server:
        await create_riders(server.ws_url, 3)
        page = await open_console(browser, console_url(server.ws_url, viewer_token()))
        notice = await page.wait(
            "() => !document.querySelector('#map-notice').hidden"
            " && document.querySelector('#map-notice').textContent"
        )
        assert notice == "Map tiles cannot be fetched from 127.0.0.1:9: plain background."
        await page.wait("() => window.hivectlConsole.markers().length === 3")
        assert await page.page.is_visible(".leaflet-control-scale")
        assert {
            m["status"] for m in await page.page.evaluate("() => window.hivectlConsole.markers()")
        } == {"disconnected"}
        # The failed tiles are the only errors.
        assert page.errors, "the tiles were not even tried"
        assert all("ERR_" in error for error in page.errors), page.errors


async def test_id_patterns_match_as_the_protocol_says(
    browser: Browser, console_server: HivekitServer
) -> None:
    """The page's own pattern matcher (model.js) against protocol.md section 3."""
    page = await open_console(browser, console_url(console_server.ws_url, viewer_token()))
    cases = [
        ["riders/*", "riders/r1", True],
        ["riders/*", "riders/", True],
        ["riders/*", "rider/r1", False],
        ["*", "", True],
        ["a*b*c", "abc", True],
        ["a*b*c", "acb", False],
        ["a*a", "a", False],
        ["r?[1]", "r?[1]", True],
        ["r?[1]", "rx1", False],
        ["*/r0*", "london/riders/r01", True],
        ["x", "X", False],
    ]
    got = await page.page.evaluate(
        """async cases => {
          const { compilePattern } = await import('./model.js');
          return cases.map(([pattern, id]) => compilePattern(pattern)(id));
        }""",
        cases,
    )
    assert got == [expected for _, _, expected in cases]
