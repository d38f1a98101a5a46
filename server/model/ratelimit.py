"""Per-connection message rate limiting: a token bucket, and when to give up on a client.

Every message a connection sends takes one token, and so does each ``Bearer`` frame
(verifying a signature is dearer than most requests). The bucket holds at most
``burst`` tokens and refills at ``rate`` tokens per second, so a client may send
``burst`` messages at once and ``rate`` per second for ever. A message that finds no
token is *rejected*: the hub answers it with a 429 error and handles nothing of it.

Rejections are what the client can see and react to. A client that keeps sending
anyway is not reacting, so answering it is wasted work: more than ``burst`` rejections
within one second (a fixed window, opened by the first rejection) condemn the
connection, which the server then closes with 4029.

A gateway provides data for thousands of objects and must be able to update each of them
every second: its rate is the base rate (the settings', or the entry of ``limits.rates``
that matches its ``sub``) plus ``messages_per_object`` for each object it provides now
(`RateLimiter.provide`), and its burst grows in the same proportion. A rider providing one
object keeps the protective base rate.

The clock is the caller's (`now`, in seconds), as everywhere in the sans-I/O hub. Time
that runs backwards refills nothing. `allow` runs for every message, so it is kept to a
few float operations; the window bookkeeping runs only on the rejection path.
"""

from __future__ import annotations

import math

STRIKE_WINDOW = 1.0
"""Seconds over which rejections are counted against ``burst``."""


class RateLimiter:
    __slots__ = (
        "_rejected",
        "_stamp",
        "_tokens",
        "_window_start",
        "base_burst",
        "base_rate",
        "burst",
        "rate",
    )

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = self.base_rate = rate
        self.burst = self.base_burst = burst
        self._tokens = burst
        self._stamp = -math.inf  # the first `allow` refills to a full bucket, whatever `now` is
        self._rejected = 0
        self._window_start = -math.inf

    def rebase(self, rate: float, burst: float) -> None:
        """Take new base limits (a token of another ``sub``); the bucket keeps its tokens."""
        self.base_rate, self.base_burst = rate, burst
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, burst)

    def provide(self, objects: int, per_object: float) -> None:
        """Set the rate for a connection that provides `objects` objects now; a bucket that
        grows gains the difference, as a new connection starts with a full one."""
        rate = self.base_rate + objects * per_object
        if rate != self.rate:
            burst = self.base_burst * rate / self.base_rate
            if burst > self.burst:
                self._tokens += burst - self.burst
            self.rate, self.burst = rate, burst
            self._tokens = min(self._tokens, burst)

    def allow(self, now: float) -> bool:
        """Take a token for one message; False when there is none (reject the message)."""
        tokens = self._tokens
        if now > self._stamp:
            tokens += (now - self._stamp) * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def reject(self, now: float) -> bool:
        """Count one rejection; True once more than ``burst`` fell in the current window."""
        if now - self._window_start >= STRIKE_WINDOW:
            self._window_start = now
            self._rejected = 0
        self._rejected += 1
        return self._rejected > self.burst
