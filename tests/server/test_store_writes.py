"""`server.stores.writes.store`: each write reaches its `Storage` method, in drain order."""

from __future__ import annotations

from typing import Any

from server.model.presence import LedgerEntry
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import Revocation, revoke_jti
from server.stores.storage import MemoryStorage
from server.stores.writes import (
    DeleteObject,
    DeleteRealm,
    DeleteRevocation,
    PutLedger,
    PutObject,
    PutRealm,
    PutRevocation,
    Write,
    store,
)


class RecordingStorage(MemoryStorage):
    """Keeps every call as ``(method, *arguments)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def put_realm(self, realm: RealmRecord) -> None:
        self.calls.append(("put_realm", realm))

    def delete_realm(self, realm_id: str) -> None:
        self.calls.append(("delete_realm", realm_id))

    def put_object(self, realm_id: str, record: ObjectRecord) -> None:
        self.calls.append(("put_object", realm_id, record))

    def delete_object(self, realm_id: str, object_id: str) -> None:
        self.calls.append(("delete_object", realm_id, object_id))

    def put_ledger(self, realm_id: str, object_id: str, entry: LedgerEntry) -> None:
        self.calls.append(("put_ledger", realm_id, object_id, entry))

    def put_revocation(self, revocation: Revocation) -> None:
        self.calls.append(("put_revocation", revocation))

    def delete_revocation(self, key: str) -> None:
        self.calls.append(("delete_revocation", key))


def stored(writes: list[Write]) -> list[tuple[Any, ...]]:
    storage = RecordingStorage()
    store(storage, writes)
    return storage.calls


def test_a_realm_deleted_then_created_again_in_one_drain_reaches_storage_in_that_order() -> None:
    old, new = RealmRecord("r", incarnation="r1"), RealmRecord("r", incarnation="r2")
    record = ObjectRecord("o")
    assert stored([PutRealm(old), DeleteRealm("r"), PutRealm(new), PutObject("r", record)]) == [
        ("put_realm", old),
        ("delete_realm", "r"),
        ("put_realm", new),
        ("put_object", "r", record),
    ]


def test_object_puts_and_deletes_keep_their_order() -> None:
    first, second = ObjectRecord("o"), ObjectRecord("o", lab="again")
    assert stored(
        [
            PutObject("r", first),
            DeleteObject("r", "o"),
            PutObject("r", second),
            DeleteObject("r", "p"),
        ]
    ) == [
        ("put_object", "r", first),
        ("delete_object", "r", "o"),
        ("put_object", "r", second),
        ("delete_object", "r", "p"),
    ]


def test_every_kind_of_write_reaches_its_method() -> None:
    realm, record = RealmRecord("r"), ObjectRecord("o")
    entry = LedgerEntry(1.0, 2.0, None, None)
    revocation = revoke_jti("j", 20.0, 0.0, 10.0)
    assert stored(
        [
            PutLedger("r", "o", entry),
            PutRevocation(revocation),
            DeleteRevocation(revocation.key),
            PutRealm(realm),
            PutObject("r", record),
            DeleteObject("r", "o"),
            DeleteRealm("r"),
        ]
    ) == [
        ("put_ledger", "r", "o", entry),
        ("put_revocation", revocation),
        ("delete_revocation", revocation.key),
        ("put_realm", realm),
        ("put_object", "r", record),
        ("delete_object", "r", "o"),
        ("delete_realm", "r"),
    ]
