"""When to dial again after the connection is lost: jittered exponential backoff.

The rule
========

* Wait before reconnect attempt ``n`` (counted from 0 since the last reset):
  ``d = min(cap, base * 2**n)``, then a uniform draw from ``[d/2, d]`` ("equal jitter").
* Every attempt counts: a dial that fails and a dial that succeeds but whose connection is
  closed again soon after alike move ``n`` up by one.
* ``n`` goes back to 0 only when a connection *held*: it stayed authenticated for at least
  ``stable_after`` seconds (10 s by default) before it was lost.

Why this shape
==============

A server that accepts and authenticates a client and then closes it at once (4008 slow
consumer, 4029 rate limited, a proxy that drops it) looks like a successful reconnect. If
a successful dial reset the backoff, such a client would redial every ``base`` seconds
forever, each time paying the server for a handshake, a token check and a subscription
replay. Resetting only on a connection that held for a while makes a close loop back off to
the cap like any other failure, while a client whose connection lived normally and then
dropped (a server restart) still comes back within ``base``.

Equal jitter rather than full jitter (a draw from ``[0, d]``): the floor ``d/2`` guarantees
that the gaps between attempts grow, so even an unlucky draw cannot put a looping client
back at a near-zero wait, and the half-width spread still scatters a fleet that lost the
same server at the same moment.

Pure: the caller passes the uniform draw in ``[0, 1)`` and the connection's lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DOUBLINGS = 62
"""``2**n`` is bounded so that a very long outage does not overflow the float."""


def backoff_delay(attempt: int, unit: float, *, base: float, cap: float) -> float:
    """The wait before reconnect attempt `attempt`; `unit` is a uniform draw in [0, 1)."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), MAX_DOUBLINGS))
    return ceiling / 2.0 + unit * ceiling / 2.0


@dataclass
class Backoff:
    """The reconnect schedule of one connection (see the module docstring for the rule)."""

    base: float = 1.0
    cap: float = 30.0
    stable_after: float = 10.0
    attempt: int = 0
    """Reconnect attempts since the last connection that held."""

    def next_delay(self, unit: float) -> float:
        """The wait before the next attempt, which this counts."""
        delay = backoff_delay(self.attempt, unit, base=self.base, cap=self.cap)
        self.attempt += 1
        return delay

    def connection_lost(self, uptime: float | None) -> None:
        """An authenticated connection ended after `uptime` seconds (None: a dial failed)."""
        if uptime is not None and uptime >= self.stable_after:
            self.attempt = 0
