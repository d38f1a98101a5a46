"""The SQLite store on its own: open, write, sync, reopen, migrations, coalescing, refusals.

Every test uses a real file in tmp_path; "durable" is checked by reading the file through a
second, independent connection or by reopening it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hivectl.core.settings import StorageSettings
from server.model.presence import LedgerEntry
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import revoke_jti, revoke_sub
from server.stores.opening import open_storage
from server.stores.sqlite_storage import (
    _CACHED_STATEMENTS,
    APPLICATION_ID,
    MIGRATIONS,
    PAGE_CACHE_KIB,
    Migration,
    SqliteStorage,
    _Batch,
    _upsert_sql,
)
from server.stores.storage import LoadedState, StorageError
from tests.diskutil import unwritable_directory
from tests.server.wsutil import until

ODD_IDS = [
    "*",
    "a*",
    "?",
    "a?c",
    "100%",
    "a%",
    "ab",
    "a_",
    "under_score",
    "it's",
    'say "hi"',
    "`tick`",
    "Zürich/東京/🚀",
    "%_*?",
]


@contextlib.asynccontextmanager
async def opened(
    path: Path,
    window: float = 0.01,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    ledger_window: float = 1.0,
) -> AsyncIterator[SqliteStorage]:
    storage = SqliteStorage.open(
        path, batch_window=window, ledger_window=ledger_window, migrations=migrations
    )
    try:
        yield storage
    finally:
        await storage.close()


async def reopened(path: Path) -> LoadedState:
    async with opened(path) as storage:
        return storage.load()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file through an independent connection: what another process would see."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def obj(object_id: str, **fields: Any) -> ObjectRecord:
    return ObjectRecord(object_id, **fields)


# -- open, write, sync, reopen -------------------------------------------------------


async def test_a_new_file_gets_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "data" / "hive.db"
    async with opened(path) as storage:
        assert storage.load() == LoadedState()
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert rows(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


async def test_state_round_trips_in_creation_order(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    ledger = LedgerEntry(10.5, 11.25, 12.0, "timeout")
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("b", "B", {"k": [1, {"x": None}]}))
        storage.put_realm(RealmRecord("a"))
        for object_id in ("z", "m", "a"):
            storage.put_object("b", obj(object_id, lab=object_id.upper(), tds=("t1",)))
        storage.put_object("a", obj("one", dat={"n": 1.5}, updated_at=99.0))
        storage.put_ledger("b", "m", ledger)
        await storage.sync()
        storage.put_object("b", obj("z", lab="updated"))  # an update keeps its place
        await storage.sync()
    loaded = await reopened(path)
    assert [realm.id for realm in loaded.realms] == ["b", "a"]
    realm_b, realm_a = loaded.realms
    assert (realm_b.lab, realm_b.dat) == ("B", {"k": [1, {"x": None}]})
    assert list(realm_b.objects) == ["z", "m", "a"]
    assert realm_b.objects["z"].lab == "updated"
    assert realm_b.objects["m"] == obj("m", lab="M", tds=("t1",))
    assert realm_a.objects["one"] == obj("one", dat={"n": 1.5}, updated_at=99.0)
    assert loaded.ledgers == {"b": {"m": ledger}}


async def test_loaded_ledgers_share_their_reasons(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        for n in range(3):
            storage.put_object("r", obj(f"o{n}"))
            storage.put_ledger("r", f"o{n}", LedgerEntry(None, 1.0, 2.0, "timeout"))
        storage.put_object("r", obj("never"))
        storage.put_ledger("r", "never", LedgerEntry(None, None, None, None))
    ledgers = (await reopened(path)).ledgers
    reasons = {id(ledgers["r"][f"o{n}"].last_reason) for n in range(3)}
    assert reasons == {id(sys.intern("timeout"))}
    assert ledgers["r"]["never"] == LedgerEntry(None, None, None, None)


async def test_loaded_ledgers_are_keyed_by_their_records_ids(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        storage.put_object("r", obj("o/1"))
        storage.put_ledger("r", "o/1", LedgerEntry(None, 1.0, None, None))
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # an orphan: never written
        db.execute("INSERT INTO ledgers SELECT realm, 'gone', body FROM ledgers")
    loaded = await reopened(path)
    ((realm_id, entries),) = loaded.ledgers.items()
    (object_id,) = entries
    realm = loaded.realms[0]
    assert (realm_id, object_id) == ("r", "o/1")
    assert realm_id is realm.id and object_id is realm.objects["o/1"].id


async def test_sync_resolves_only_once_the_writes_are_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=60.0) as storage:  # only a sync can cut the window short
        await storage.sync()  # nothing pending: resolves at once
        storage.put_realm(RealmRecord("r"))
        storage.put_object("r", obj("o"))
        assert rows(path, "SELECT id FROM objects") == []
        await storage.sync()
        assert rows(path, "SELECT realm, id FROM objects") == [("r", "o")]


async def test_writes_without_sync_are_committed_within_the_window(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=0.05) as storage:
        storage.put_realm(RealmRecord("r"))
        for _ in range(500):  # 5 s at most; the window is 50 ms
            if rows(path, "SELECT id FROM realms"):
                break
            await asyncio.sleep(0.01)
        assert rows(path, "SELECT id FROM realms") == [("r",)]


async def committed_after(storage: SqliteStorage, started: float) -> float:
    """Seconds from `started` (loop time) until the store's first commit."""
    await until(lambda: storage.commits > 0, "a commit", timeout=10.0)
    assert storage.commits == 1
    return asyncio.get_running_loop().time() - started


