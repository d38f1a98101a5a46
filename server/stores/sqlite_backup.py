"""A consistent copy of a hivectl SQLite database, taken while a server runs on it.

How it stays out of the server's way (server/stores/sqlite_storage.py says how the server holds
its file):

* **No lock of the server's.** The server keeps an advisory ``flock`` on the database so
  that a second *server* cannot open it; a backup never takes it. It reads through SQLite
  like any other reader, and in WAL mode a reader never blocks the writer: the server's
  commits go on while the copy is made (its checkpoints merely wait for the copy to end).
* **One snapshot, copied in steps.** SQLite's online backup (``Connection.backup``) copies
  `PAGES_PER_STEP` pages at a time. Left to itself it would restart the copy whenever the
  server commits between two steps, and under steady writes never finish; so the copy runs
  inside one read transaction, which pins the snapshot of its first read: the backup holds
  every write committed before it began (the server acknowledges a write only once it is
  committed) and nothing half-done after.
* **Nothing is put in place unchecked.** The copy goes to a hidden file beside the target,
  is made durable (fsync), must pass the server's own start-up checks
  (`sqlite_storage.check_file`: a hivectl database of a schema this version reads, sound),
  and only then takes the target's name, atomically. An existing target is replaced only
  when asked (``force``), never when it is the live database itself or a server holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.stores.sqlite_storage import APPLICATION_ID, check_file
from server.stores.storage import StorageError

PAGES_PER_STEP = 1024
"""Pages copied per step (4 MiB at SQLite's default page size)."""

Progress = Callable[[int, int], None]
"""Called with (pages copied, pages in all) after every step."""


class BackupError(Exception):
    """The backup cannot be made; the message names the file and what to do."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    pages: int
    size: int
    realms: int
    objects: int


def backup(
    source: Path,
    target: Path,
    *,
    force: bool = False,
    pages_per_step: int = PAGES_PER_STEP,
    on_progress: Progress | None = None,
) -> BackupResult:
    """Copy the database at `source` to `target` (see the module doc)."""
    _check_target(source, target, force)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        pages = _copy(source, partial, pages_per_step, on_progress)
        _fsync(partial)
        try:
            check_file(partial)
        except StorageError as exc:
            raise BackupError(f"the copy of {source} failed the start-up checks: {exc}") from None
        realms, objects = _counts(partial)
        _put_in_place(partial, target, force)
    finally:
        for leftover in (partial, *_companions(partial)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return BackupResult(target, pages, target.stat().st_size, realms, objects)


def _check_target(source: Path, target: Path, force: bool) -> None:
    if not source.is_file():
        raise BackupError(f"{source}: no such database file")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: name the backup file")
    if not target.parent.is_dir():
        raise BackupError(f"{target}: the directory {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise BackupError(f"{target}: cannot write in {target.parent}")
    if target.exists():
        if target.resolve() == source.resolve():
            raise BackupError(f"{target} is the database being backed up: name another file")
        if not force:
            raise BackupError(f"{target} exists: pass --force to replace it")
        if _held(target):
            raise BackupError(f"{target} is in use by a running server: it cannot be replaced")


def _held(path: Path) -> bool:
    """Whether a server holds `path` (its advisory lock, taken and released at once)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _copy(source: Path, partial: Path, pages_per_step: int, on_progress: Progress | None) -> int:
    """The snapshot of `source` into `partial`; the pages copied."""
    uri = source.resolve().as_uri() + "?mode=rw"  # rw: never creates it; query_only: no writes
    copied = 0

    def step(status: int, remaining: int, total: int) -> None:
        nonlocal copied
        copied = total
        if on_progress is not None:
            on_progress(total - remaining, total)

    try:  # the copy holds everything the database does: readable by its owner only
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise BackupError(f"{partial}: cannot create: {exc.strerror}") from None
    try:
        reader = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: cannot open: {exc}") from None
    try:
        reader.execute("PRAGMA query_only = 1")
        reader.execute("PRAGMA busy_timeout = 5000")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts
        if reader.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise BackupError(f"{source} is not a hivectl database")
        with contextlib.closing(sqlite3.connect(partial)) as copy:
            reader.backup(copy, pages=pages_per_step, progress=step)
        reader.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: backup failed: {exc}") from None
    finally:
        reader.close()
    if any(path.exists() for path in _companions(partial)):
        raise BackupError(f"{partial}: the copy did not close cleanly")
    return copied


def _counts(path: Path) -> tuple[int, int]:
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        realms = db.execute("SELECT count(*) FROM realms").fetchone()[0]
        objects = db.execute("SELECT count(*) FROM objects").fetchone()[0]
    return int(realms), int(objects)


def _put_in_place(partial: Path, target: Path, force: bool) -> None:
    """Give the checked copy the target's name, atomically; without `force` never over a
    file that appeared meanwhile (a link fails where a rename would replace)."""
    if force:
        for stale in _companions(target):  # a -wal of the old file would corrupt the new one
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        os.replace(partial, target)
    else:
        try:
            os.link(partial, target)
        except FileExistsError:
            raise BackupError(f"{target} exists: pass --force to replace it") from None
    _fsync_directory(target.parent)


def _companions(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
