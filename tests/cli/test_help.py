"""Every command's help and flags, walked from the Typer app: what `--help` shows is what
the source says, and every duration flag reads durations the same way."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from hivectl.cli import app
from hivectl.cli.common import duration_flag
from tests.cli.conftest import run_cli

DURATION_NAMES = re.compile(r"timeout|interval|duration|deadline|drain|ramp|ttl")


def commands() -> Iterator[tuple[list[str], typer.main.click.Command]]:  # type: ignore[name-defined]
    """(path, command) for every command and group of the app."""
    root = typer.main.get_command(app)
    stack = [([], root)]
    while stack:
        path, command = stack.pop()
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            stack.append(([*path, name], sub))


COMMANDS = [(path, command) for path, command in commands() if path]


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_help_shows_every_bracketed_word_of_the_source(path: list[str], command: object) -> None:
    """Rich reads ``[client]`` as a style tag and drops it unless escaped (``\\[client]``)."""
    shown = " ".join(CliRunner().invoke(app, [*path, "--help"], terminal_width=300).output.split())
    texts = [getattr(command, "help", None) or ""]
    texts += [getattr(param, "help", None) or "" for param in getattr(command, "params", [])]
    for text in texts:
        for word in re.findall(r"\[[a-z_.]+\]", text.replace("\\[", "[")):
            assert word in shown, f"hivectl {' '.join(path)} --help lost {word}"


def duration_options() -> list[tuple[list[str], str, object]]:
    found = []
    for path, command in COMMANDS:
        for param in getattr(command, "params", []):
            names = [name for name in param.opts if name.startswith("--")]
            if names and DURATION_NAMES.search(names[0]) and path != ["serve"]:
                found.append((path, names[0], param))
    return found


def test_the_duration_flags_are_found() -> None:
    found = {(" ".join(path), flag) for path, flag, _ in duration_options()}
    assert {("presence explain", "--timeout"), ("watch realm", "--timeout")} <= found
    assert {
        ("health", "--timeout"),
        ("token mint", "--ttl"),
        ("simulate riders", "--ramp-up"),
    } <= found
    assert len(found) == 26  # realm, object and admin commands take --timeout too


@pytest.mark.parametrize(
    ("path", "flag", "param"), duration_options(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_duration_flag_is_read_by_the_one_parser(
    path: list[str], flag: str, param: object
) -> None:
    """`duration_flag` is the parser of every flag shown as DURATION."""
    assert param.metavar == "DURATION", f"hivectl {' '.join(path)} {flag}"  # type: ignore[attr-defined]


def test_the_duration_parser() -> None:
    assert duration_flag("1h30m") == 5400.0
    assert duration_flag("250ms") == 0.25
    assert duration_flag("45") == 45.0
    assert duration_flag(2.5) == 2.5  # a default Click converted already
    for bad in ("-1", "-5s", "soon", "1h-30m"):
        with pytest.raises(typer.BadParameter, match="expected a duration"):
            duration_flag(bad)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("presence", "count", "london", "--timeout", "-1"), "--timeout"),
        (("presence", "explain", "london", "x", "--timeout", "10"), None),
        (("watch", "realm", "london", "--timeout", "-30s"), "--timeout"),
        (("health", "--timeout", "-1s"), "--timeout"),
        (("token", "mint", "--sub", "x", "--ttl", "-1h"), "--ttl"),
        (("serve", "--shutdown-timeout", "-1s"), "--shutdown-timeout"),
    ],
)
def test_a_negative_duration_is_a_usage_error_naming_the_flag(
    tmp_path: object, args: tuple[str, ...], flag: str | None
) -> None:
    if flag is None:  # a bare number is seconds, as everywhere: this one only fails to connect
        result = run_cli(*args, "--url", "ws://127.0.0.1:9/ws", "--token", "t", cwd=tmp_path)  # type: ignore[arg-type]
        assert result.returncode == 1, result.stderr
        return
    result = run_cli(*args, cwd=tmp_path)  # type: ignore[arg-type]
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and flag in line