async def test_ledgers_alone_wait_for_the_ledger_window(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=0.01, ledger_window=0.3) as storage:
        started = asyncio.get_running_loop().time()
        storage.put_ledger("r", "o", LedgerEntry(1.0, 2.0, None, None))
        storage.put_ledger("r", "p", LedgerEntry(1.0, 2.0, None, None))
        assert await committed_after(storage, started) >= 0.3
        assert rows(path, "SELECT id FROM ledgers ORDER BY id") == [("o",), ("p",)]


async def test_another_write_takes_the_ledgers_along_within_the_batch_window(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=0.01, ledger_window=60.0) as storage:
        started = asyncio.get_running_loop().time()
        storage.put_ledger("r", "o", LedgerEntry(1.0, 2.0, None, None))
        storage.put_realm(RealmRecord("r"))
        assert await committed_after(storage, started) < 10.0  # not 60 s
        assert rows(path, "SELECT id FROM ledgers") == [("o",)]
        assert rows(path, "SELECT id FROM realms") == [("r",)]


async def test_a_sync_takes_pending_ledgers_along(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=0.01, ledger_window=60.0) as storage:
        storage.put_ledger("r", "o", LedgerEntry(1.0, 2.0, None, None))
        async with asyncio.timeout(10.0):
            await storage.sync()
        assert rows(path, "SELECT id FROM ledgers") == [("o",)]


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=60.0) as storage:
        storage.put_realm(RealmRecord("r"))
    assert [realm.id for realm in (await reopened(path)).realms] == ["r"]


async def test_many_waiters_from_many_tasks_all_resolve(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))

        async def write(n: int) -> None:
            for step in range(20):
                storage.put_object("r", obj(f"o{n}", dat={"step": step}))
                await storage.sync()

        await asyncio.gather(*(write(n) for n in range(50)))
    loaded = await reopened(path)
    assert len(loaded.realms[0].objects) == 50
    assert {o.dat["step"] for o in loaded.realms[0].objects.values()} == {19}


async def test_a_committed_batch_is_not_kept_while_the_next_one_fills(tmp_path: Path) -> None:
    async with opened(tmp_path / "hive.db", window=60.0) as storage:
        storage.put_realm(RealmRecord("kept?"))
        for n in range(2000):
            storage.put_object("kept?", obj(f"o{n}", dat={"n": n}))
        await storage.sync()
        # type(), not isinstance: the heap may hold dead weakref proxies, which raise then
        batches = [o for o in gc.get_objects() if type(o) is _Batch]
        assert not [batch for batch in batches if "kept?" in batch.realms]


async def test_the_writer_keeps_a_small_page_cache(tmp_path: Path) -> None:
    async with opened(tmp_path / "hive.db") as storage:
        await storage.sync()  # the writer is idle: its connection can be asked
        cache_size = storage._writer.connection.execute("PRAGMA cache_size").fetchone()[0]
        assert cache_size == -PAGE_CACHE_KIB  # KiB; SQLite's default is -2000


async def test_batches_of_ever_new_sizes_are_written_whole(tmp_path: Path) -> None:
    """Each batch needs an upsert of a size not seen before; few statements are kept."""
    path = tmp_path / "hive.db"
    sizes = [*range(1, 40), 499, 500, 501, 1234]
    async with opened(path, window=60.0) as storage:
        storage.put_realm(RealmRecord("r"))
        written = 0
        for size in sizes:
            for n in range(written, written + size):
                storage.put_object("r", obj(f"o{n}", dat={"n": n}))
                storage.put_ledger("r", f"o{n}", LedgerEntry(None, float(n), None, None))
            written += size
            await storage.sync()
        assert storage.commits == len(sizes)
    assert _upsert_sql.cache_info().currsize <= _CACHED_STATEMENTS
    loaded = await reopened(path)
    assert list(loaded.realms[0].objects) == [f"o{n}" for n in range(written)]
    assert [o.dat["n"] for o in loaded.realms[0].objects.values()] == list(range(written))
    assert len(loaded.ledgers["r"]) == written


