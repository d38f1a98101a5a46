"""The storage interface: what the hub needs from a durable store, and nothing more.

The hub keeps the whole state in memory and appends a write for every change it makes
(`server.stores.writes`); the I/O shell drains them after each unit of work and tells
storage, in order (`put_*`/`delete_*`, which must not block: they run on the event loop).
`sync` resolves once every change told so far is durable; before acknowledging a write the
shell tells storage what the hub appended, then awaits `sync`, so an acknowledged write
survives a crash. `load` runs once, before the server accepts connections. Presence itself
is never stored: after a restart every object starts disconnected. The presence ledger is
stored per object, and token revocations (`server.model.revocations`) by target until they
are forgotten.

The interface is this small so that another store (the cluster's, design.md §4) can plug in
behind `server.stores.opening` without the hub noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from server.model.presence import LedgerEntry
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import Revocation


class StorageError(Exception):
    """The store cannot be used (unreadable, newer, locked, unwritable, failed to commit).

    The message is for an operator: it names the file and says what to do.
    """


@dataclass
class LoadedState:
    realms: list[RealmRecord] = field(default_factory=list)
    """Realms with their objects, both in creation order."""
    ledgers: dict[str, dict[str, LedgerEntry]] = field(default_factory=dict)
    """Presence ledgers by realm id, then object id. Not by a tuple of both: a tuple per
    object, all alive until the hub has applied them, left their pools of small blocks
    resident yet mostly free after a start."""
    revocations: list[Revocation] = field(default_factory=list)
    """Token revocations, forgotten ones included (the hub drops those)."""


class Storage(Protocol):
    """A durable copy of the hub's realms, objects and presence ledgers.

    Writes are told in the order they happen; a later write of the same key replaces an
    earlier one. Deleting a realm deletes its objects and their ledgers; deleting an object
    deletes its ledger. Keys are compared exactly: ids are never patterns here.
    """

    def load(self) -> LoadedState:
        """What was stored, once, at start-up."""
        ...

    def put_realm(self, realm: RealmRecord) -> None:
        """Create or replace a realm's own fields (``lab``, ``dat``; not its objects)."""
        ...

    def delete_realm(self, realm_id: str) -> None: ...

    def put_object(self, realm_id: str, record: ObjectRecord) -> None:
        """Create or replace an object; a new one goes after every stored object."""
        ...

    def delete_object(self, realm_id: str, object_id: str) -> None: ...

    def put_ledger(self, realm_id: str, object_id: str, entry: LedgerEntry) -> None: ...

    def put_revocation(self, revocation: Revocation) -> None:
        """Create or replace the revocation of its target (`Revocation.key`)."""
        ...

    def delete_revocation(self, key: str) -> None: ...

    async def sync(self) -> None:
        """Resolve once every write told before the call is durable (StorageError if not)."""
        ...

    async def close(self) -> None:
        """Make everything durable and release the store."""
        ...


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

    def put_revocation(self, revocation: Revocation) -> None:
        pass

    def delete_revocation(self, key: str) -> None:
        pass

    async def sync(self) -> None:
        pass

    async def close(self) -> None:
        pass
