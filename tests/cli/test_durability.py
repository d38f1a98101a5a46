"""Durability of `hivectl serve` with its default SQLite store, as real processes.

Every test runs the server as a subprocess in its own directory (the database is
``./hivectl.db``), kills or stops it, starts it again on the same file, and looks with a
client. "Acknowledged" means the client got the reply: it must survive ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hivectl.client import HivekitClient
from server.stores.sqlite_storage import MIGRATIONS, SqliteStorage
from tests.cli.conftest import ServeProcess, clean_env, run_cli
from tests.conftest import SECRET, mint
from tests.diskutil import unwritable_directory
from tests.server.test_sqlite_storage import ODD_IDS

ENV = {
    "HIVECTL_AUTH_SECRET": SECRET,
    "HIVECTL_LIMITS_MESSAGES_PER_SECOND": "100000",
    "HIVECTL_LIMITS_BURST": "100000",
}
ADMIN = mint("admin")
EVENT_TIMEOUT = 10.0


@pytest.fixture
def env() -> dict[str, str]:
    return clean_env(**ENV)


@contextlib.asynccontextmanager
async def client(url: str, token: str = ADMIN) -> AsyncIterator[HivekitClient]:
    async with HivekitClient(url, token, reconnect=False) as connected:
        yield connected


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


async def test_acknowledged_writes_survive_kill_9_and_nothing_comes_back_connected(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    ids = [f"dev-{n:04}" for n in range(1000)]
    async with client(server.ws_url) as admin:
        realm = await admin.realm.create("fleet", dat={"city": "Zürich"})
        await asyncio.gather(*(realm.object.create(i, data={"n": n}) for n, i in enumerate(ids)))
        await asyncio.gather(
            *(
                realm.object.update(i, location={"lon": n / 100, "lat": 47.0}, data={"v": 2})
                for n, i in enumerate(ids)
            )
        )
        async with client(server.ws_url, mint("gateway", dpv={"fleet": ["dev-*"]})):
            assert (await admin.system.stats())["connectedObjects"] == 1000
            server.kill()  # SIGKILL, with every object connected
    restarted = ServeProcess(tmp_path, env)
    serve_process.append(restarted)
    async with client(restarted.ws_url) as admin:
        realm = await admin.realm.get("fleet")
        assert realm.dat == {"city": "Zürich"}
        listed = await realm.object.list(fields=["n", "v"])
        assert list(listed) == ids  # creation order
        assert all(entry["cst"] == "dis" for entry in listed.values())
        assert [entry["dat"] for entry in listed.values()] == [
            {"n": n, "v": 2} for n in range(1000)
        ]
        last = await realm.object.get(ids[-1])
        assert (last.loc["lon"], last.loc["lat"]) == (9.99, 47.0)
        assert (await admin.system.stats())["connectedObjects"] == 0


async def test_a_burst_of_sets_survives_sigterm(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    async with client(server.ws_url) as admin:
        realm = await admin.realm.create("r")
        for n in range(3000):
            await realm.object.set(f"o{n % 500}", data={"n": n})
        await admin.system.heartbeat()  # handled after every set of this connection
        assert await asyncio.to_thread(server.stop) == 0  # the loop answers the close frame
    restarted = ServeProcess(tmp_path, env)
    serve_process.append(restarted)
    async with client(restarted.ws_url) as admin:
        listed = await (await admin.realm.get("r")).object.list(fields=["n"])
    assert {object_id: entry["dat"]["n"] for object_id, entry in listed.items()} == {
        f"o{i}": 2500 + i for i in range(500)
    }


async def test_sets_are_committed_within_the_batch_window_without_a_shutdown(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    async with client(server.ws_url) as admin:
        realm = await admin.realm.create("r")
        for n in range(200):
            await realm.object.set(f"o{n}", data={"n": n})
        await admin.system.heartbeat()
        await asyncio.sleep(1.0)  # the window is 10 ms: a hundred windows later
        server.kill()
    restarted = ServeProcess(tmp_path, env)
    serve_process.append(restarted)
    async with client(restarted.ws_url) as admin:
        listed = await (await admin.realm.get("r")).object.list()
    assert list(listed) == [f"o{n}" for n in range(200)]


async def test_providers_bring_their_objects_back_after_a_restart(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    provider_token = mint("rider", jti="rider-1", dpv={"london": ["riders/*"]})
    async with client(server.ws_url) as admin:
        realm = await admin.realm.create("london")
        for object_id in ("riders/jo", "riders/al", "vans/1"):
            await realm.object.create(object_id)
        async with client(server.ws_url, provider_token):
            assert (await admin.system.presence_count("london")) == {
                "connected": 2,
                "disconnected": 1,
            }
            assert await asyncio.to_thread(server.stop) == 0  # the provider leaves: "shutdown"
    restarted = ServeProcess(tmp_path, env, "--port", str(server.port))
    serve_process.append(restarted)
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    async with client(restarted.ws_url) as admin:
        explained = await admin.system.presence("london", "riders/jo")
        assert explained["cst"] == "dis"
        assert explained["lastReason"] == "shutdown"  # the ledger came back from disk
        assert "lastDisconnectedAt" in explained
        realm = await admin.realm.get("london")
        await realm.pubsub.subscribe(
            "connectionStatusChanged", lambda data, oid: events.put_nowait((oid, data))
        )
        async with client(server.ws_url, provider_token):  # the same URL as before
            async with asyncio.timeout(EVENT_TIMEOUT):
                arrived = sorted([await events.get(), await events.get()])
            assert arrived == [("riders/al", {"cst": "con"}), ("riders/jo", {"cst": "con"})]
            listed = await realm.object.list()
            assert {i: e["cst"] for i, e in listed.items()} == {
                "riders/jo": "con",
                "riders/al": "con",
                "vans/1": "dis",
            }
            explained = await admin.system.presence("london", "riders/jo")
            assert [p["jti"] for p in explained["providers"]] == ["rider-1"]


async def test_odd_ids_round_trip_through_a_restart(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env)
    serve_process.append(server)
    realm_ids = ["r_", "ra", "r%", "rb", "Zürich*?"]
    async with client(server.ws_url) as admin:
        for realm_id in realm_ids:
            realm = await admin.realm.create(realm_id, lab=realm_id)
            for object_id in ODD_IDS:
                await realm.object.create(object_id, label=object_id, data={"id": object_id})
        await admin.realm.delete("r_")  # not "ra"
        await admin.realm.delete("r%")  # not "rb"
        realm = admin.realm.handle("ra")
        for object_id in ("a%", "a_", "a*", "?", "*"):  # not "ab", "a?c", "100%"...
            await realm.object.delete(object_id)
        server.kill()
    restarted = ServeProcess(tmp_path, env)
    serve_process.append(restarted)
    async with client(restarted.ws_url) as admin:
        assert list(await admin.realm.list()) == ["ra", "rb", "Zürich*?"]
        kept = [i for i in ODD_IDS if i not in ("a%", "a_", "a*", "?", "*")]
        for realm_id, expected in (("ra", kept), ("rb", ODD_IDS), ("Zürich*?", ODD_IDS)):
            realm = await admin.realm.get(realm_id)
            assert realm.lab == realm_id
            listed = await realm.object.list(fields=["id"])
            assert list(listed) == expected
            assert all(e["lab"] == i and e["dat"] == {"id": i} for i, e in listed.items())


# -- start-up refusals: exit 2, a clear message, the file untouched ----------------------


def refused(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    """Run `hivectl serve`, expect exit 2, return its stderr."""
    result = run_cli("serve", "--port", "0", "--api-port", "0", *args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "hivectl serving" not in result.stderr
    return " ".join(result.stderr.split())


async def test_a_database_from_a_newer_version_stops_start_up(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "hivectl.db"
    newer = (*MIGRATIONS, ("CREATE TABLE from_the_future (id TEXT)",))
    storage = SqliteStorage.open(path, batch_window=0.01, migrations=newer)
    await storage.close()
    before = snapshot(path)
    message = refused(tmp_path, env)
    assert f"was written by a newer hivectl (schema version {len(MIGRATIONS) + 1}" in message
    assert "upgrade hivectl" in message
    assert snapshot(path) == before


def test_a_corrupt_database_stops_start_up(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "hivectl.db"
    path.write_bytes(b"not a database at all\n" * 200)
    before = snapshot(path)
    assert "is corrupt or not a hivectl database" in refused(tmp_path, env)
    assert snapshot(path) == before


def test_a_foreign_database_stops_start_up(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "elsewhere.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
        db.commit()
    before = snapshot(path)
    message = refused(tmp_path, {**env, "HIVECTL_STORAGE_PATH": str(path)})
    assert "is not a hivectl database" in message
    assert snapshot(path) == before


async def test_an_unwritable_directory_stops_start_up(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    existing = data / "hivectl.db"
    storage = SqliteStorage.open(existing, batch_window=0.01)
    await storage.close()
    before = snapshot(existing)
    with unwritable_directory(data):
        for name in ("hivectl.db", "fresh.db"):  # an existing database, and a new one
            db_env = {**env, "HIVECTL_STORAGE_PATH": str(data / name)}
            assert f"cannot write in {data}" in refused(tmp_path, db_env)
    assert snapshot(existing) == before


def test_zero_config_in_an_unwritable_directory_stops_start_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    no_secret = clean_env(HIVECTL_STORAGE_PATH=str(data / "hivectl.db"))
    with unwritable_directory(data):
        assert "cannot create the signing secret" in refused(tmp_path, no_secret)
    assert list(data.iterdir()) == []


def test_storage_memory_keeps_nothing_on_disk(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    server = ServeProcess(tmp_path, env, "--storage", "memory")
    serve_process.append(server)
    server.kill()
    assert not (tmp_path / "hivectl.db").exists()
