"""What storage must be told, as values: the hub appends them, the I/O shell drains them.

The hub is sans-I/O (`server.protocol.hub`): applying a change, it calls no store but
appends one of these per write to `Hub.writes`. The shell takes them after every unit of
work (`Hub.take_writes`) and hands them over with `store`, and always before it awaits
`Storage.sync` for a reply that acknowledges a write. So the hub runs, and is read, without
a store: a test sees what it writes as plain values.

Order matters, and `store` keeps it: storage takes writes in the order they happened, a
later write of a key replaces an earlier one, and deleting a realm removes its objects and
ledgers, so a realm deleted and created again within one drain must reach storage deleted
first.

A write holds the hub's own record, not a copy: storage reads it when the shell hands it
over, and it may have changed since the write was appended; but then a later write of it
follows in the same drain, so storage ends up with the same.

One small class per `Storage` method, with that method's arguments: mutable slotted
dataclasses, since a frozen one costs about three times as much to create (378 ns against
115 ns, timeit) and the hot paths create one per presence transition (`PutLedger`) and one
per ``obj set`` (`PutObject`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

from server.model.presence import LedgerEntry
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import Revocation
from server.stores.storage import Storage


@dataclass(slots=True)
class PutRealm:
    realm: RealmRecord


@dataclass(slots=True)
class DeleteRealm:
    realm_id: str


@dataclass(slots=True)
class PutObject:
    realm_id: str
    record: ObjectRecord


@dataclass(slots=True)
class DeleteObject:
    realm_id: str
    object_id: str


@dataclass(slots=True)
class PutLedger:
    realm_id: str
    object_id: str
    entry: LedgerEntry


@dataclass(slots=True)
class PutRevocation:
    revocation: Revocation


@dataclass(slots=True)
class DeleteRevocation:
    key: str


Write = (
    PutRealm | DeleteRealm | PutObject | DeleteObject | PutLedger | PutRevocation | DeleteRevocation
)


def store(storage: Storage, writes: Iterable[Write]) -> None:
    """Hand `writes` to `storage`, in their order.

    The most frequent kinds are matched first, and by class alone: capturing the fields in
    the pattern (``PutLedger(realm_id, object_id, entry)``) made a write cost about three
    times as much to hand over (300 ns against 110 ns, timeit).
    """
    for write in writes:
        match write:
            case PutLedger():
                storage.put_ledger(write.realm_id, write.object_id, write.entry)
            case PutObject():
                storage.put_object(write.realm_id, write.record)
            case DeleteObject():
                storage.delete_object(write.realm_id, write.object_id)
            case PutRealm():
                storage.put_realm(write.realm)
            case DeleteRealm():
                storage.delete_realm(write.realm_id)
            case PutRevocation():
                storage.put_revocation(write.revocation)
            case DeleteRevocation():
                storage.delete_revocation(write.key)
            case _:
                assert_never(write)
