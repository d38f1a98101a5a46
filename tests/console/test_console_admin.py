"""The console's admin part in a real browser: the Connections panel, disconnecting after a
confirmation (from the panel and from the object panel), and a read-only token that is
offered none of it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser

from hivectl.client import HivekitClient
from server.io.app import HivekitServer
from tests.conftest import mint
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

RIDERS = 6
ADMIN_SUB = "console-admin"
ROWS = "#connections tr[data-connection-id]"
WHO = f"() => [...document.querySelectorAll('{ROWS}')].map(row => row.dataset.who).sort()"
PHONES = [f"phone-{n:02d}" for n in range(RIDERS)]


def admin_token() -> str:
    return mint(ADMIN_SUB, jti="console-admin-1", per={REALM: {"*": "CRUD"}}, adm=True)


@pytest.fixture
async def riders(console_server: HivekitServer) -> AsyncIterator[list[HivekitClient]]:
    await create_riders(console_server.ws_url, RIDERS)
    phones = [await connect_rider(console_server.ws_url, n) for n in range(RIDERS)]
    try:
        yield phones
    finally:
        for phone in phones:
            await phone.close()


async def admin_console(browser: Browser, server: HivekitServer, **viewport: int) -> Watched:
    page = await open_console(browser, console_url(server.ws_url, admin_token()), **viewport)
    await page.wait(f"() => window.hivectlConsole?.markers().length === {RIDERS}")
    await page.wait(
        f"() => document.querySelectorAll('{ROWS}').length === {RIDERS + 1}", explain=WHO
    )
    return page


def connection_of(server: HivekitServer, sub: str) -> str:
    (conn,) = [s.conn_id for s in server.hub.sessions.values() if s.sub == sub]
    return conn


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


def row(conn: str) -> str:
    return f"#connections tr[data-connection-id='{conn}']"


async def test_the_panel_lists_the_realms_connections_and_keeps_them_fresh(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await admin_console(browser, console_server)
    assert await page.page.evaluate(WHO) == sorted([ADMIN_SUB, *PHONES])
    assert "(admin)" in await page.page.text_content("#who")
    three = connection_of(console_server, "phone-03")
    cells = await page.page.evaluate(
        "selector => Object.fromEntries([...document.querySelector(selector).cells]"
        ".map(td => [td.dataset.label || td.className, td.textContent]))",
        row(three),
    )
    assert cells.pop("since")  # the local time of day
    assert cells == {
        "sub": "phone-03",
        "node": console_server.node_id,
        "remote": cells["remote"],
        "provides": f"{REALM}:{rider_id(3)}",
        "in": cells["in"],
        "out": cells["out"],
        "queued": "0 B",
        "action": "Disconnect phone-03",
    }
    assert cells["remote"].startswith("127.0.0.1:")
    assert int(cells["in"]) >= 0 and int(cells["out"]) >= 1
    own = connection_of(console_server, ADMIN_SUB)
    assert "(this console's token)" in await page.page.text_content(row(own))
    await page.page.click(f"{row(own)} button")
    await page.wait("() => document.querySelector('#disconnect-dialog').open")
    assert "It uses this console's token" in await page.page.text_content("#disconnect-what")
    await page.page.click("#disconnect-cancel")
    status = await page.page.text_content("#connections-status")
    assert status.startswith(f"{RIDERS + 1} connections in realm {REALM}, updated ")
    assert await page.page.is_hidden("#connections-warning")
    # Every 5 seconds, without a click: a rider that connects appears.
    late = await connect_rider(console_server.ws_url, RIDERS)
    try:
        await page.wait(
            f"() => document.querySelectorAll('{ROWS}').length === {RIDERS + 2}",
            within=8,
            explain=WHO,
        )
    finally:
        await late.close()
    # Refresh: one that left is gone at once.
    await page.page.click("#connections-refresh")
    await page.wait(
        f"() => document.querySelectorAll('{ROWS}').length === {RIDERS + 1}",
        within=2,
        explain=WHO,
    )
    assert page.errors == []


async def test_a_disconnect_asks_first_and_cancel_closes_nothing(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await admin_console(browser, console_server)
    three = connection_of(console_server, "phone-03")
    button = f"{row(three)} button"
    active = "() => document.activeElement.id || document.activeElement.closest('tr')?.dataset.who"
    # From the keyboard: focus moves into the dialog, Escape cancels and gives it back.
    await page.page.focus(button)
    await page.page.keyboard.press("Enter")
    await page.wait("() => document.querySelector('#disconnect-dialog').open")
    assert await page.page.evaluate(active) == "disconnect-reason"
    assert await page.page.text_content("#disconnect-what") == (
        f"The connection {three} of phone-03."
    )
    await page.page.keyboard.press("Escape")
    await page.wait("() => !document.querySelector('#disconnect-dialog').open")
    assert await page.page.evaluate(active) == "phone-03"
    # A refresh that finds the same connections leaves the focused button as it was.
    status = await page.page.text_content("#connections-status")
    await page.page.evaluate("() => { document.activeElement.kept = true; }")
    await page.wait(
        "before => document.querySelector('#connections-status').textContent !== before",
        status,
        within=7,
    )
    assert await page.page.evaluate("() => document.activeElement.kept === true")
    # Cancel: nothing is sent, the rider stays.
    await page.page.click(button)
    await page.page.fill("#disconnect-reason", "not really")
    await page.page.click("#disconnect-cancel")
    await page.wait("() => !document.querySelector('#disconnect-dialog').open")
    assert await page.page.evaluate(active) == "phone-03"
    await page.page.click("#connections-refresh")
    await page.wait(f"() => document.querySelectorAll('{ROWS}').length === {RIDERS + 1}")
    assert connection_of(console_server, "phone-03") == three
    assert riders[3].connection.close_code is None
    assert await page.page.text_content("#connections-result") == ""
    # Confirm: it is closed with the reason, its row goes, its object goes disconnected.
    await page.page.click(button)
    await page.page.fill("#disconnect-reason", "shift over")
    await page.page.click("#disconnect-confirm")
    await page.wait(
        "() => document.querySelector('#connections-result').textContent"
        " === 'Closed 1 connection (phone-03).'"
    )
    assert await page.page.evaluate("() => document.activeElement.id") == "connections-result"
    await page.wait(f'() => !document.querySelector("{row(three)}")', explain=WHO)
    assert await page.page.evaluate(WHO) == sorted([ADMIN_SUB, *PHONES[:3], *PHONES[4:]])
    await until(lambda: riders[3].connection.close_code == 4003)
    assert riders[3].connection.close_reason == "kicked: shift over"
    await page.wait(
        "id => window.hivectlConsole.markers().find(m => m.id === id).status === 'disconnected'",
        rider_id(3),
    )
    await page.wait(
        "id => document.querySelector(`#objects li[data-object-id='${id}']`)?.dataset.status"
        " === 'disconnected'",
        rider_id(3),
    )
    # The presence explanation says why.
    await page.page.evaluate("id => window.hivectlConsole.select(id)", rider_id(3))
    await page.wait("() => document.querySelector('#ledger').textContent.includes('kicked')")
    assert page.errors == []


async def test_a_provider_is_disconnected_from_the_object_panel(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await admin_console(browser, console_server)
    await page.page.evaluate("id => window.hivectlConsole.select(id)", rider_id(5))
    await page.wait("() => document.querySelector('#providers tbody tr button')")
    assert await page.page.is_visible("#providers-action")
    await page.page.click("#providers tbody tr button")
    await page.wait("() => document.querySelector('#disconnect-dialog').open")
    assert await page.page.text_content("#disconnect-what") == (
        "Every connection using the token jti-05 (sub phone-05)."
    )
    # Escape closes the confirmation, not the object panel under it.
    await page.page.keyboard.press("Escape")
    await page.wait("() => !document.querySelector('#disconnect-dialog').open")
    assert await page.page.is_visible("#details")
    assert await page.page.evaluate("() => document.activeElement.textContent") == (
        "Disconnect phone-05"
    )
    await page.page.click("#providers tbody tr button")
    await page.wait("() => document.querySelector('#disconnect-dialog').open")
    await page.page.click("#disconnect-confirm")
    await page.wait(
        "() => document.querySelector('#providers-result').textContent"
        " === 'Closed 1 connection (phone-05).'"
    )
    await page.wait(
        "() => document.querySelector('#presence-summary').textContent === 'No provider holds it.'"
    )
    await page.wait("() => document.querySelector('#ledger').textContent.includes('kicked')")
    assert await page.page.is_visible("#details")
    await until(lambda: riders[5].connection.close_code == 4003)
    await page.wait(f"() => !({WHO})().includes('phone-05')", explain=WHO)
    assert page.errors == []


async def test_a_refusal_is_shown_as_text(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    """As if the grant were withdrawn while the page shows the panel: the server says 403."""
    page = await admin_console(browser, console_server)
    for session in console_server.hub.sessions.values():
        if session.sub == ADMIN_SUB and session.claims is not None:
            session.claims = dataclasses.replace(session.claims, adm=False)
    await page.page.click("#connections-refresh")
    status = await page.wait(
        "() => document.querySelector('#connections-status').dataset.state === 'error'"
        " && document.querySelector('#connections-status').textContent"
    )
    assert status == (
        "▲ Cannot list connections: "
        "permission denied: admin operations need a token with the adm claim"
    )
    assert await page.page.locator(ROWS).count() == 0
    assert page.errors == []


async def test_a_read_only_token_is_offered_no_admin_part(
    browser: Browser, console_server: HivekitServer, riders: list[HivekitClient]
) -> None:
    page = await open_console(browser, console_url(console_server.ws_url, viewer_token()))
    await page.wait(f"() => window.hivectlConsole?.markers().length === {RIDERS}")
    await page.page.evaluate("id => window.hivectlConsole.select(id)", rider_id(1))
    await page.wait("() => document.querySelector('#providers tbody tr')")
    assert await page.page.is_hidden("#connections-panel")
    assert await page.page.is_hidden("#providers-action")
    assert await page.page.locator("#providers button, #connections button").count() == 0
    assert "(admin)" not in await page.page.text_content("#who")
    assert page.errors == []


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (390, 844)])
async def test_the_panel_and_the_confirmation_fit_the_screen(
    browser: Browser,
    console_server: HivekitServer,
    riders: list[HivekitClient],
    width: int,
    height: int,
    tmp_path: Path,
) -> None:
    """With HIVECTL_SCREENSHOTS=1 the panel at 1280x720 goes to docs/console for the README."""
    page = await admin_console(browser, console_server, width=width, height=height)
    await page.page.locator("#connections-panel").scroll_into_view_if_needed()
    sizes = await page.page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth,"
        " client: document.documentElement.clientWidth,"
        " panel: document.querySelector('#connections-panel').getBoundingClientRect(),"
        " buttons: [...document.querySelectorAll('#connections button')]"
        "   .map(b => b.getBoundingClientRect().right)})"
    )
    assert sizes["scroll"] <= sizes["client"] == width
    assert sizes["panel"]["right"] <= width
    assert sizes["buttons"] and max(sizes["buttons"]) <= width
    keep = os.environ.get("HIVECTL_SCREENSHOTS") == "1" and width == 1280
    where = SCREENSHOTS if keep else tmp_path
    where.mkdir(parents=True, exist_ok=True)
    await page.page.screenshot(path=str(where / "connections.png"))
    await page.page.click(f"{row(connection_of(console_server, 'phone-02'))} button")
    await page.wait("() => document.querySelector('#disconnect-dialog').open")
    box = await page.page.locator("#disconnect-dialog").bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert box["y"] >= 0 and box["y"] + box["height"] <= height
    await page.page.screenshot(path=str(tmp_path / "disconnect-confirmation.png"))
    await page.page.click("#disconnect-cancel")
    # The object panel's providers table with its Disconnect column.
    await page.page.evaluate("id => window.hivectlConsole.select(id)", rider_id(2))
    await page.wait("() => document.querySelector('#providers tbody button')")
    await page.page.locator("#providers").scroll_into_view_if_needed()
    right = await page.page.evaluate(
        "() => document.querySelector('#providers tbody button').getBoundingClientRect().right"
    )
    assert right <= width
    assert await page.page.evaluate("() => document.documentElement.scrollWidth") == width
    await page.page.screenshot(path=str(tmp_path / "object-panel-admin.png"))
    assert page.errors == []


async def test_the_admin_panels_wording(browser: Browser, console_server: HivekitServer) -> None:
    """model.js's pure helpers, imported into the page as the console imports them."""
    page = await open_console(browser, console_url(console_server.ws_url, viewer_token()))
    got = await page.page.evaluate(
        """async () => {
          const m = await import('./model.js');
          const now = new Date('2026-03-01T12:00:00Z');
          return {
            provides: [
              m.providesText(null),
              m.providesText({}),
              m.providesText({london: ['riders/r01']}),
              m.providesText({london: ['a', 'b', 'c', 'd', 'e'], paris: ['f']}),
            ],
            unanswered: [m.unansweredText([], 'x'), m.unansweredText(['n2'], 'not listed'),
                         m.unansweredText(['n2', 'n3'], 'not listed')],
            summary: [
              m.disconnectSummary({disconnected: [], unanswered: []}),
              m.disconnectSummary({disconnected: [{id: 'c1', node: 'n', sub: 'phone-01'}]}),
              m.disconnectSummary({disconnected: [{id: 'c1', node: 'n', sub: null},
                                                  {id: 'c2', node: 'n', sub: 'gw'}]}),
            ],
            targets: [
              m.providerTarget({sub: 's', jti: 'j'}),
              m.providerTarget({sub: 's'}),
              m.providerTarget({}),
            ],
            counts: [m.connectionsSummary(1, 'london'), m.connectionsSummary(0, 'x')],
            since: [
              m.sinceText('2026-03-01T11:00:00Z', now)
                === new Date('2026-03-01T11:00:00Z').toLocaleTimeString(),
              m.sinceText('2026-02-01T11:00:00Z', now)
                === new Date('2026-02-01T11:00:00Z').toLocaleString(),
              m.sinceText('whenever', now),
            ],
          };
        }"""
    )
    assert got == {
        "provides": [
            "—",
            "—",
            "london:riders/r01",
            "london:a, london:b, london:c and 3 more",
        ],
        "unanswered": [
            "",
            "No answer from node n2: not listed.",
            "No answer from nodes n2, n3: not listed.",
        ],
        "summary": [
            "Nothing closed: the connection had already gone.",
            "Closed 1 connection (phone-01).",
            "Closed 2 connections (c1, gw).",
        ],
        "targets": [{"jti": "j"}, {"sub": "s"}, None],
        "counts": ["1 connection in realm london", "0 connections in realm x"],
        "since": [True, True, "whenever"],
    }
    assert page.errors == []
