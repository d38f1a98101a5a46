"""Expected presence events: what the server must publish, given what the riders did.

The ledger mirrors the server's rule (protocol.md §8) on the simulator's side: an object is
connected while at least one live connection provides it. It is told when a connection came
up (authenticated) and when one went away (closed, aborted, or dropped by the server), and
turns every change of "some provider is live" into an expected transition -- so a second
device joining, or one of two leaving, or a rider behind a live gateway dropping its own
connection, expects nothing. The watcher's events are then matched against the expectations,
per object and in order.

Matching
========

Each object has a queue of expected transitions (they alternate con/dis). A seen event that
matches the head of its object's queue is matched; its latency is from the cause to the
moment the watcher saw it. A connect is only known to the simulator once the rider has its
authentication reply, and the watcher may see the server's event first: a seen event that
matches nothing is kept aside and matched when its expectation arrives (the cause time --
when the ``Bearer`` frame was sent -- always precedes it). What is still kept aside at the
end was not expected: a *duplicate* when it repeats the object's previous status, otherwise
*unexpected*.

An expectation seen later than its deadline is matched but counted *late*; one never seen by
the end is *lost*. Aborts are special: a socket dropped without a close frame is noticed by
the server when TCP says so -- at once when the peer's kernel closes the socket, only after
the ping timeout when the network path died. Transitions caused by an abort (or by the
server dropping a connection) therefore have their own deadline and, per the issue, count as
expected only once seen: one never seen is reported as *abort_unconfirmed*, not lost.

Time is passed in (monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Status = Literal["con", "dis"]
Cause = Literal["connect", "close", "abort", "dropped"]
SOFT_CAUSES = frozenset({"abort", "dropped"})
"""Causes the server may notice late (TCP close or ping timeout)."""


@dataclass(frozen=True)
class Expected:
    object_id: str
    status: Status
    cause: Cause
    at: float


@dataclass(frozen=True)
class _Seen:
    status: Status
    at: float
    duplicate: bool


@dataclass(frozen=True)
class Match:
    """An expected transition seen by the watcher after `latency_s`."""

    expected: Expected
    latency_s: float
    late: bool


@dataclass(frozen=True)
class LedgerSummary:
    expected: int
    seen: int
    matched: int
    late: int
    lost: int
    duplicated: int
    unexpected: int
    abort_unconfirmed: int
    pending: int
    objects_connected_once: int

    def as_dict(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "seen": self.seen,
            "matched": self.matched,
            "late": self.late,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "abort_unconfirmed": self.abort_unconfirmed,
            "objects_connected_once": self.objects_connected_once,
        }


class PresenceLedger:
    """Provider bookkeeping plus expected-vs-seen matching (see the module docstring)."""

    def __init__(self, *, deadline_s: float = 5.0, abort_deadline_s: float = 45.0) -> None:
        self.deadline_s = deadline_s
        self.abort_deadline_s = abort_deadline_s
        self._live: dict[str, set[str]] = {}
        self._provides: dict[str, tuple[str, ...]] = {}
        self._queues: dict[str, deque[Expected]] = {}
        self._aside: dict[str, deque[_Seen]] = {}
        self._last_seen: dict[str, Status] = {}
        self._connected_once: set[str] = set()
        self.expected = 0
        self.seen_count = 0
        self.matched = 0
        self.late = 0

    # -- what the riders did -------------------------------------------------

    def provider_up(self, conn: str, objects: tuple[str, ...], at: float) -> list[Match]:
        """`conn` authenticated; `at` is when its ``Bearer`` frame left."""
        self._provides[conn] = objects
        matches = []
        for object_id in objects:
            live = self._live.setdefault(object_id, set())
            if not live:
                matches.extend(self._expect(Expected(object_id, "con", "connect", at)))
            live.add(conn)
        return matches

    def provider_down(self, conn: str, cause: Cause, at: float) -> list[Match]:
        """`conn` went away at `at`: closed by us, aborted by us, or dropped by the server."""
        matches = []
        for object_id in self._provides.pop(conn, ()):
            live = self._live.get(object_id, set())
            live.discard(conn)
            if not live:
                matches.extend(self._expect(Expected(object_id, "dis", cause, at)))
        return matches

    def is_live(self, conn: str) -> bool:
        return conn in self._provides

    def awaiting_soft(self, objects: tuple[str, ...]) -> bool:
        """True while an abort/drop transition of one of `objects` is not seen yet.

        A device reconnecting before the server noticed its abort would find its object still
        connected, and neither the disconnect nor the new connect would be published; the
        driver waits on this (bounded by the abort deadline) before reconnecting.
        """
        return any(
            expected.cause in SOFT_CAUSES
            for object_id in objects
            for expected in self._queues.get(object_id, ())
        )

    # -- what the watcher saw ------------------------------------------------

    def seen(self, object_id: str, status: Status, at: float) -> list[Match]:
        self.seen_count += 1
        if status == "con":
            self._connected_once.add(object_id)
        duplicate = self._last_seen.get(object_id) == status
        self._last_seen[object_id] = status
        queue = self._queues.get(object_id)
        if queue and queue[0].status == status and queue[0].at <= at:
            return [self._match(queue.popleft(), at)]
        self._aside.setdefault(object_id, deque()).append(_Seen(status, at, duplicate))
        return []

    # -- results -------------------------------------------------------------

    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def connected_objects(self) -> int:
        """Objects with a live provider, as the simulator believes."""
        return sum(1 for live in self._live.values() if live)

    def summary(self) -> LedgerSummary:
        """Counts as of now; what is still pending counts as lost (or abort_unconfirmed)."""
        pending = [expected for queue in self._queues.values() for expected in queue]
        soft = sum(expected.cause in SOFT_CAUSES for expected in pending)
        aside = [seen for queue in self._aside.values() for seen in queue]
        duplicated = sum(seen.duplicate for seen in aside)
        return LedgerSummary(
            expected=self.expected - soft,
            seen=self.seen_count,
            matched=self.matched,
            late=self.late,
            lost=len(pending) - soft,
            duplicated=duplicated,
            unexpected=len(aside) - duplicated,
            abort_unconfirmed=soft,
            pending=len(pending),
            objects_connected_once=len(self._connected_once),
        )

    def _expect(self, expected: Expected) -> list[Match]:
        self.expected += 1
        queue = self._queues.setdefault(expected.object_id, deque())
        queue.append(expected)
        aside = self._aside.get(expected.object_id)
        if len(queue) == 1 and aside:
            early = aside[0]
            if early.status == expected.status and early.at >= expected.at:
                aside.popleft()
                return [self._match(queue.popleft(), early.at)]
        return []

    def _match(self, expected: Expected, seen_at: float) -> Match:
        latency = seen_at - expected.at
        limit = self.abort_deadline_s if expected.cause in SOFT_CAUSES else self.deadline_s
        late = latency > limit
        self.matched += 1
        self.late += late
        return Match(expected, latency, late)
