"""`hivectl realm` and `hivectl object` against real servers in this process: the CLI runs
in a worker thread (its own event loop), the servers in the test's loop.

Shown: an export imported into a fresh server (SQLite) exports again byte for byte; an
import is batched in frames and paced under small limits read from the CLI's config (the
server sees no 413 and no 429); failed objects are reported with a non-zero exit;
conflicts follow ``--on-conflict``; realms and objects are listed, read and deleted by
pattern, deletions of many asking first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import Result

from hivectl.client import HivekitClient
from server.io.app import HivekitServer
from tests.cli.conftest import invoke
from tests.conftest import SECRET, mint, running

SMALL_LIMITS = {
    "limits.max_messages_per_frame": 50,
    "limits.messages_per_second": 1000,
    "limits.burst": 200,
    "limits.max_message_size": 4096,
}


def cli_env(server: HivekitServer, limits: dict[str, Any] | None = None) -> dict[str, str]:
    """What the CLI reads: the server's URL, its secret, and the same limits."""
    env = {"HIVECTL_AUTH_SECRET": SECRET, "HIVECTL_CLIENT_URL": server.ws_url}
    for key, value in (limits or {}).items():
        env["HIVECTL_" + key.replace(".", "_").upper()] = str(value)
    return env


async def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return await asyncio.to_thread(invoke, *args, env=env, stdin=stdin)


@pytest.fixture
async def server() -> AsyncIterator[HivekitServer]:
    async with running({}) as started:
        yield started


async def admin(server: HivekitServer) -> HivekitClient:
    client = HivekitClient(server.ws_url, mint("admin"), reconnect=False)
    await client.connect()
    return client


async def fill_varied_realm(server: HivekitServer) -> None:
    """Objects with every kind of field the server keeps, some changed after creation."""
    client = await admin(server)
    try:
        realm = await client.realm.create("london", "London")
        await realm.object.create(
            "riders/jo",
            label="Jo ✓",
            location={
                "lon": -0.1275,
                "lat": 51.507,
                "acc": 4.5,
                "gcs": "wgs84",
                "tim": "2026-01-02T03:04:05.678Z",
            },
            data={
                "type": "rider",
                "score": 0.1 + 0.2,
                "nested": {"gone": None, "list": [1, "二", None]},
            },
            task_ids=["t-1", "t-2"],
        )
        await realm.object.create("riders/al")  # no location, no data
        await realm.object.create(
            'odd %_*?[]\\ "quoted"', label="", data={"big": 2**53 + 1, "tiny": -1.5e-7}
        )
        await realm.object.create("vans/1", location={"lon": 1, "lat": 2}, data={"z": 1, "a": 2})
        await realm.object.update("vans/1", data={"z": None, "m": 3})  # key order: a, m
        await realm.object.update("riders/al", label="Al")
        for index in range(120):  # enough for several frames under SMALL_LIMITS
            await realm.object.set(
                f"fleet/{index:03}", data={"n": index}, location={"lon": index / 7, "lat": 51}
            )
        await client.connection.request({"typ": "sys", "act": "hbt"})  # the sets are applied
    finally:
        await client.close()


async def test_export_imported_into_a_fresh_server_exports_again_byte_for_byte(
    server: HivekitServer, tmp_path: Path
) -> None:
    await fill_varied_realm(server)
    first = await cli(cli_env(server), "object", "export", "london")
    assert first.exit_code == 0, first.stderr
    assert "exported 124 objects from london" in first.stderr
    lines = first.stdout_bytes.splitlines()
    assert len(lines) == 124
    assert orjson.loads(lines[0])["id"] == "riders/jo"  # creation order
    assert all("cst" not in orjson.loads(line) for line in lines)
    exported = tmp_path / "london.jsonl"
    exported.write_bytes(first.stdout_bytes)

    fresh = {"storage.backend": "sqlite", "storage.path": str(tmp_path / "fresh.db")}
    async with running({**fresh, **SMALL_LIMITS}) as other:
        env = cli_env(other, SMALL_LIMITS)
        imported = await cli(env, "object", "import", "copy", str(exported))
        assert imported.exit_code == 0, imported.stderr
        assert "created realm copy" in imported.stderr
        assert "124 created, 0 updated, 0 skipped, 0 failed" in imported.stderr
        again = await cli(env, "object", "export", "copy")
        assert again.exit_code == 0, again.stderr
        assert again.stdout_bytes == first.stdout_bytes
    async with running(fresh) as restarted:  # and it was stored so
        stored = await cli(cli_env(restarted), "object", "export", "copy")
        assert stored.stdout_bytes == first.stdout_bytes


def frame_spy(server: HivekitServer) -> list[int]:
    """Sizes of the message frames the server handles (it takes them one by one)."""
    sizes: list[int] = []
    handle = server.hub.handle_frame

    def counting(session: Any, message: str | bytes, now: float) -> Any:
        value = orjson.loads(message)
        if isinstance(value, list):
            sizes.append(len(value))
        return handle(session, message, now)

    server.hub.handle_frame = counting  # type: ignore[method-assign]
    return sizes


