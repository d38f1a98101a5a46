"""Reconnects against a tiny WebSocket server that authenticates every client and closes
it at once with 4008 (what a slow-consumer loop looks like from the client): the gaps
between dials grow, every close is reported with its code and reason, and a connection
that held resets the schedule."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import pytest

from hivectl.client import CloseInfo, HivekitClient
from hivectl.client.connection import Connection
from tests.client.closing import ClosingServer, closing_server
from tests.server.wsutil import until


@pytest.fixture
async def closing() -> AsyncIterator[ClosingServer]:
    async with closing_server() as server:
        yield server


async def test_immediate_closes_back_off_with_growing_jittered_gaps(
    closing: ClosingServer, caplog: pytest.LogCaptureFixture
) -> None:
    base = 0.1
    connection = Connection(
        closing.url,
        "token",
        reconnect_delay=base,
        max_reconnect_delay=10.0,
        stable_after=5.0,
        jitter=random.Random(5).random,
    )
    closes: list[CloseInfo] = []
    connection.on_close(closes.append)
    caplog.set_level(logging.WARNING, logger="hivectl.client")
    await connection.open()
    try:
        await until(lambda: len(closing.accepted) >= 6, "six dials", timeout=15.0)
    finally:
        await connection.close()

    gaps = [b - a for a, b in zip(closing.accepted, closing.accepted[1:], strict=False)]
    floors = [base * 2**n / 2 for n in range(len(gaps))]
    assert all(gap >= floor for gap, floor in zip(gaps, floors, strict=False)), gaps
    assert gaps[4] > 2 * gaps[0]
    first = closes[:5]
    assert [c.attempt for c in first] == [1, 2, 3, 4, 5]
    assert all((c.code, c.reason) == (4008, "slow consumer") for c in first)
    assert all(c.uptime_s is not None and c.uptime_s < 5.0 for c in first)
    shares = [c.retry_in_s / (base * 2**n) for n, c in enumerate(first) if c.retry_in_s]
    assert all(0.5 <= share <= 1.0 for share in shares) and len(set(shares)) == 5
    assert connection.last_close is not None and connection.last_close.code == 4008
    assert "closed: 4008 slow consumer" in str(first[0])
    assert any("4008 slow consumer" in r.getMessage() for r in caplog.records)


async def test_a_connection_that_held_resets_the_backoff(closing: ClosingServer) -> None:
    closing.hold = 0.3
    client = HivekitClient(closing.url, "token", reconnect_delay=0.05, stable_after=0.2)
    closes: list[CloseInfo] = []
    client.on_close(closes.append)
    await client.connect()
    try:
        await until(lambda: len(closes) >= 4, "four closes", timeout=15.0)
    finally:
        await client.close()
    assert [c.attempt for c in closes[:4]] == [1, 1, 1, 1]
    assert all(c.retry_in_s is not None and c.retry_in_s <= 0.05 for c in closes[:4])
    assert client.last_close is not None


async def test_without_reconnect_the_close_is_still_reported(closing: ClosingServer) -> None:
    client = HivekitClient(closing.url, "token", reconnect=False)
    closes: list[CloseInfo] = []
    client.on_close(closes.append)
    await client.connect()
    try:
        await until(lambda: bool(closes), "the close")
    finally:
        await client.close()
    assert (closes[0].code, closes[0].retry_in_s, closes[0].attempt) == (4008, None, 0)
    assert len(closing.accepted) == 1