# -- coalescing and ordering within a batch ------------------------------------------


async def test_repeated_writes_of_a_key_in_one_batch_cost_one_row_write(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path, window=60.0) as storage:
        storage.put_realm(RealmRecord("r"))
        for step in range(1000):
            storage.put_object("r", obj("o", dat={"step": step}))
            storage.put_ledger("r", "o", LedgerEntry(None, float(step), None, None))
        await storage.sync()
        assert (storage.commits, storage.writes_committed) == (1, 3)
    loaded = await reopened(path)
    assert loaded.realms[0].objects["o"].dat == {"step": 999}
    assert loaded.ledgers["r"]["o"].last_seen == 999.0


async def test_a_batch_applies_deletes_and_recreations_in_order(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r", "old"))
        storage.put_object("r", obj("first"))
        storage.put_object("r", obj("second"))
        storage.put_ledger("r", "first", LedgerEntry(1.0, 1.0, None, None))
        storage.put_realm(RealmRecord("keep"))
        storage.put_object("keep", obj("x"))
        storage.put_object("keep", obj("y"))
        await storage.sync()
    async with opened(path, window=60.0) as storage:
        storage.put_object("r", obj("first", lab="moot"))
        storage.delete_realm("r")  # its objects and ledgers go, pending writes included
        storage.put_realm(RealmRecord("r", "new"))
        storage.put_object("r", obj("second", lab="reborn"))
        storage.put_object("keep", obj("x", lab="moot"))
        storage.delete_object("keep", "x")
        storage.put_object("keep", obj("x", lab="back"))  # recreated: now after y
        await storage.sync()
        assert storage.commits == 1
    loaded = await reopened(path)
    by_id = {realm.id: realm for realm in loaded.realms}
    assert [realm.id for realm in loaded.realms] == ["keep", "r"]
    assert by_id["r"].lab == "new"
    assert list(by_id["r"].objects) == ["second"]
    assert by_id["r"].objects["second"].lab == "reborn"
    assert list(by_id["keep"].objects) == ["y", "x"]
    assert by_id["keep"].objects["x"].lab == "back"
    assert loaded.ledgers == {}


async def test_deleting_an_object_deletes_its_ledger(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        storage.put_object("r", obj("o"))
        storage.put_ledger("r", "o", LedgerEntry(1.0, 2.0, 3.0, "closed"))
        await storage.sync()
        storage.delete_object("r", "o")
        await storage.sync()
    assert rows(path, "SELECT * FROM ledgers") == []


# -- keys are exact ------------------------------------------------------------------


async def test_odd_ids_round_trip_and_never_act_as_patterns(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        for realm_id in ("r_", "ra", "r%", "rb"):
            storage.put_realm(RealmRecord(realm_id))
            for object_id in ODD_IDS:
                storage.put_object(realm_id, obj(object_id, lab=object_id))
                storage.put_ledger(realm_id, object_id, LedgerEntry(1.0, None, None, object_id))
        await storage.sync()
        storage.delete_realm("r_")  # not "ra"
        storage.delete_realm("r%")  # not "rb"
        for object_id in ("a%", "a_", "a*", "?", "*"):  # not "ab", "a?c", "100%"...
            storage.delete_object("ra", object_id)
        await storage.sync()
    loaded = await reopened(path)
    assert [realm.id for realm in loaded.realms] == ["ra", "rb"]
    kept = [i for i in ODD_IDS if i not in ("a%", "a_", "a*", "?", "*")]
    assert list(loaded.realms[0].objects) == kept
    assert list(loaded.realms[1].objects) == ODD_IDS
    assert all(o.lab == o.id for realm in loaded.realms for o in realm.objects.values())
    assert set(loaded.ledgers) == {"ra", "rb"}
    assert (set(loaded.ledgers["ra"]), set(loaded.ledgers["rb"])) == (set(kept), set(ODD_IDS))
    assert all(
        entry.last_reason == object_id
        for entries in loaded.ledgers.values()
        for object_id, entry in entries.items()
    )


# -- schema versions -----------------------------------------------------------------


async def test_migrations_bring_an_old_file_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        storage.put_object("r", obj("o", lab="kept"))
        await storage.sync()
    newer = (*MIGRATIONS, ("CREATE TABLE notes (id TEXT PRIMARY KEY)",))
    async with opened(path, migrations=newer) as storage:
        assert storage.load().realms[0].objects["o"].lab == "kept"
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'notes'") == [("notes",)]


async def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path):
        pass
    broken = (*MIGRATIONS, ("CREATE TABLE fine (x)", "THIS IS NOT SQL"))
    with pytest.raises(StorageError, match="cannot prepare"):
        SqliteStorage.open(path, batch_window=0.01, migrations=broken)
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'fine'") == []
    await reopened(path)  # the lock was released


async def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    newer = (*MIGRATIONS, ("CREATE TABLE notes (id TEXT PRIMARY KEY)",))
    async with opened(path, migrations=newer):
        pass
    before = snapshot(path)
    known = len(MIGRATIONS)
    with pytest.raises(
        StorageError,
        match=rf"newer hivectl \(schema version {known + 1}; this one knows up to {known}\)",
    ):
        SqliteStorage.open(path, batch_window=0.01)
    assert snapshot(path) == before


async def test_revocations_are_kept_replaced_and_deleted_by_target(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    jti = revoke_jti("j1", 1_800_000_060.0, 0, 1_800_000_000.0)
    sub = revoke_sub("rider's*", None, 3600, 1_800_000_000.0)
    later = revoke_sub("rider's*", None, 3600, 1_800_000_100.0)
    gone = revoke_jti("gone", None, 0, 1_800_000_000.0)
    async with opened(path) as storage:
        for revocation in (jti, sub, gone, later):
            storage.put_revocation(revocation)
        storage.delete_revocation(gone.key)
        await storage.sync()
    loaded = await reopened(path)
    assert sorted(loaded.revocations, key=lambda r: r.key) == [jti, later]
    async with opened(path) as storage:
        storage.delete_revocation(jti.key)
    assert (await reopened(path)).revocations == [later]


async def test_a_version_1_database_gains_the_revocations_table(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    with contextlib.closing(sqlite3.connect(path)) as db:  # as version 1 left it
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO realms VALUES (1, 'london', ?)", (b'{"lab":"","dat":{}}',))
        db.execute("PRAGMA user_version = 1")
        db.commit()
    async with opened(path) as storage:
        assert [realm.id for realm in storage.load().realms] == ["london"]
        storage.put_revocation(revoke_jti("j1", None, 0, 1.0))
    assert (await reopened(path)).revocations == [revoke_jti("j1", None, 0, 1.0)]
    assert rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


# -- refusals ------------------------------------------------------------------------


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    path.write_bytes(bytes(range(256)) * 64)
    before = snapshot(path)
    with pytest.raises(StorageError, match="corrupt or not a hivectl database"):
        SqliteStorage.open(path, batch_window=0.01)
    assert snapshot(path) == before


async def test_a_damaged_hivectl_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        for n in range(2000):
            storage.put_object("r", obj(f"object-{n}", dat={"pad": "x" * 200}))
        await storage.sync()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page : 5 * page] = b"\xff" * (2 * page)  # scribble over two b-tree pages
    path.write_bytes(bytes(data))
    before = snapshot(path)
    with pytest.raises(StorageError, match="corrupt"):
        SqliteStorage.open(path, batch_window=0.01)
    assert snapshot(path) == before


def test_another_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
        db.commit()
    before = snapshot(path)
    with pytest.raises(StorageError, match="is not a hivectl database"):
        SqliteStorage.open(path, batch_window=0.01)
    assert snapshot(path) == before


async def test_a_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path):
        with pytest.raises(StorageError, match="in use by another process"):
            SqliteStorage.open(path, batch_window=0.01)


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    with unwritable_directory(tmp_path / "locked") as locked:
        with pytest.raises(StorageError, match="cannot write in"):
            SqliteStorage.open(locked / "hive.db", batch_window=0.01)
        assert list(locked.iterdir()) == []


async def test_a_failed_commit_fails_every_later_sync(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with opened(path) as storage:
        storage.put_realm(RealmRecord("r"))
        await storage.sync()
        with contextlib.closing(sqlite3.connect(path)) as db:  # the schema vanishes underneath
            db.execute("DROP TABLE objects")
            db.commit()
        storage.put_object("r", obj("o"))
        with pytest.raises(StorageError, match="commit failed"):
            await storage.sync()
        storage.put_realm(RealmRecord("s"))
        with pytest.raises(StorageError, match="commit failed"):
            await storage.sync()


async def test_open_storage_picks_the_backend(tmp_path: Path) -> None:
    memory = open_storage(StorageSettings(backend="memory", path=str(tmp_path / "no.db")))
    assert memory.load() == LoadedState()
    assert not (tmp_path / "no.db").exists()
    store = open_storage(StorageSettings(backend="sqlite", path=str(tmp_path / "yes.db")))
    try:
        assert isinstance(store, SqliteStorage)
    finally:
        await store.close()
