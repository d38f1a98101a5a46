"""The README stays true: its commands, flags and config keys exist; CI runs its tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hivectl.cli import app
from hivectl.core.settings import setting_keys

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
