"""What every command shares: loading settings with flags as the top layer, exit codes,
error messages on stderr.

Exit codes are API (scripts and health checks read them): 0 ok, 1 runtime failure,
2 usage or configuration error, 3 a check failed (``token verify``, ``health``).
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from hivectl.core.settings import CONFIG_ENV_VAR, LoadedSettings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_INTERRUPTED = 130
"""Ctrl-C, after the report of what finished (`simulate`, `bench`)."""

DISCOVERED_CONFIG = Path("hivectl.toml")
"""Read when neither --config nor HIVECTL_CONFIG names a file: what `config init` writes."""

err_console = Console(stderr=True)
# On a terminal Rich wraps to its width; anywhere else (a pipe, a log collector, a test) a
# message stays one line, whatever its length, so it can be read and searched by lines.
err_console.soft_wrap = not err_console.is_terminal

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    help="TOML config file (default: $HIVECTL_CONFIG, else ./hivectl.toml if present).",
    dir_okay=False,
)

SECRET_FILE_OPTION = typer.Option(
    None,
    "--secret-file",
    help="File holding the HS256 secret (config auth.secret_file); or set $HIVECTL_AUTH_SECRET.",
    dir_okay=False,
)

CA_FILE_OPTION = typer.Option(
    None,
    "--ca-file",
    help="CA certificate (PEM) that signed a wss:// server's certificate (config"
    " client.ca_file); default: the system's trust store.",
    dir_okay=False,
)


def duration_flag(value: str | float) -> float:
    """Every duration flag's parser (``parser=duration_flag``): seconds from ``30s``,
    ``250ms``, ``1h30m`` or a bare number of seconds, the same forms as the config file;
    anything else, a negative included, is a usage error naming the flag."""
    from hivectl.core.settings import parse_duration

    if isinstance(value, float):  # a default Click has converted already
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def client_tls(ca_file: str) -> ssl.SSLContext | None:
    """The context that verifies a private CA's server, or None for the system's trust
    store; an unusable CA file is a usage error (exit 2) naming the file."""
    from hivectl.core.tls import TlsError, client_context

    if not ca_file:
        return None
    try:
        return client_context(ca_file)
    except TlsError as exc:
        fail(str(exc), EXIT_USAGE)


def error(message: str) -> None:
    """One ``error: ...`` line on stderr (escaped: messages name keys like ``[server].port``)."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def note(message: str) -> None:
    """A ``note: ...`` line on stderr: what the command decided for the user."""
    err_console.print(f"note: {escape(message)}", highlight=False)


def fail(message: str, code: int) -> NoReturn:
    error(message)
    raise typer.Exit(code)


def config_path(config: Path | None) -> Path | None:
    """The file given, else none when $HIVECTL_CONFIG names one (`load_settings` reads it),
    else ./hivectl.toml when it exists, so `config init` then `serve` needs no flag."""
    if config is None and not os.environ.get(CONFIG_ENV_VAR) and DISCOVERED_CONFIG.is_file():
        return DISCOVERED_CONFIG
    return config


def secret_file_flags(secret_file: Path | None) -> dict[str, object]:
    """``--secret-file`` as an override; like every flag it wins over $HIVECTL_AUTH_SECRET
    and the file's ``[auth] secret`` (`load_settings` keeps the higher layer's of the two)."""
    if secret_file is None:
        return {}
    return {"auth.secret_file": str(secret_file)}


SECRET_FILE_LABELS = {"auth.secret_file": "--secret-file"}


def settings_from(
    config: Path | None,
    flags: Mapping[str, object],
    labels: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> LoadedSettings:
    """Settings with the given flags (dotted key -> value, None = not given) on top; `labels`
    names each flag for `sources` and messages. Exits 2 listing every problem."""
    overrides = {key: value for key, value in flags.items() if value is not None}
    try:
        loaded = load_settings(
            config_file=config_path(config),
            env=os.environ,
            overrides=overrides,
            override_labels=labels or {},
            strict=strict,
        )
    except SettingsError as exc:
        for problem in exc.problems:
            error(problem)
        raise typer.Exit(EXIT_USAGE) from None
    for warning in loaded.warnings:
        warn(warning)
    return loaded


def read_token(token: str) -> str:
    """A token argument, or the token on stdin for ``-`` (keeps it out of `ps` and history)."""
    text = sys.stdin.read() if token == "-" else token
    return text.strip()
