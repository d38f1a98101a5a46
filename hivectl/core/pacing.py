"""Sending many requests on one connection under the server's per-connection limits.

The server takes at most ``limits.max_messages_per_frame`` messages in a frame (over it the
whole frame gets one 413) and at most ``limits.max_message_size`` bytes (over it the
connection is closed with 1009). It meters messages with a token bucket per connection:
``messages_per_second`` for ever and ``burst`` at once, or the entry of ``limits.rates``
whose ``sub`` pattern matches the token's ``sub`` (server/model/ratelimit.py); a message past it
gets a 429, and more than ``burst`` of those within a second close the connection (4029).

A bulk client (the simulator's setup, the scale bench, ``hivectl object import``) therefore
packs its messages with `split_frames` and books each frame with a `Pacer`, at a `SHARE` of
the server's figures: the two clocks differ, and a 429 costs a retry. `connection_budget`
derives all of it from the limits a client reads from the same config the server uses.

All pure: counts, limits and times are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hivectl.core.patterns import compile_pattern
from hivectl.core.settings import LimitsSettings

CID_BYTES = 24
"""Room for the ``"cid"`` the client adds to each request, and the separating comma."""
SHARE = 0.9
"""Share of the server's rate and burst a paced client uses."""
FRAME_BYTES_SHARE = 0.75
"""Share of ``max_message_size`` a frame fills at most (room for encoding differences)."""


class Pacer:
    """Spaces one connection's frames so that it sends at most `rate` messages per second
    on average: a frame of n messages books n / rate seconds, and the next frame may leave
    once the bookings before it are used up, or while they run at most `burst` messages
    ahead of the rate (a token bucket of `burst` messages besides the frame itself)."""

    def __init__(self, rate: float, burst: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 0:
            raise ValueError("burst must not be negative")
        self.rate = rate
        self._ahead = burst / rate
        self._free_at = -math.inf

    def delay(self, count: int, now: float) -> float:
        """Book `count` messages; the seconds to wait before sending them."""
        start = max(now, self._free_at - self._ahead)
        self._free_at = max(start, self._free_at) + count / self.rate
        return start - now


def split_frames(sizes: list[int], *, max_messages: int, max_bytes: int) -> list[int]:
    """How many of the messages (of these encoded sizes, in order) go in each frame: as many
    as fit under both limits, and at least one (a message alone over `max_bytes` is the
    caller's to refuse, or the server's)."""
    counts: list[int] = []
    count = used = 0
    for size in sizes:
        size += CID_BYTES
        if count and (count == max_messages or used + size > max_bytes):
            counts.append(count)
            count = used = 0
        count += 1
        used += size
    if count:
        counts.append(count)
    return counts


@dataclass(frozen=True)
class Budget:
    """How one connection sends in bulk: `rate` messages per second with `burst` of them
    ahead (`Pacer`), frames of at most `frame_messages` messages and `frame_bytes` bytes.
    A single message over `message_bytes` would close the connection (1009): never send it."""

    rate: float
    burst: float
    frame_messages: int
    frame_bytes: int
    message_bytes: int

    def pacer(self) -> Pacer:
        return Pacer(self.rate, self.burst)


def base_rate(limits: LimitsSettings, sub: str | None) -> tuple[float, float]:
    """(messages per second, burst) the server gives a connection of this token ``sub``:
    the first ``limits.rates`` entry whose pattern matches, else the defaults."""
    if sub is not None:
        for rate in limits.rates:
            if compile_pattern(rate.sub).matches(sub):
                return float(rate.messages_per_second), float(rate.burst)
    return float(limits.messages_per_second), float(limits.burst)


def connection_budget(limits: LimitsSettings, sub: str | None) -> Budget:
    """The budget of a connection that provides no objects (an importer, an exporter)."""
    rate, burst = base_rate(limits, sub)
    frame_messages = max(1, min(limits.max_messages_per_frame, int(burst * SHARE)))
    return Budget(
        rate=rate * SHARE,
        burst=max(0.0, burst * SHARE - frame_messages),
        frame_messages=frame_messages,
        frame_bytes=max(1, int(limits.max_message_size * FRAME_BYTES_SHARE)),
        message_bytes=limits.max_message_size,
    )
