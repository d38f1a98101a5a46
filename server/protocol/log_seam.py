"""The log between deciding a change and applying it (design.md §3).

Appending a change gives a `Ticket`, in both modes. On one node the log is a direct call:
`LocalLog.append` applies the change at once and its ticket is settled already, so a
handler's reply sees its own write. In a cluster the log is a JetStream stream
(`server.cluster`): appending queues the change for publication, every node applies it
when it comes back in stream order, and its ticket is settled then (or fails: another
writer stored the entity first, or the log is unavailable). The hub keeps a request's
unsettled tickets with the request (`server.protocol.hub.Pending`); the shell waits for
them, and on a conflict the hub decides the request again on the newer state.

Pub/sub messages are not state; the log fans them out to every node's subscribers
(`publish`), locally a direct delivery.
"""

from __future__ import annotations

from typing import Any, Protocol

from server.model.changes import Change


class Applier(Protocol):
    def apply(self, change: Change) -> None: ...

    def deliver_publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None: ...


class Ticket(Protocol):
    """An appended change, as the one who appended it can follow it."""

    @property
    def settled(self) -> bool:
        """True once the change is applied on this node: nothing left to wait for."""
        ...


class _Applied:
    """The ticket of a change applied as it was appended."""

    settled = True


APPLIED: Ticket = _Applied()


class Log(Protocol):
    def append(self, change: Change) -> Ticket: ...

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None: ...


class LocalLog:
    """A single node: every change is applied as it is appended."""

    def __init__(self, applier: Applier) -> None:
        self._applier = applier

    def append(self, change: Change) -> Ticket:
        self._applier.apply(change)
        return APPLIED

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        self._applier.deliver_publish(realm_id, event, object_id, payload)
