"""SQLite storage: the embedded default store, with group commit off the event loop.

Why it is built this way (design.md §4):

* **The event loop never waits for the disk.** ``put_*``/``delete_*`` serialise the record
  (orjson) and file it in the pending batch under its key; nothing else, and no lock: the
  batch belongs to the loop. A later write of the same key replaces the earlier one (last
  write wins), so a device reporting ten times within one batch costs one row write: that is
  what makes ingest fast. One writer thread owns the connection and commits each batch it is
  handed in one transaction.
* **Group commit.** The writer holds at most one batch; while it commits, the next one
  fills. A batch is handed over as soon as the writer is free and someone awaits `sync` (a
  ``cre``/``upd``/``del`` holding its reply), otherwise ``batch_window`` after its first write
  (a ``set``, which has no reply), or ``ledger_window`` after it when the batch holds
  nothing but presence ledgers. `sync` waits for the count of writes filed so far; the
  writer reports each commit back with ``call_soon_threadsafe`` and the loop resolves the
  waiters it covered. Under load a transaction carries thousands of writes and one fsync,
  and the loop pays one queue hand-over per batch, not per write.
* **Ledgers wait longer.** A presence ledger (when an object was last connected, why it
  went) is bookkeeping no client waits for, written at every transition: in a fleet that
  connects and leaves all the time, a commit every ``batch_window`` for ledgers alone cost
  about a tenth of the server's CPU per connect + close (``hivectl bench churn``), most of
  it in the GIL hand-offs of commits rather than in rows. Alone in a batch they wait for
  ``ledger_window`` (1 s by default), coalescing by object meanwhile; any other write, or
  a `sync`, takes them along sooner. A ``kill -9`` can lose that long of ledger updates,
  never an acknowledged write.
* **Few GIL hand-offs.** The writer shares the GIL with the loop, and the sqlite3 module
  gives it up around every statement step; getting it back can take a switch interval
  (5 ms) while the loop is busy. So rows go in as multi-row upserts of 500, not one
  statement per row.
* **Durability.** WAL with ``synchronous=FULL``: a committed batch survives ``kill -9`` and
  power loss. A failed commit makes the store fail every later `sync`: replies to writes stop
  rather than acknowledge what is not on disk.
* **Order.** A row keeps the sequence number of its first write (``seq``), so loading by
  ``seq`` gives realms and objects in creation order. A batch is applied as deletions first
  (a realm with its objects and ledgers, then objects with their ledgers), then puts. That is
  the order the writes happened in because filing a deletion drops the pending writes it
  supersedes, so every put still pending after a deletion of the same key came later.
* **Exact keys.** Every statement binds ids as parameters and compares with ``=``: ids with
  ``%``, ``_``, ``*``, ``?`` or quotes are plain text here, never patterns.
* **Nothing is written before the file is known to be ours.** Opening checks that the
  directory is writable (SQLite puts ``-wal``/``-shm`` there), takes an advisory lock (a
  second server on the same file would silently overwrite the first), then inspects the file
  read-only: a foreign, corrupt or newer-schema file raises `StorageError` and stays byte for
  byte as it was.
* **Schema versions.** `MIGRATIONS` holds one entry per schema version (``PRAGMA
  user_version``); opening applies the missing ones in one transaction. A released migration
  is never edited: a new version appends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from hivectl.core.settings import StorageSettings
from server.model.presence import LedgerEntry
from server.model.records import ObjectRecord, RealmRecord
from server.model.revocations import Revocation
from server.stores.storage import LoadedState, StorageError

log = logging.getLogger("hivectl.storage")

APPLICATION_ID = 0x48495645
"""``PRAGMA application_id`` of hivectl databases ("HIVE"): tells ours from other files."""

Migration = tuple[str, ...]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: realms and objects with their creation order (seq), presence ledgers.
    (
        "CREATE TABLE realms (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
        " body BLOB NOT NULL)",
        "CREATE TABLE objects (seq INTEGER PRIMARY KEY, realm TEXT NOT NULL, id TEXT NOT NULL,"
        " body BLOB NOT NULL, UNIQUE (realm, id))",
        "CREATE TABLE ledgers (realm TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL,"
        " PRIMARY KEY (realm, id)) WITHOUT ROWID",
    ),
    # 2: token revocations by target (`Revocation.key`), until forgotten.
    ("CREATE TABLE revocations (key TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID",),
)
"""Statements per schema version, oldest first; version N is ``MIGRATIONS[N - 1]``."""

_DELETE_REALM = (
    "DELETE FROM realms WHERE id = ?",
    "DELETE FROM objects WHERE realm = ?",
    "DELETE FROM ledgers WHERE realm = ?",
)
_DELETE_OBJECT = (
    "DELETE FROM objects WHERE realm = ? AND id = ?",
    "DELETE FROM ledgers WHERE realm = ? AND id = ?",
)
_ROWS_PER_STATEMENT = 500
"""Rows per multi-row upsert (4 columns each: well under SQLite's 32766 variables)."""
_CACHED_STATEMENTS = 8
"""Prepared statements the writer keeps: enough for those of a usual batch. An
upsert of 500 rows takes about 340 KB prepared, and each batch ends with one of a size
seldom seen again, so at the sqlite3 module's 32 they held 3.5 MB after 100,000 objects
were created. One not kept is prepared again (about 1 ms for 500 rows), as most of those
last ones were anyway."""

PAGE_CACHE_KIB = 1024
"""The writer's page cache (SQLite's default is 2 MB). The server reads the file only at
start-up and keeps everything in memory, so the writer needs the interior pages of what it
updates: about 130 pages of 4 KiB for a realm of 100,000 objects, here twice over."""

Key = tuple[str, str]
"""(realm id, object id)."""


def _body(value: object) -> bytes:
    """`value` serialised for a row, in memory that is given back once the row is written.

    orjson renders into a 1 KiB buffer from malloc and shrinks it in place, so its bytes
    stay in malloc's heap. A batch holds thousands of them until its commit; the holes they
    leave between allocations that live on are never returned to the system (at 100,000
    objects created, about 20 MB of the heap stayed resident yet free). A copy of the
    body's own size comes, for a body of up to 512 bytes, from Python's small-object
    allocator instead, whose blocks the next bodies reuse.
    """
    return memoryview(orjson.dumps(value)).tobytes()


class _Batch:
    """Writes waiting for the next commit, one entry per key (see the module doc)."""

    __slots__ = ("ledgers", "object_deletes", "objects", "realm_deletes", "realms", "revocations")

    def __init__(self) -> None:
        self.realm_deletes: set[str] = set()
        self.object_deletes: set[Key] = set()
        self.realms: dict[str, tuple[int, bytes]] = {}  # id -> (seq if inserted, body)
        self.objects: dict[Key, tuple[int, bytes]] = {}
        self.ledgers: dict[Key, bytes] = {}
        self.revocations: dict[str, bytes | None] = {}  # key -> body, None: delete

    def __bool__(self) -> bool:
        return bool(
            self.realm_deletes
            or self.object_deletes
            or self.realms
            or self.objects
            or self.ledgers
            or self.revocations
        )

    def __len__(self) -> int:
        return (
            len(self.realm_deletes)
            + len(self.object_deletes)
            + len(self.realms)
            + len(self.objects)
            + len(self.ledgers)
            + len(self.revocations)
        )

    def delete_realm(self, realm_id: str) -> None:
        """The realm's rows, objects and ledgers go; pending writes to them are moot."""
        self.realm_deletes.add(realm_id)
        self.realms.pop(realm_id, None)
        for pending in (self.objects, self.ledgers):
            for key in [key for key in pending if key[0] == realm_id]:
                del pending[key]
        self.object_deletes = {key for key in self.object_deletes if key[0] != realm_id}

    def delete_object(self, key: Key) -> None:
        self.object_deletes.add(key)
        self.objects.pop(key, None)
        self.ledgers.pop(key, None)


class SqliteStorage:
    """The `server.stores.storage.Storage` of a single node: one SQLite file. Use `open`.

    Everything but the writer thread's connection belongs to the event loop: writes are
    filed, batches handed over and waiters resolved on the loop, so filing a write takes
    no lock. The writer gets one batch at a time through a queue and reports back with
    ``call_soon_threadsafe``; while it commits, the next batch fills.
    """

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        lock_fd: int,
        loaded: LoadedState,
        next_seq: int,
        batch_window: float,
        ledger_window: float,
    ) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._loaded = loaded
        self._window = batch_window
        self._ledger_window = max(ledger_window, batch_window)
        self._batch = _Batch()
        self._batch_started: float | None = None  # loop time of the batch's first write
        self._urgent = False  # the batch holds a write other than a ledger: due in _window
        self._seq = next_seq  # next row seq
        self._told = 0  # writes filed so far
        self._committed = 0  # writes durable so far
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # by target
        self._in_flight = False  # the writer holds a batch
        self._timer: asyncio.TimerHandle | None = None
        self._failure: StorageError | None = None
        self._closed = False
        self._handoff: queue.SimpleQueue[_Handoff | None] = queue.SimpleQueue()
        self._writer = _Writer(path, connection, self._handoff)
        self._thread = threading.Thread(
            target=self._writer.run, name="hivectl-storage", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_window: float,
        ledger_window: float = StorageSettings().ledger_window,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> SqliteStorage:
        """Check, lock, migrate and read the database at `path` (created if missing).

        Raises StorageError, with the file untouched, when it cannot be used.
        """
        path = Path(path)
        lock_fd = _lock(path)
        try:
            _inspect(path, len(migrations))
            with _explained(path, "open"):
                connection = sqlite3.connect(
                    path,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=_CACHED_STATEMENTS,
                )
            try:
                with _explained(path, "prepare"):
                    _configure(connection)
                    _migrate(connection, migrations)
                loaded, next_seq = _read_state(path, connection)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        objects = sum(len(realm.objects) for realm in loaded.realms)
        log.info("storage %s: %d realms, %d objects", path, len(loaded.realms), objects)
        return cls(path, connection, lock_fd, loaded, next_seq, batch_window, ledger_window)

    @property
    def commits(self) -> int:
        """Transactions committed (for metrics and tests)."""
        return self._writer.commits

    @property
    def writes_committed(self) -> int:
        """Keys written, after coalescing (one per key and batch): fewer than the writes told."""
        return self._writer.writes_committed

    # -- the Storage interface (on the event loop) -----------------------------

    def load(self) -> LoadedState:
        loaded, self._loaded = self._loaded, LoadedState()
        return loaded

    def put_realm(self, realm: RealmRecord) -> None:
        pending = self._batch.realms
        earlier = pending.get(realm.id)
        seq = earlier[0] if earlier else self._next_seq()
        pending[realm.id] = (seq, _body({"lab": realm.lab, "dat": realm.dat}))
        self._filed()

    def delete_realm(self, realm_id: str) -> None:
        self._batch.delete_realm(realm_id)
        self._filed()

    def put_object(self, realm_id: str, record: ObjectRecord) -> None:
        body = _body(record.stored())
        key = (realm_id, record.id)
        pending = self._batch.objects
        earlier = pending.get(key)
        pending[key] = (earlier[0] if earlier else self._next_seq(), body)
        self._filed()

    def delete_object(self, realm_id: str, object_id: str) -> None:
        self._batch.delete_object((realm_id, object_id))
        self._filed()

    def put_ledger(self, realm_id: str, object_id: str, entry: LedgerEntry) -> None:
        self._batch.ledgers[(realm_id, object_id)] = _body(
            {
                "connected_since": entry.connected_since,
                "last_seen": entry.last_seen,
                "last_disconnected_at": entry.last_disconnected_at,
                "last_reason": entry.last_reason,
            }
        )
        self._filed(ledger=True)

    def put_revocation(self, revocation: Revocation) -> None:
        fields = {name: getattr(revocation, name) for name in Revocation.__slots__}
        self._batch.revocations[revocation.key] = _body(fields)
        self._filed()

    def delete_revocation(self, key: str) -> None:
        self._batch.revocations[key] = None
        self._filed()

    async def sync(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._committed >= self._told:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self._told, future))
        self._schedule()  # someone waits: the batch is due now
        await future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(StorageError):  # already logged; release the file anyway
            await self.sync()
        if self._timer is not None:  # only after a failure: nothing more will be committed
            self._timer.cancel()
        self._handoff.put(None)
        await asyncio.to_thread(self._thread.join)
        os.close(self._lock_fd)

    # -- batches ---------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = seq + 1
        return seq

    def _filed(self, *, ledger: bool = False) -> None:
        """One write more: its batch is due within ``batch_window``, or within
        ``ledger_window`` while it holds nothing but ledgers."""
        self._told += 1
        first = self._batch_started is None
        if first:
            self._batch_started = asyncio.get_running_loop().time()
        if not ledger and not self._urgent:
            self._urgent = True
            self._schedule()
        elif first:
            self._schedule()

    def _schedule(self) -> None:
        """Hand the batch over if the writer is free and it is due, else come back in time.

        Due: someone awaits `sync`, or the window since its first write is over (the
        ledgers' window when it holds nothing else).
        """
        started = self._batch_started
        if self._in_flight or started is None:
            return
        loop = asyncio.get_running_loop()
        due = started + (self._window if self._urgent else self._ledger_window)
        if self._waiters or loop.time() >= due:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch, self._batch, self._batch_started = self._batch, _Batch(), None
            self._urgent = False
            self._in_flight = True
            self._handoff.put(_Handoff(batch, self._told, loop, self._committed_up_to))
        elif self._timer is None or self._timer.when() > due:
            if self._timer is not None:  # set for ledgers alone, before this write came
                self._timer.cancel()
            self._timer = loop.call_at(due, self._window_over)

    def _window_over(self) -> None:
        self._timer = None
        self._schedule()

    def _committed_up_to(self, covered: int, failure: StorageError | None) -> None:
        """The writer finished a batch (called on the loop)."""
        self._in_flight = False
        waiters = self._waiters
        if failure is not None:
            self._failure = failure
            while waiters:
                _settle(waiters.popleft()[1], failure)
        else:
            self._committed = covered
            while waiters and waiters[0][0] <= covered:
                _settle(waiters.popleft()[1], None)
        self._schedule()


