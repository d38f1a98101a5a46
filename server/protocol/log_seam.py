"""The log between deciding a change and applying it (design.md §3).

On one node the log is a direct call: `LocalLog.append` applies the change at once,
so a handler's reply already sees its own write. In a cluster the log is a
JetStream stream (`server.cluster`): appending queues the change for publication
and every node applies it when it comes back in stream order.

Pub/sub messages are not state; the log fans them out to every node's subscribers
(`publish`), locally a direct delivery.
"""

from __future__ import annotations

from typing import Any, Protocol

from server.model.changes import Change


class Applier(Protocol):
    def apply(self, change: Change) -> None: ...

    def deliver_publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None: ...


class Log(Protocol):
    def append(self, change: Change) -> None: ...

    def waiting(self) -> bool:
        """True when appended changes are not applied yet (the request must wait)."""
        ...

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None: ...


class LocalLog:
    """A single node: every change is applied as it is appended."""

    def __init__(self, applier: Applier) -> None:
        self._applier = applier

    def append(self, change: Change) -> None:
        self._applier.apply(change)

    def waiting(self) -> bool:
        return False

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        self._applier.deliver_publish(realm_id, event, object_id, payload)
