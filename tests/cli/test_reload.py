"""SIGHUP reloads the config of a running `hivectl serve`: keys rotate, the log level
changes, live connections stay, and a broken file changes nothing."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from hivectl.core.tokens import SigningKey, mint_token
from tests.cli.conftest import Client, ServeProcess, clean_env

OLD = "old-key-secret-0123456789-abcdefghijklmnop"
NEW = "new-key-secret-0123456789-abcdefghijklmnop"


def _config(path: Path, keys: dict[str, str], **extra: str) -> None:
    lines = ['[storage]\nbackend = "memory"\n']
    for table, body in extra.items():
        lines.append(f"[{table}]\n{body}\n")
    for kid, secret in keys.items():
        lines.append(f'[[auth.keys]]\nkid = "{kid}"\nsecret = "{secret}"\n')
    path.write_text("\n".join(lines))


def _half_written(path: Path) -> None:
    path.write_text("[auth\nkeys = ")


def _token(kid: str, secret: str) -> str:
    key = SigningKey("HS256", secret.encode(), kid)
    return mint_token({"sub": f"rider-{kid}"}, key, now=time.time(), ttl=600)


def _reload(process: ServeProcess, expected: str) -> str:
    process.proc.send_signal(signal.SIGHUP)
    return process.wait_for(re.compile(expected)).string


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hivectl.toml"
    _config(path, {"k1": OLD})
    return path


async def test_sighup_rotates_keys_and_keeps_connections(
    tmp_path: Path, config: Path, serve_process: list[ServeProcess]
) -> None:
    process = ServeProcess(tmp_path, clean_env(), "--config", str(config))
    serve_process.append(process)
    early = await Client.open(process.ws_url)
    assert (await early.authenticate(_token("k1", OLD)))["res"] == "suc"
    refused = await Client.open(process.ws_url)
    assert (await refused.authenticate(_token("k2", NEW)))["err"] == "unknown key id k2"

    _config(config, {"k1": OLD, "k2": NEW})  # the overlap: both keys
    line = _reload(process, r"config (reloaded|reload failed)")
    assert "config reloaded: applied auth.keys; needs a restart: nothing" in line
    assert (await early.call(typ="sys", act="hbt"))["res"] == "suc"  # still connected
    for kid, secret in (("k1", OLD), ("k2", NEW)):
        client = await Client.open(process.ws_url)
        assert (await client.authenticate(_token(kid, secret)))["res"] == "suc"
        await client.close()

    _half_written(config)
    line = _reload(process, r"config (reloaded|reload failed)")
    assert "config reload failed, still running with the previous config" in line
    client = await Client.open(process.ws_url)
    assert (await client.authenticate(_token("k2", NEW)))["res"] == "suc"
    await client.close()

    _config(config, {"k2": NEW}, log='level = "debug"', presence='grace = "5s"')
    line = _reload(process, r"config (reloaded|reload failed)")
    assert "applied auth.keys, log.level; needs a restart: presence.grace" in line
    assert (await early.call(typ="sys", act="hbt"))["res"] == "suc"  # its token still holds
    late = await Client.open(process.ws_url)
    assert (await late.authenticate(_token("k1", OLD)))["err"] == "unknown key id k1"
    process.wait_for(re.compile(r"DEBUG hivectl\.server: connection \S+ opened from"))
    for each in (early, refused, late):
        await each.close()
    assert process.stop() == 0
