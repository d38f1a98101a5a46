"""An acknowledged write is in the database file when its reply arrives.

The hub only appends its writes (`server.stores.writes`); the shell hands them to storage
and syncs before a reply that acknowledges one goes out (`HivekitServer._commit`). Here the
SQLite store's windows are a minute long, so nothing reaches the file but through that
sync, and the file is read by an independent read-only connection as each reply arrives:
what another process, or the server after ``kill -9``, would find.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import orjson

from server.io.app import HivekitServer
from tests.conftest import mint, running
from tests.server.wsutil import RawClient, post

WINDOWS = {"storage.batch_window": 60.0, "storage.ledger_window": 60.0}
"""Longer than any test: a write reaches the file only through a sync."""


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def objects(path: Path) -> dict[str, object]:
    return {
        object_id: orjson.loads(body)["dat"]
        for object_id, body in rows(path, "SELECT id, body FROM objects WHERE realm = 'r'")
    }


def settings(path: Path) -> dict[str, object]:
    return {"storage.backend": "sqlite", "storage.path": str(path), **WINDOWS}


async def test_each_acknowledged_write_is_in_the_file_when_its_reply_arrives(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hive.db"
    async with running(settings(path)) as server:
        admin = await RawClient.open(server.ws_url, mint("admin", adm=True))
        await admin.ok({"typ": "rea", "act": "cre", "id": "r", "lab": "R"})
        assert rows(path, "SELECT id FROM realms") == [("r",)]
        await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "o", "dat": {"n": 1}})
        assert objects(path) == {"o": {"n": 1}}
        await admin.ok({"typ": "obj", "act": "upd", "rea": "r", "id": "o", "dat": {"n": 2}})
        assert objects(path) == {"o": {"n": 2}}
        await admin.ok({"typ": "adm", "act": "rev", "dat": {"jti": "stolen"}})
        assert rows(path, "SELECT key FROM revocations") == [("jti:stolen",)]
        await admin.ok({"typ": "obj", "act": "del", "rea": "r", "id": "o"})
        assert objects(path) == {}
        await admin.ok({"typ": "rea", "act": "del", "id": "r"})
        assert rows(path, "SELECT id FROM realms") == []
        await admin.close()


async def test_an_http_write_is_in_the_file_when_its_answer_arrives(tmp_path: Path) -> None:
    path = tmp_path / "hive.db"
    async with running(settings(path)) as server:
        url = api_url(server)
        token = mint("admin")
        create = [
            {"typ": "rea", "act": "cre", "id": "r", "cid": 1},
            {"typ": "obj", "act": "cre", "rea": "r", "id": "o", "dat": {"n": 1}, "cid": 2},
        ]
        status, body = await post(url, create, token)
        assert (status, [reply["res"] for reply in body]) == (200, ["suc", "suc"])
        assert objects(path) == {"o": {"n": 1}}


def api_url(server: HivekitServer) -> str:
    url = server.api_url
    assert url is not None
    return url