def _settle(future: asyncio.Future[None], failure: StorageError | None) -> None:
    if future.done():  # the waiting task was cancelled (its client went away)
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)


@dataclass(frozen=True, slots=True)
class _Handoff:
    batch: _Batch
    covered: int
    """The writes filed when the batch was handed over: durable once it is committed."""
    loop: asyncio.AbstractEventLoop
    done: Callable[[int, StorageError | None], None]
    """Called on `loop` with `covered` and the failure, if any, once the batch is settled."""


class _Writer:
    """The writer thread: owns the connection, commits batches, reports to the loop."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        handoffs: queue.SimpleQueue[_Handoff | None],
    ) -> None:
        self.path = path
        self.connection = connection
        self.handoffs = handoffs
        self.failure: StorageError | None = None  # after one, nothing more is committed
        self.commits = 0
        self.writes_committed = 0

    def run(self) -> None:
        try:
            while (handoff := self.handoffs.get()) is not None:
                if self.failure is None:
                    self.failure = self._commit(handoff.batch)
                loop, done, covered = handoff.loop, handoff.done, handoff.covered
                # Else the batch, however large, stays alive while the writer waits for the
                # next one; dropped before the report, so a resolved `sync` finds it gone.
                del handoff
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(done, covered, self.failure)
        finally:
            self.connection.close()

    def _commit(self, batch: _Batch) -> StorageError | None:
        connection = self.connection
        started = time.perf_counter()
        try:
            connection.execute("BEGIN IMMEDIATE")
            _write(connection, batch)
            connection.execute("COMMIT")
        except Exception as exc:  # SQLite's, or a value it cannot bind: not durable either way
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            log.error("storage commit failed, writes are no longer durable: %s", exc)
            return StorageError(f"{self.path}: commit failed: {exc}")
        self.commits += 1
        self.writes_committed += len(batch)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "committed %d writes in %.1f ms", len(batch), (time.perf_counter() - started) * 1e3
            )
        return None


def _write(connection: sqlite3.Connection, batch: _Batch) -> None:
    if batch.realm_deletes:
        realms = [(realm_id,) for realm_id in batch.realm_deletes]
        for statement in _DELETE_REALM:
            connection.executemany(statement, realms)
    if batch.object_deletes:
        keys = list(batch.object_deletes)
        for statement in _DELETE_OBJECT:
            connection.executemany(statement, keys)
    _upsert(
        connection,
        "realms (seq, id, body)",
        "id",
        ((seq, realm_id, body) for realm_id, (seq, body) in batch.realms.items()),
    )
    _upsert(
        connection,
        "objects (seq, realm, id, body)",
        "realm, id",
        ((seq, *key, body) for key, (seq, body) in batch.objects.items()),
    )
    _upsert(
        connection,
        "ledgers (realm, id, body)",
        "realm, id",
        ((*key, body) for key, body in batch.ledgers.items()),
    )
    gone = [(key,) for key, body in batch.revocations.items() if body is None]
    if gone:
        connection.executemany("DELETE FROM revocations WHERE key = ?", gone)
    _upsert(
        connection,
        "revocations (key, body)",
        "key",
        ((key, body) for key, body in batch.revocations.items() if body is not None),
    )


def _upsert(
    connection: sqlite3.Connection, into: str, key: str, rows: Iterable[tuple[object, ...]]
) -> None:
    """Insert `rows`, or replace the body of those whose `key` exists (the seq stays).

    Many rows per statement rather than `executemany`: the module releases the GIL around
    every statement step and the writer then waits for the event loop to hand it back, so
    one step per 500 rows instead of one per row is what keeps large batches fast. The rows
    are made a statement's worth at a time: a batch can hold a row for every object, and
    all of them at once took 7 MiB more at its commit for 100,000 objects.
    """
    remaining = iter(rows)
    while chunk := list(itertools.islice(remaining, _ROWS_PER_STATEMENT)):
        values = [value for row in chunk for value in row]
        connection.execute(_upsert_sql(into, key, len(chunk[0]), len(chunk)), values)


@functools.lru_cache(maxsize=_CACHED_STATEMENTS)
def _upsert_sql(into: str, key: str, width: int, count: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return (
        f"INSERT INTO {into} VALUES {', '.join([row] * count)}"
        f" ON CONFLICT ({key}) DO UPDATE SET body = excluded.body"
    )


# -- opening -----------------------------------------------------------------------


@contextlib.contextmanager
def _explained(path: Path, doing: str) -> Iterator[None]:
    """Turn SQLite and OS errors into a StorageError an operator can act on."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if str(exc) in ("file is not a database", "database disk image is malformed"):
            raise _corrupt(path, str(exc)) from None
        raise StorageError(f"{path}: cannot {doing} the database: {exc}") from None
    except OSError as exc:
        raise StorageError(f"{path}: cannot {doing} the database: {exc.strerror}") from None


