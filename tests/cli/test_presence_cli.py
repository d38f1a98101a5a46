"""`hivectl presence explain` and `count` against a real server process.

Devices connect from this process and stay connected while the CLI runs as its own
process (asyncio subprocesses: the devices must keep answering the server's pings).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from hivectl.client import HivekitClient
from tests.cli.conftest import ServeProcess, clean_env, words
from tests.conftest import SECRET, mint

REAP_DEADLINE = 10.0


@pytest.fixture
def server(reaping_server: ServeProcess) -> ServeProcess:
    return reaping_server


async def cli(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """The CLI as its own process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hivectl",
        *args,
        cwd=cwd,
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def explain(server: ServeProcess, cwd: Path, object_id: str) -> dict[str, Any]:
    code, out, err = await cli(
        cwd,
        "presence",
        "explain",
        "london",
        object_id,
        "--url",
        server.ws_url,
        "--json",
        HIVECTL_AUTH_SECRET=SECRET,
    )
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


async def test_explain_follows_a_multi_device_object_down_to_a_timeout(
    server: ServeProcess, tmp_path: Path
) -> None:
    devices = {"london": ["riders/jo"]}
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        await realm.object.create("riders/jo")
        await realm.object.create("riders/al")
        phone = HivekitClient(server.ws_url, mint("phone", jti="jti-phone", dpv=devices))
        await phone.connect()
        watch = await connect(server.ws_url, proxy=None, ping_interval=None)
        await watch.send("Bearer " + mint("watch", jti="jti-watch", dpv=devices))
        assert json.loads(await watch.recv())[0]["res"] == "suc"

        both = await explain(server, tmp_path, "riders/jo")
        assert (both["realm"], both["id"], both["status"]) == ("london", "riders/jo", "connected")
        assert "cst" not in both  # the CLI's JSON says status, as watch --json does
        assert [(p["sub"], p["jti"]) for p in both["providers"]] == [
            ("phone", "jti-phone"),
            ("watch", "jti-watch"),
        ]
        assert all("since" in p for p in both["providers"])
        assert "connectedSince" in both

        code, out, err = await cli(
            tmp_path,
            "presence",
            "explain",
            "london",
            "riders/jo",
            "--url",
            server.ws_url,
            HIVECTL_AUTH_SECRET=SECRET,
        )
        assert code == 0, err
        text = words(out)
        assert "london / riders/jo: connected" in text
        assert all(word in text for word in ("phone", "jti-phone", "watch", "jti-watch"))
        assert "connected since" in text

        await phone.close()
        one = await explain(server, tmp_path, "riders/jo")
        assert one["status"] == "connected"
        assert [p["sub"] for p in one["providers"]] == ["watch"]
        assert "lastReason" not in one  # the object never went down

        went = asyncio.Event()
        await realm.pubsub.subscribe("connectionStatusChanged", lambda data, oid: went.set())
        assert watch.transport is not None
        watch.transport.pause_reading()  # silent: no pong, no close, the socket stays open
        async with asyncio.timeout(REAP_DEADLINE):
            await went.wait()  # reaped by the ping timeout
        gone = await explain(server, tmp_path, "riders/jo")
        assert gone["status"] == "disconnected"
        assert gone["providers"] == []
        assert gone["lastReason"] == "timeout"
        assert "lastDisconnectedAt" in gone
        watch.transport.abort()


async def test_count_by_pattern_as_json_and_as_a_table(
    server: ServeProcess, tmp_path: Path
) -> None:
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        realm = await admin.realm.create("london")
        for object_id in ("riders/jo", "riders/al", "vans/1"):
            await realm.object.create(object_id)
        token = mint("gw", dpv={"london": ["riders/jo", "vans/*"]})
        async with HivekitClient(server.ws_url, token, reconnect=False):
            url = ("--url", server.ws_url)
            base = ("presence", "count", "london")
            code, out, err = await cli(tmp_path, *base, *url, "--json", HIVECTL_AUTH_SECRET=SECRET)
            assert (code, json.loads(out)) == (0, {"connected": 2, "disconnected": 1}), err
            code, out, _ = await cli(
                tmp_path, *base, "riders/*", *url, "--json", HIVECTL_TOKEN=mint("reader")
            )
            assert (code, json.loads(out)) == (0, {"connected": 1, "disconnected": 1})
            code, out, _ = await cli(tmp_path, *base, "vans/*", *url, HIVECTL_AUTH_SECRET=SECRET)
            assert code == 0
            assert "london vans/* 1 0" in words(out)


async def test_failures_say_why(server: ServeProcess, tmp_path: Path) -> None:
    url = ("--url", server.ws_url)
    code, _, err = await cli(
        tmp_path, "presence", "explain", "nowhere", "x", *url, HIVECTL_AUTH_SECRET=SECRET
    )
    assert (code, "unknown realm nowhere" in err) == (1, True)
    code, _, err = await cli(
        tmp_path, "presence", "count", "london", *url, HIVECTL_TOKEN="not-a-token"
    )
    assert (code, "refused the token" in err) == (1, True)
    code, _, err = await cli(tmp_path, "presence", "count", "london", *url)
    assert (code, "no token" in words(err)) == (2, True)
    code, _, err = await cli(
        tmp_path, "presence", "count", "london", "--url", "ws://127.0.0.1:9/ws", HIVECTL_TOKEN="t"
    )
    assert (code, "cannot reach ws://127.0.0.1:9/ws" in words(err)) == (1, True)
