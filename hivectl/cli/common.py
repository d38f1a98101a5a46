"""What every command shares: loading settings with flags as the top layer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import typer
from rich.console import Console

from hivectl.core.settings import LoadedSettings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3

err_console = Console(stderr=True)

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    help="TOML config file (default: $HIVECTL_CONFIG).",
    dir_okay=False,
)


def settings_from(config: Path | None, flags: Mapping[str, object]) -> LoadedSettings:
    """Settings with the given flags (None = not given) on top; exits 2 on a bad config."""
    overrides = {key: value for key, value in flags.items() if value is not None}
    try:
        loaded = load_settings(config_file=config, env=os.environ, overrides=overrides)
    except SettingsError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {problem}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for warning in loaded.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    return loaded
