"""The storage interface: what the hub needs from a durable store, and nothing more.

The hub keeps the whole state in memory and tells storage about every change as it
happens (`put_*`/`delete_*`, which must not block). `sync` resolves once every change
told so far is durable; the I/O shell awaits it before acknowledging a write, so an
acknowledged write survives a crash. `load` runs once, before the server accepts
connections. Presence itself is never stored: after a restart every object starts
disconnected. The presence ledger is stored per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from server.presence import LedgerEntry
from server.records import ObjectRecord, RealmRecord


@dataclass
class LoadedState:
    realms: list[RealmRecord] = field(default_factory=list)
    """Realms with their objects, both in creation order."""
    ledgers: dict[tuple[str, str], LedgerEntry] = field(default_factory=dict)


class Storage(Protocol):
    def load(self) -> LoadedState: ...

    def put_realm(self, realm: RealmRecord) -> None: ...

    def delete_realm(self, realm_id: str) -> None: ...

    def put_object(self, realm_id: str, record: ObjectRecord) -> None: ...

    def delete_object(self, realm_id: str, object_id: str) -> None: ...

    def put_ledger(self, realm_id: str, object_id: str, entry: LedgerEntry) -> None: ...

    async def sync(self) -> None: ...

    async def close(self) -> None: ...


class MemoryStorage:
    """Keeps nothing beyond the hub's own memory: for tests and demos."""

    def load(self) -> LoadedState:
        return LoadedState()

    def put_realm(self, realm: RealmRecord) -> None:
        pass

    def delete_realm(self, realm_id: str) -> None:
        pass

    def put_object(self, realm_id: str, record: ObjectRecord) -> None:
        pass

    def delete_object(self, realm_id: str, object_id: str) -> None:
        pass

    def put_ledger(self, realm_id: str, object_id: str, entry: LedgerEntry) -> None:
        pass

    async def sync(self) -> None:
        pass

    async def close(self) -> None:
        pass