async def test_import_is_batched_and_paced_under_the_servers_limits(tmp_path: Path) -> None:
    count = 2500
    lines = [
        json.dumps({"id": f"r/{i:05}", "lab": f"rider {i}", "dat": {"n": i}}) for i in range(count)
    ]
    source = tmp_path / "big.jsonl"
    source.write_text("\n".join(lines) + "\n")
    async with running(SMALL_LIMITS) as server:
        frames = frame_spy(server)
        started = time.monotonic()
        result = await cli(cli_env(server, SMALL_LIMITS), "object", "import", "fleet", str(source))
        took = time.monotonic() - started
        assert result.exit_code == 0, result.stderr
        assert f"{count} created" in result.stderr
        assert server.hub.errors[429] == 0 and server.hub.errors[413] == 0
        assert list(server.hub.realms["fleet"].objects) == [f"r/{i:05}" for i in range(count)]
        assert max(frames) <= 50 and len(frames) < count / 10  # batched, under the frame limit
        # 1000 messages/s after a burst of 200: pacing takes at least (2500 - 200) / 1000 s
        assert took >= (count - 200) / 1000


async def test_objects_that_fail_are_reported_with_exit_1_and_the_rest_imported(
    server: HivekitServer, tmp_path: Path
) -> None:
    limits = {"limits.max_message_size": 2048}
    lines = [
        {"id": "riders/1"},
        {"id": "vans/1"},  # the token may not create it
        {"id": "riders/big", "dat": {"blob": "x" * 4000}},  # over max_message_size
        {"id": "riders/2"},
    ]
    source = tmp_path / "some.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    token = mint("importer", per={"london": {"*": "R", "riders/*": "CRU"}})
    client = await admin(server)
    await client.realm.create("london")
    await client.close()
    env = {**cli_env(server, limits), "HIVECTL_TOKEN": token}
    result = await cli(env, "object", "import", "london", str(source))
    assert result.exit_code == 1
    assert "2 created, 0 updated, 0 skipped, 2 failed" in result.stderr
    assert "2 of 4 objects failed" in result.stderr
    assert "403 permission denied: C on london/<id>: 1 (vans/1)" in result.stderr
    assert "413 too large" in result.stderr and "(riders/big)" in result.stderr
    assert list(server.hub.realms["london"].objects) == ["riders/1", "riders/2"]


async def test_conflicts_fail_by_default_or_are_skipped_or_updated(
    server: HivekitServer, tmp_path: Path
) -> None:
    client = await admin(server)
    london = await client.realm.create("london")
    await london.object.create("a", label="old", data={"keep": 0, "stale": 1})
    source = tmp_path / "two.jsonl"
    source.write_text('{"id":"a","lab":"new","dat":{"keep":1}}\n{"id":"b"}\n')
    env = cli_env(server)

    refused = await cli(env, "object", "import", "london", str(source))
    assert refused.exit_code == 1
    assert "1 objects exist already in london (a); nothing was imported" in refused.stderr
    assert list(await london.object.list()) == ["a"]

    skipped = await cli(env, "object", "import", "london", str(source), "--on-conflict", "skip")
    assert skipped.exit_code == 0, skipped.stderr
    assert "1 created, 0 updated, 1 skipped" in skipped.stderr
    assert (await london.object.get("a")).lab == "old"

    updated = await cli(env, "object", "import", "london", str(source), "--on-conflict", "update")
    assert updated.exit_code == 0, updated.stderr
    assert "0 created, 2 updated" in updated.stderr
    obj = await london.object.get("a")
    assert (obj.lab, obj.dat) == ("new", {"keep": 1})
    await client.close()


async def test_realms_are_created_listed_and_deleted(server: HivekitServer) -> None:
    env = cli_env(server)
    made = await cli(
        env, "realm", "create", "london", "--label", "London", "--data", '{"city": "L"}'
    )
    assert made.exit_code == 0, made.stderr
    again = await cli(env, "realm", "create", "london")
    assert again.exit_code == 1 and "realm with id london already exists" in again.stderr
    client = await admin(server)
    london = await client.realm.get("london")
    assert (london.lab, london.dat) == ("London", {"city": "L"})
    for object_id in ("a", "b", "c"):
        await london.object.create(object_id)
    await client.realm.create("empty")
    async with HivekitClient(server.ws_url, mint("gw", dpv={"london": ["a"]}), reconnect=False):
        listed = await cli(env, "realm", "list", "--json")
        assert listed.exit_code == 0, listed.stderr
        assert json.loads(listed.stdout) == [
            {"id": "london", "lab": "London", "objects": 3, "connected": 1},
            {"id": "empty", "lab": "", "objects": 0, "connected": 0},
        ]
    table = await cli(env, "realm", "list")
    assert "london" in table.stdout and "London" in table.stdout and "2 realms" in table.stdout

    kept = await cli(env, "realm", "delete", "london", stdin="n\n")
    assert kept.exit_code == 1 and "Delete realm london and its 3 objects?" in kept.stderr
    assert "london" in await client.realm.list()
    gone = await cli(env, "realm", "delete", "london", "--yes")
    assert gone.exit_code == 0, gone.stderr
    assert list(await client.realm.list()) == ["empty"]
    missing = await cli(env, "realm", "delete", "london", "--yes")
    assert missing.exit_code == 1 and "unknown realm london" in missing.stderr
    await client.close()


async def test_objects_are_listed_read_and_deleted_by_pattern(server: HivekitServer) -> None:
    client = await admin(server)
    london = await client.realm.create("london")
    for object_id in ("riders/1", "riders/2", "vans/1", "riders*"):
        await london.object.create(object_id, label=object_id.upper(), data={"type": "x"})
    await london.object.update("riders/2", data={"type": "y"})
    env = cli_env(server)

    listed = await cli(env, "object", "list", "london", "riders/*", "--json")
    assert [entry["id"] for entry in json.loads(listed.stdout)] == ["riders/1", "riders/2"]
    where = await cli(env, "object", "list", "london", "--where", 'type="y"', "--json")
    assert [entry["id"] for entry in json.loads(where.stdout)] == ["riders/2"]
    table = await cli(env, "object", "list", "london", "vans/*", "riders/2")
    assert "VANS/1" in table.stdout and "disconnected" in table.stdout
    assert "2 objects in london" in table.stdout

    got = await cli(env, "object", "get", "london", "riders/2", "--json")
    assert json.loads(got.stdout) == await client.connection.request(
        {"typ": "obj", "act": "rea", "rea": "london", "id": "riders/2"}
    )
    missing = await cli(env, "object", "get", "london", "riders/9")
    assert missing.exit_code == 1 and "unknown object riders/9" in missing.stderr

    kept = await cli(env, "object", "delete", "london", "riders/*", stdin="n\n")
    assert kept.exit_code == 1 and "Delete 2 objects from london" in kept.stderr
    assert len(await london.object.list()) == 4
    one = await cli(env, "object", "delete", "london", "vans/1")  # one object: no question
    assert one.exit_code == 0 and "deleted 1 objects from london" in one.stderr
    many = await cli(env, "object", "delete", "london", "riders/*", "--yes")
    assert many.exit_code == 0, many.stderr
    assert list(await london.object.list()) == ["riders*"]
    none = await cli(env, "object", "delete", "london", "nothing/*", "--yes")
    assert none.exit_code == 1 and "no object in london matches nothing/*" in none.stderr
    await client.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("object", "import", "r", "f.jsonl", "--on-conflict", "merge"), "--on-conflict must be"),
        (("object", "import", "r", "missing.jsonl"), "cannot read missing.jsonl"),
        (("object", "import", "r", "bad.jsonl"), "bad.jsonl: line 2: id must be a non-empty"),
        (("realm", "create", "r", "--data", "[1]"), "--data must be a JSON object"),
        (("realm", "create", "r", "--data", "{"), "--data is not JSON"),
    ],
)
def test_bad_options_and_files_exit_2_before_anything_is_sent(
    args: tuple[str, ...], message: str, isolated: Path
) -> None:
    (isolated / "f.jsonl").write_text('{"id":"a"}\n')
    (isolated / "bad.jsonl").write_text('{"id":"a"}\n{"id":""}\n')
    # Nothing listens there: reaching for the server would exit 1, not 2.
    result = invoke(
        *args, env={"HIVECTL_AUTH_SECRET": SECRET, "HIVECTL_CLIENT_URL": "ws://127.0.0.1:9/ws"}
    )
    assert result.exit_code == 2, result.stderr
    assert message in " ".join(result.stderr.split())


def test_the_url_token_and_limits_come_from_flags_and_config(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivectl.cli.remote import CLI_SUBJECT, remote
    from hivectl.core.tokens import decode_unverified

    (isolated / "hivectl.toml").write_text(
        '[client]\nurl = "ws://config:1/ws"\n[limits]\nmessages_per_second = 100\nburst = 40\n'
        '[[limits.rates]]\nsub = "bulk-*"\nmessages_per_second = 5000\nburst = 9000\n'
    )
    monkeypatch.setenv("HIVECTL_AUTH_SECRET", SECRET)
    minted = remote(None, None, None, {"r": {"*": "CRU"}})
    assert minted.url == "ws://config:1/ws" and minted.sub == CLI_SUBJECT
    assert decode_unverified(minted.token)[1]["per"] == {"r": {"*": "CRU"}}
    assert minted.budget().rate == pytest.approx(90.0)
    given = remote(None, "ws://flag:2/ws", mint("bulk-1"), {})
    assert given.url == "ws://flag:2/ws" and given.sub == "bulk-1"
    assert given.budget().rate == pytest.approx(4500.0)
