"""`hivectl storage backup` of a live SQLite server: a backup taken while a writer keeps
writing holds every write acknowledged before it began, passes the server's start-up
checks, and a server started from it serves those writes; the server is not held up while
the copy is made; the target is checked before anything is written over.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from hivectl.client import HivekitClient
from server.stores.sqlite_backup import BackupError, backup
from server.stores.sqlite_storage import SqliteStorage, check_file
from tests.cli.conftest import ServeProcess, clean_env, invoke, run_cli, words
from tests.conftest import SECRET, mint, running

ENV = {
    "HIVECTL_AUTH_SECRET": SECRET,
    "HIVECTL_LIMITS_MESSAGES_PER_SECOND": "100000",
    "HIVECTL_LIMITS_BURST": "100000",
}
DEADLINE = 15.0


class Writer:
    """Creates objects one after the other, each after the previous one was acknowledged,
    until stopped; `acknowledged` grows as the replies come."""

    def __init__(self, url: str) -> None:
        self.client = HivekitClient(url, mint("writer"), reconnect=False)
        self.acknowledged: list[str] = []
        self._grew = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Writer:
        await self.client.connect()
        await self.client.realm.create("fleet")
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        realm = self.client.realm.handle("fleet")
        while not self._stop.is_set():
            n = len(self.acknowledged)
            await realm.object.create(f"w/{n:06}", data={"n": n, "pad": "x" * 200})
            self.acknowledged.append(f"w/{n:06}")
            self._grew.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(self.acknowledged) < count:
                self._grew.clear()
                await self._grew.wait()

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        await self.client.close()


def hidden_files(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir() if path.name.startswith(".")]


async def stored_ids(url: str) -> list[str]:
    async with HivekitClient(url, mint("reader"), reconnect=False) as reader:
        return list(await reader.realm.handle("fleet").object.list())


async def test_a_backup_during_writes_holds_every_write_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    database, copy = tmp_path / "live.db", tmp_path / "copy.db"
    settings = {"storage.backend": "sqlite", "storage.path": str(database)}
    steps: list[tuple[int, int, int]] = []
    async with running(settings) as server, Writer(server.ws_url) as writer:
        await writer.wait_for(300)  # a database of some hundred pages
        before = list(writer.acknowledged)

        def slow_step(done: int, total: int) -> None:
            steps.append((done, total, len(writer.acknowledged)))
            time.sleep(0.02)  # a long copy: the snapshot stays pinned between steps

        result = await asyncio.to_thread(
            backup, database, copy, pages_per_step=4, on_progress=slow_step
        )
        during = steps[-1][2] - steps[0][2]
    assert len(steps) > 5 and steps[-1][0] == steps[-1][1] == result.pages
    assert during > 0, "the server acknowledged no write while the copy was made"
    check_file(copy)
    storage = SqliteStorage.open(copy, batch_window=0.01)
    try:
        (fleet,) = storage.load().realms
        kept = list(fleet.objects)
    finally:
        await storage.close()
    assert kept[: len(before)] == before
    assert kept == writer.acknowledged[: len(kept)]  # a prefix: one snapshot, in order
    assert result.objects == len(kept) and result.realms == 1
    async with running({"storage.backend": "sqlite", "storage.path": str(copy)}) as restored:
        assert await stored_ids(restored.ws_url) == kept


async def test_the_cli_backs_up_a_serving_process_that_then_starts_from_the_copy(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    env = clean_env(**ENV)
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    async with Writer(server.ws_url) as writer:
        await writer.wait_for(200)
        before = list(writer.acknowledged)
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hivectl", "storage", "backup", "backup.db"),
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    assert "backed up hivectl.db to backup.db: 1 realms" in err.decode()
    assert (tmp_path / "backup.db").stat().st_mode & 0o777 == 0o600
    assert hidden_files(tmp_path) == []  # no partial copy left
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    (tmp_path / "backup.db").rename(restored_dir / "hivectl.db")
    restored = ServeProcess(restored_dir, env)  # plain `hivectl serve`, its default database
    serve_process.append(restored)
    kept = await stored_ids(restored.ws_url)
    assert kept[: len(before)] == before
    assert len(kept) >= len(before)


async def test_the_target_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    database = tmp_path / "live.db"
    async with running({"storage.backend": "sqlite", "storage.path": str(database)}):
        pass  # a real, closed hivectl database
    existing = tmp_path / "old.db"
    existing.write_bytes(b"keep me")
    env = {"HIVECTL_STORAGE_PATH": str(database)}

    refused = invoke("storage", "backup", str(existing), env=env)
    assert refused.exit_code == 2 and "exists: pass --force" in words(refused.stderr)
    assert existing.read_bytes() == b"keep me"
    itself = invoke("storage", "backup", str(database), "--force", env=env)
    assert itself.exit_code == 2 and "is the database being backed up" in words(itself.stderr)

    stale_wal = tmp_path / "old.db-wal"
    stale_wal.write_bytes(b"a -wal of the file being replaced")
    replaced = invoke("storage", "backup", str(existing), "--force", env=env)
    assert replaced.exit_code == 0, replaced.stderr
    assert not stale_wal.exists()  # it would have been applied to the new copy
    check_file(existing)

    with pytest.raises(BackupError, match="is in use by a running server"):
        async with running({"storage.backend": "sqlite", "storage.path": str(existing)}):
            backup(database, existing, force=True)
    with pytest.raises(BackupError, match="not a hivectl database"):
        foreign = tmp_path / "foreign.db"
        with contextlib.closing(sqlite3.connect(foreign)) as db:
            db.execute("CREATE TABLE t (x)")
        backup(foreign, tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()
    with pytest.raises(BackupError, match="does not exist"):
        backup(database, tmp_path / "no" / "such.db")
    assert hidden_files(tmp_path) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HIVECTL_STORAGE_BACKEND": "memory"}, "[storage] backend is memory: nothing to back up"),
        ({"HIVECTL_CLUSTER_NATS_URL": "nats://127.0.0.1:4222"}, "a cluster node keeps no SQLite"),
    ],
)
def test_without_a_sqlite_database_configured_it_exits_2(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = invoke("storage", "backup", "out.db", env=env)
    assert result.exit_code == 2 and message in words(result.stderr)
    explicit = run_cli("storage", "backup", "out.db", "--db", "missing.db", cwd=tmp_path)
    assert explicit.returncode == 1 and "missing.db: no such database file" in words(
        explicit.stderr
    )
