"""Many requests on one connection: frames under the server's limits, paced under its rate.

The messages go in the order given, one frame at a time, each frame booked with the
connection's `Pacer` (`hivectl.core.pacing`): a paced client should never see a 429. If one
comes anyway (the server's clock, another limit), the server rejects a frame's tail once its
bucket is empty, so the rejected messages go back to the front of the queue, after a pause,
and the order the server applies them in stays the order given; after `MAX_ATTEMPTS` they
count as failed. A message that alone is larger than ``limits.max_message_size`` would get
the connection closed (1009): it is failed with a 413 and never sent.

When the connection is lost, whatever was not answered fails with the close's cause: a
bulk operation reports, it does not hide a partial result behind a reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from hivectl.client.connection import Connection
from hivectl.client.errors import ConnectionLost, HivekitError
from hivectl.core.pacing import CID_BYTES, Budget, split_frames

RATE_LIMITED = 429
MAX_ATTEMPTS = 5
"""Sends of one message that a 429 may refuse before it counts as failed."""

Progress = Callable[[int, int], None]
"""Called with (messages answered, messages in all) after every frame."""


async def send_all(
    connection: Connection,
    messages: Sequence[dict[str, Any]],
    budget: Budget,
    *,
    on_progress: Progress | None = None,
) -> list[Any]:
    """Each message's reply ``dat``, or the `HivekitError` it failed with, in order."""
    total = len(messages)
    sizes = [len(orjson.dumps(message)) for message in messages]
    results: list[Any] = [None] * total
    queue: deque[int] = deque()
    for index, size in enumerate(sizes):
        if size + CID_BYTES > budget.message_bytes:
            results[index] = HivekitError(
                413,
                f"too large: {size} bytes, the server takes at most {budget.message_bytes}"
                " (limits.max_message_size)",
            )
        else:
            queue.append(index)
    answered = total - len(queue)
    attempts = dict.fromkeys(queue, 0)
    pacer = budget.pacer()
    while queue:
        frame = _next_frame(queue, sizes, budget)
        await asyncio.sleep(pacer.delay(len(frame), time.monotonic()))
        try:
            replies = await connection.request_batch([messages[index] for index in frame])
        except ConnectionLost:
            replies = [ConnectionLost("lost")] * len(frame)
        except TimeoutError:
            timeout = connection.request_timeout
            replies = [HivekitError(0, f"no reply within {timeout:g}s")] * len(frame)
        if any(isinstance(reply, ConnectionLost) for reply in replies):
            lost = ConnectionLost(_lost_cause(connection))
            for index in itertools.chain(frame, queue):
                results[index] = lost
            answered = total
            queue.clear()
            break
        retry = []
        for index, reply in zip(frame, replies, strict=True):
            attempts[index] += 1
            limited = isinstance(reply, HivekitError) and reply.code == RATE_LIMITED
            if limited and attempts[index] < MAX_ATTEMPTS:
                retry.append(index)
            else:
                results[index] = reply
                answered += 1
        if retry:
            queue.extendleft(reversed(retry))
            await asyncio.sleep(len(retry) / budget.rate)
        if on_progress is not None:
            on_progress(answered, total)
    if on_progress is not None:
        on_progress(answered, total)
    return results


def _next_frame(queue: deque[int], sizes: Sequence[int], budget: Budget) -> list[int]:
    """Take the next frame's messages off the front of `queue`."""
    head = [sizes[index] for index in itertools.islice(queue, budget.frame_messages)]
    (count, *_) = split_frames(
        head, max_messages=budget.frame_messages, max_bytes=budget.frame_bytes
    )
    return [queue.popleft() for _ in range(count)]


def _lost_cause(connection: Connection) -> str:
    closed = connection.last_close
    return "connection lost" if closed is None else f"connection closed: {closed.cause}"
