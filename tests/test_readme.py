"""The README stays true: its commands, flags and config keys exist; CI runs its tests."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hivectl.cli import app
from hivectl.client import HivekitClient
from hivectl.client.api import AdminApi
from hivectl.core.settings import setting_keys
from server.io.app import HivekitServer
from tests.conftest import SECRET, mint

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)


def hivectl_invocations() -> list[list[str]]:
    """Every `hivectl ...` command line in the README's shell blocks, as words."""
    found = []
    for block in shell_blocks():
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0]
            for part in re.split(r"\||&&|\$\(|\)", line):
                words = shlex.split(part)
                if words[:1] == ["hivectl"]:
                    found.append(words[1:])
                elif "hivectl" in words:
                    found.append(words[words.index("hivectl") + 1 :])
    return found


def command_path(words: list[str]) -> list[str]:
    """The leading words that name a (sub)command, walking the Typer app's groups."""
    path: list[str] = []
    for word in words:
        if word.startswith("-"):
            break
        result = CliRunner().invoke(app, [*path, word, "--help"])
        if result.exit_code != 0:
            break
        path.append(word)
    return path


def test_the_quick_start_is_two_commands_and_ci_runs_the_test_command() -> None:
    blocks = [block.strip() for block in shell_blocks()]
    assert blocks[0] == "pip install -e . && hivectl serve"
    assert blocks[1] == "pip install -e '.[test]' && pytest"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert blocks[1] in ci


@pytest.mark.parametrize("words", hivectl_invocations(), ids=lambda words: " ".join(words[:3]))
def test_documented_commands_and_flags_exist(words: list[str]) -> None:
    path = command_path(words)
    assert path, f"no such command: hivectl {' '.join(words)}"
    help_text = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
    for flag in (word.split("=", 1)[0] for word in words if word.startswith("--")):
        assert flag in help_text, f"hivectl {' '.join(path)} has no {flag}"


def test_documented_config_keys_exist() -> None:
    keys = set(setting_keys())
    tables = "server|auth|presence|limits|storage|cluster|log|client"
    dotted = set(re.findall(rf"`((?:{tables})\.[a-z_]+)`", README))
    bracketed = {f"{table}.{key}" for table, key in re.findall(r"`\[(\w+)\] (\w+)`", README)}
    limits_table = README.split("### Limits and close codes", 1)[1].split("\n\n", 2)[1]
    limits = {f"limits.{key}" for key in re.findall(r"`(\w+)`", limits_table)}
    documented = dotted | bracketed | limits
    assert len(documented) > 20
    assert documented <= keys, f"unknown keys in README: {sorted(documented - keys)}"


def test_every_command_in_the_table_exists() -> None:
    for command in re.findall(r"^\| `hivectl ([a-z ]+)", README, flags=re.M):
        words = command.split()
        assert command_path(words) == words, f"hivectl {command}"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def python_example() -> str:
    """The one complete program in the README; the other Python blocks are fragments."""
    (block,) = [block for block in python_blocks() if "asyncio.run(" in block]
    return block


def test_the_admin_fragment_calls_methods_the_client_has() -> None:
    (fragment,) = [block for block in python_blocks() if "client.admin." in block]
    called = set(re.findall(r"client\.admin\.(\w+)\(", fragment))
    assert called == {"connections", "disconnect", "revoke", "cluster_status"}
    assert all(callable(getattr(AdminApi, name, None)) for name in called)


def example_token_command() -> list[str]:
    """The `hivectl token mint` the README exports as TOKEN for the Python example."""
    (line,) = re.findall(r"export TOKEN=\$\(hivectl (.*?)\)\n", README.replace("\\\n", " "))
    return shlex.split(line)


async def test_the_python_example_runs_as_written_with_the_token_the_readme_mints(
    server: HivekitServer,
) -> None:
    """The example's first line used to fail with 403 (its token cannot read the realm),
    and its live set was empty when subscribe returned. Here it runs, unchanged, against a
    realm whose riders take three pushes to send."""
    riders = 1200  # more than two pushes of 500: the state comes in pieces
    async with HivekitClient(server.ws_url, mint("admin"), reconnect=False) as admin:
        london = await admin.realm.create("london")
        creates = [
            {
                "typ": "obj",
                "act": "cre",
                "rea": "london",
                "id": f"deliveryRiders/r{i}",
                "dat": {"type": "rider"},
            }
            for i in range(riders)
        ]
        creates.append(
            {
                "typ": "obj",
                "act": "cre",
                "rea": "london",
                "id": "deliveryRiders/van",
                "dat": {"type": "van"},
            }
        )
        for start in range(0, len(creates), 500):
            replies = await admin.connection.request_batch(creates[start : start + 500])
            assert not [reply for reply in replies if isinstance(reply, Exception)]
        await london.object.create("depots/x", data={"type": "rider"})  # not readable
    minted = CliRunner().invoke(app, example_token_command(), env={"HIVECTL_AUTH_SECRET": SECRET})
    assert minted.exit_code == 0, minted.output
    env = {
        **os.environ,
        "TOKEN": minted.stdout.strip(),
        "HIVECTL_CLIENT_URL": server.ws_url,
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        python_example(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "connected"
    assert lines[-1] == str(riders + 1)  # every rider, johndoe-123 included, on return
