"""What `hivectl watch realm` knows: recent presence events, the realm's objects, the link.

Pure: fed by the driver (events from the ``connectionStatusChanged`` pub/sub subscription,
sets from the object subscription, connection status changes and closes), with time passed
in. The
renderers read it; nothing here prints.

``previousFor`` -- how long the object had been in the state it just left -- is known from
the second event of an object on: the first one only says the object changed, not since when,
so it is ``None`` (JSON ``null``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hivectl.core.patterns import IdPattern
from hivectl.core.wire import PRESENCE_EVENT

STATUS_NAMES = {"con": "connected", "dis": "disconnected"}
RATE_WINDOW_S = 10.0
MAX_RATE_SAMPLES = 100_000
"""The event-rate window keeps at most this many timestamps, whatever the event rate."""


@dataclass(frozen=True)
class WatchEvent:
    at: float
    """When the watcher received it (seconds since the epoch): events carry no server time."""
    object_id: str
    status: str
    label: str | None
    previous_for: float | None
    reason: str | None = None
    """Why a ``disconnected`` object left (``closed``, ``timeout``, ``expired``,
    ``node_lost``, ``shutdown``); None for ``connected``, or when not known."""

    def as_json(self, realm: str) -> dict[str, Any]:
        """One line of ``--json`` output; these field names are API."""
        return {
            "ts": iso_utc(self.at),
            "realm": realm,
            "event": PRESENCE_EVENT,
            "id": self.object_id,
            "status": self.status,
            "label": self.label,
            "previousFor": None if self.previous_for is None else round(self.previous_for, 3),
            "reason": self.reason,
        }


def iso_utc(at: float) -> str:
    """ISO-8601 in UTC with milliseconds and a ``Z``: ``2026-11-30T02:50:39.691Z``."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class WatchState:
    """Recent events (newest last, at most `limit`), objects matching `pattern`, the link."""

    def __init__(self, realm: str, *, pattern: str = "*", limit: int = 20) -> None:
        self.realm = realm
        self.pattern = IdPattern(pattern)
        self.events: deque[WatchEvent] = deque(maxlen=limit)
        self.total_events = 0
        self.link = "connecting"
        """``connecting``, ``waiting for realm``, ``connected`` or ``reconnecting``."""
        self.closes = 0
        """Times the link was lost without the watcher asking: kept in view, because a
        server that closes the watch over and over (4008 slow consumer) otherwise looks
        like a quiet realm."""
        self.last_close: str | None = None
        self.retry_at: float | None = None
        self._labels: dict[str, str] = {}
        self._statuses: dict[str, str] = {}
        self._changed_at: dict[str, float] = {}
        self._recent: deque[float] = deque(maxlen=MAX_RATE_SAMPLES)

    # -- fed by the object subscription ------------------------------------------

    def replace_objects(self, objects: Mapping[str, tuple[str, str]]) -> None:
        """The whole current set: id -> (label, ``con``/``dis``)."""
        self._labels.clear()
        self._statuses.clear()
        self.update_objects(objects, ())

    def update_objects(
        self, changed: Mapping[str, tuple[str, str]], deleted: Iterable[str]
    ) -> None:
        for object_id, (label, cst) in changed.items():
            if self.pattern.matches(object_id):
                self._labels[object_id] = label
                self._statuses[object_id] = cst
        for object_id in deleted:
            self._labels.pop(object_id, None)
            self._statuses.pop(object_id, None)

    # -- fed by the pub/sub subscription -------------------------------------------

    def record(self, object_id: str, cst: str, at: float, reason: str | None = None) -> WatchEvent:
        """One ``connectionStatusChanged`` event, received at `at`; `reason` is why it
        disconnected (the server's ``lastReason``), when known."""
        since = self._changed_at.get(object_id)
        self._changed_at[object_id] = at
        if object_id in self._statuses:
            self._statuses[object_id] = cst
        event = WatchEvent(
            at=at,
            object_id=object_id,
            status=STATUS_NAMES.get(cst, cst),
            label=self._labels.get(object_id),
            previous_for=None if since is None else max(0.0, at - since),
            reason=reason,
        )
        self.events.append(event)
        self.total_events += 1
        while self._recent and self._recent[0] < at - RATE_WINDOW_S:
            self._recent.popleft()
        self._recent.append(at)
        return event

    # -- fed by the client's close reports ------------------------------------------

    def record_close(self, cause: str, retry_at: float | None) -> None:
        """The link was lost for `cause` (``4008 slow consumer``); the next dial is at
        `retry_at` (seconds since the epoch; None when none follows)."""
        self.closes += 1
        self.last_close = cause
        self.retry_at = retry_at

    # -- read by the renderers -----------------------------------------------------

    @property
    def online(self) -> int:
        return sum(1 for cst in self._statuses.values() if cst == "con")

    @property
    def total(self) -> int:
        return len(self._statuses)

    def rate(self, now: float) -> float:
        """Events per second over the last `RATE_WINDOW_S` seconds (reads, never prunes)."""
        count = 0
        for at in reversed(self._recent):
            if at < now - RATE_WINDOW_S:
                break
            count += 1
        return count / RATE_WINDOW_S
