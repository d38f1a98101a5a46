"""`server.io.deadlines`: one loop timer for many deadlines of the same delay."""

from __future__ import annotations

import asyncio

from server.io.deadlines import Deadlines, Moments


async def test_deadlines_fall_due_in_order_after_their_delay() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.05)
    fired: list[tuple[str, float]] = []
    started = loop.time()
    deadlines.add(lambda name: fired.append((name, loop.time())), "a")
    await asyncio.sleep(0.02)
    deadlines.add(lambda name: fired.append((name, loop.time())), "b")
    await asyncio.sleep(0.1)
    assert [name for name, _ in fired] == ["a", "b"]
    assert fired[0][1] - started >= 0.05 - 0.002
    assert fired[1][1] - started >= 0.07 - 0.002
    assert len(deadlines) == 0


async def test_a_cancelled_deadline_never_fires_and_does_not_hold_the_queue() -> None:
    deadlines = Deadlines(0.03)
    fired: list[str] = []
    first = deadlines.add(fired.append, "first")
    deadlines.add(fired.append, "second")
    Deadlines.cancel(first)
    Deadlines.cancel(first)  # twice is harmless
    await asyncio.sleep(0.06)
    assert fired == ["second"]


async def test_cancelled_entries_at_the_front_are_dropped_when_one_is_added() -> None:
    deadlines = Deadlines(10.0)
    for _ in range(100):
        Deadlines.cancel(deadlines.add(print, "never"))
    deadlines.add(print, "never")
    assert len(deadlines) == 1
    deadlines.close()


async def test_a_callback_may_set_a_deadline_of_the_same_kind() -> None:
    deadlines = Deadlines(0.02)
    fired: list[int] = []

    def again(count: int) -> None:
        fired.append(count)
        if count < 3:
            deadlines.add(again, count + 1)

    deadlines.add(again, 1)
    await asyncio.sleep(0.15)
    assert fired == [1, 2, 3]
    assert len(deadlines) == 0


async def test_close_calls_every_deadline_off() -> None:
    deadlines = Deadlines(0.01)
    fired: list[str] = []
    deadlines.add(fired.append, "x")
    deadlines.close()
    await asyncio.sleep(0.03)
    assert fired == []


async def test_moments_fall_due_in_time_order_whatever_the_order_they_were_set() -> None:
    loop = asyncio.get_running_loop()
    moments = Moments()
    fired: list[tuple[str, float]] = []
    started = loop.time()
    for name, delay in (("late", 0.06), ("early", 0.02), ("middle", 0.04)):
        moments.add(delay, lambda name: fired.append((name, loop.time())), name)
    await asyncio.sleep(0.1)
    assert [name for name, _ in fired] == ["early", "middle", "late"]
    delays = (0.02, 0.04, 0.06)
    assert all(at - started >= delay - 0.002 for (_, at), delay in zip(fired, delays, strict=True))
    assert len(moments) == 0


async def test_cancelled_moments_never_fire_and_the_heap_is_rebuilt_without_them() -> None:
    moments = Moments()
    fired: list[int] = []
    entries = [moments.add(60.0 + i, fired.append, i) for i in range(200)]
    moments.add(0.02, fired.append, -1)
    for entry in entries[:150]:
        moments.cancel(entry)
        moments.cancel(entry)  # twice is harmless
    assert len(moments) == 51
    assert len(moments._heap) < 120  # rebuilt once cancelled entries were most of it
    await asyncio.sleep(0.05)
    assert fired == [-1]
    moments.close()
    moments.cancel(entries[-1])
    assert len(moments) == 0