def _corrupt(path: Path, detail: str) -> StorageError:
    return StorageError(
        f"{path} is corrupt or not a hivectl database ({detail}); it was left untouched:"
        " restore a backup or move it away to start empty"
    )


def _lock(path: Path) -> int:
    """Check the directory is writable, create the file if missing, and lock it (a fd)."""
    directory = path.parent
    with _explained(path, "create the directory of"):
        directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StorageError(
            f"{path}: cannot write in {directory}: SQLite keeps its -wal and -shm files beside"
            " the database; make the directory writable or set [storage].path elsewhere"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(f"{path}: the database file is not readable and writable")
    with _explained(path, "create"):
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(
            f"{path} is in use by another process (is another hivectl server running on it?)"
        ) from None
    return fd


def check_file(path: str | os.PathLike[str]) -> None:
    """The read-only checks `SqliteStorage.open` makes before it touches a file (ours or
    empty, not from a newer version, structurally sound), for a file no server holds: a
    backup is checked with them before it is put in place. Raises StorageError."""
    _inspect(Path(path), len(MIGRATIONS))


def _inspect(path: Path, newest: int) -> None:
    """Read-only checks: ours (or empty), not from a newer version, structurally sound.

    Without a ``-wal`` file the database file holds everything and is opened ``immutable``,
    so that not even the ``-wal``/``-shm`` files a WAL database gets on opening appear.
    """
    wal = path.with_name(path.name + "-wal").exists()
    uri = path.resolve().as_uri() + ("?mode=ro" if wal else "?mode=ro&immutable=1")
    with _explained(path, "read"), contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        application_id = _pragma(db, "application_id")
        version = _pragma(db, "user_version")
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id != APPLICATION_ID and (application_id or version or tables):
            raise StorageError(
                f"{path} is not a hivectl database; it was left untouched:"
                " set [storage].path to another file"
            )
        if version > newest:
            raise StorageError(
                f"{path} was written by a newer hivectl (schema version {version}; this one"
                f" knows up to {newest}); it was left untouched: upgrade hivectl"
            )
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise _corrupt(path, "; ".join(problems))


def _pragma(db: sqlite3.Connection, name: str) -> int:
    value: int = db.execute(f"PRAGMA {name}").fetchone()[0]
    return value


def _configure(connection: sqlite3.Connection) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode stays {mode})")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")


