"""Waits of the cluster log end at their deadline whatever a task does with a cancellation.

The NATS client may swallow a cancellation: its `_flush_pending` catches
`CancelledError`, and on Python 3.11 `asyncio.wait_for` returns a reply that arrived
just before its task was cancelled (measured: about one loop of NATS requests in two,
cancelled at a random moment, went on running). A wait bounded by `asyncio.timeout`
cancels once, so a loop that swallowed it runs for ever: a node hung on start-up or on
leaving. These tests use tasks that swallow cancellations the way the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from server.cluster import jetstream_log as cluster_log
from server.cluster.jetstream_log import STOP_TIMEOUT, stop_tasks, within


async def _polls_for_ever(swallow: int) -> None:
    """Polls like a watcher loop, swallowing the first `swallow` cancellations."""
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            if swallowed >= swallow:
                raise
            swallowed += 1


async def test_within_gives_up_at_its_deadline_when_the_work_swallows_a_cancellation() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(0.2, _polls_for_ever(swallow=3))
    assert time.monotonic() - started < 0.2 + 1.0


async def test_asyncio_timeout_alone_would_not_end_such_work() -> None:
    """The failure `within` exists for: one cancellation, swallowed, ends nothing."""
    task = asyncio.create_task(_polls_for_ever(swallow=1))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    await stop_tasks([task])
    assert task.cancelled()


async def test_within_returns_the_result_and_passes_errors() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async def fails() -> None:
        raise ValueError("refused")

    assert await within(1.0, answer()) == 42
    with pytest.raises(ValueError, match="refused"):
        await within(1.0, fails())


async def test_cancelling_the_caller_of_within_stops_the_work() -> None:
    work = asyncio.Event()

    async def runs() -> None:
        try:
            await _polls_for_ever(swallow=2)
        finally:
            work.set()

    caller = asyncio.create_task(within(60.0, runs()))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert work.is_set()


async def test_stop_tasks_ends_tasks_that_swallow_cancellations() -> None:
    tasks = [asyncio.create_task(_polls_for_ever(swallow=n)) for n in (0, 1, 5)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await stop_tasks(tasks)
    assert all(task.cancelled() for task in tasks)
    assert time.monotonic() - started < STOP_TIMEOUT


async def test_stop_tasks_gives_up_on_a_task_that_never_ends_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_log, "STOP_TIMEOUT", 0.3)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.001)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hivectl.cluster"):
        await stop_tasks([task])
    assert time.monotonic() - started < 0.3 + 0.5
    assert not task.done()
    assert "stubborn did not end" in caplog.text
    release.set()
    await task