def _migrate(connection: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Bring the schema to the newest version in one transaction (nothing when current)."""
    version = _pragma(connection, "user_version")
    if version == len(migrations):
        return
    if version > len(migrations):  # checked already; never "migrate" a newer file downwards
        raise StorageError(f"schema version {version} is newer than {len(migrations)}")
    connection.execute("BEGIN IMMEDIATE")
    try:
        for number, statements in enumerate(migrations[version:], start=version + 1):
            log.info("storage schema: migrating to version %d", number)
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {len(migrations)}")
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _ledger(body: bytes) -> LedgerEntry:
    """A stored ledger, its reason shared like the few a live server sets.

    Parsed, every reason was a string of its own, which the presence engine keeps while
    the ledger around it goes: at 100,000 objects those strings, and the pools of small
    blocks they kept from being freed, took 66 B per object of a restarted server.
    """
    fields = orjson.loads(body)
    if fields["last_reason"] is not None:
        fields["last_reason"] = sys.intern(fields["last_reason"])
    return LedgerEntry(**fields)


def _read_state(path: Path, connection: sqlite3.Connection) -> tuple[LoadedState, int]:
    """Every realm and object in creation order, the ledgers, and the next free seq."""
    with _explained(path, "read"):
        try:
            realms: dict[str, RealmRecord] = {}
            for realm_id, body in connection.execute("SELECT id, body FROM realms ORDER BY seq"):
                realms[realm_id] = RealmRecord(realm_id, **orjson.loads(body))
            rows = connection.execute("SELECT realm, id, body FROM objects ORDER BY seq")
            for realm_id, object_id, body in rows:
                realms[realm_id].objects[object_id] = ObjectRecord.from_stored(
                    object_id, orjson.loads(body)
                )
            # Keyed by the records' own id strings: the ledgers stay until the hub has
            # applied them all, and with strings of their own they left 13 MB of pools
            # mostly free behind at 100,000 objects. A ledger without its object is moot.
            ledgers: dict[str, dict[str, LedgerEntry]] = {}
            rows = connection.execute("SELECT realm, id, body FROM ledgers")
            for realm_id, object_id, body in rows:
                realm = realms.get(realm_id)
                if realm is not None and (record := realm.objects.get(object_id)) is not None:
                    ledgers.setdefault(realm.id, {})[record.id] = _ledger(body)
            revocations = [
                Revocation(**orjson.loads(body))
                for (body,) in connection.execute("SELECT body FROM revocations ORDER BY key")
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise _corrupt(path, f"unreadable record: {exc!r}") from None
        last = connection.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM realms), 0),"
            " coalesce((SELECT max(seq) FROM objects), 0))"
        ).fetchone()[0]
    return LoadedState(list(realms.values()), ledgers, revocations), int(last) + 1
