"""`hivectl config`: write a starter file, show the effective settings, check a file.

`show` answers "why is it listening on 0.0.0.0?": it prints what `load_settings` decided,
and with ``--sources`` which layer each value came from, using the same function every
other command uses. Secrets are always shown as ``"***"``.

`init` writes machine-generated TOML (tomli-w writes no comments, so the file starts with
a short header and `config.example.toml` documents every key). It never puts a secret in
the config: it generates ``hivectl.secret`` (mode 0600) beside it and points
``[auth].secret_file`` at it, so the config itself can be shared or committed. Paths in the
starter are written as given, beside the config: a relative path in a config is read from
the working directory, like the config path given to ``init``, so ``hivectl config init``
then ``hivectl serve`` in one directory writes and reads ``hivectl.secret``, while
``hivectl config init /etc/hivectl/config.toml`` writes absolute paths. A folder it has to
create is named.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    config_path,
    err_console,
    error,
    fail,
    settings_from,
    warn,
)
from hivectl.core.settings import CONFIG_ENV_VAR, SettingsError, Source, load_settings

app = typer.Typer(
    help="Write, show and check configuration files.",
    no_args_is_help=True,
    epilog="Precedence, lowest first: defaults < config file < HIVECTL_* environment < flags.",
)

STARTER_KEYS = (
    "server.host",
    "server.port",
    "server.shutdown_timeout",
    "auth.algorithm",
    "auth.secret_file",
    "storage.backend",
    "storage.path",
    "log.level",
    "log.format",
    "client.url",
)
"""The keys a first config shows; every other key keeps its default (see `config show`)."""

STARTER_HEADER = """\
# hivectl configuration, written by `hivectl config init`.
# Precedence, lowest first: defaults < this file < HIVECTL_* environment < flags.
# Keys not listed keep their defaults: `hivectl config show` prints every key,
# `hivectl config check` validates this file. The signing secret is in secret_file
# (mode 0600), never in this file.

"""


@app.command(
    epilog="Examples:\n\n  hivectl config init\n\n  hivectl config init /etc/hivectl/config.toml"
)
def init(
    path: Path = typer.Argument(Path("hivectl.toml"), help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
) -> None:
    """Write a starter config and a fresh signing secret beside it (hivectl.secret, 0600).

    An existing secret file is kept, even with --force: tokens minted with it stay valid.
    """
    import tomli_w

    from hivectl.core.keyfiles import SECRET_FILE_NAME, create_secret_file
    from hivectl.core.settings import Settings, settings_as_dict

    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it", EXIT_USAGE)
    directory = path.parent
    missing = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        secret_path = directory / SECRET_FILE_NAME
        created = create_secret_file(secret_path)
        values = settings_as_dict(Settings())
        values["auth"]["secret_file"] = str(secret_path)
        values["storage"]["path"] = str(directory / "hivectl.db")
        starter: dict[str, dict[str, Any]] = {}
        for key in STARTER_KEYS:
            table, _, name = key.partition(".")
            starter.setdefault(table, {})[name] = values[table][name]
        path.write_text(STARTER_HEADER + tomli_w.dumps(starter), encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc}", EXIT_FAILURE)
    for folder in reversed(missing):
        err_console.print(f"created directory {folder}", highlight=False, markup=False)
    secret_note = "generated" if created else "kept the existing"
    err_console.print(
        f"wrote {path}; {secret_note} secret {secret_path} (mode 0600)",
        highlight=False,
        markup=False,
    )
    flag = "" if path == Path("hivectl.toml") else f" -c {path}"
    err_console.print(
        f"next:\n  hivectl config check{flag}\n  hivectl serve{flag}\n"
        f"  hivectl token mint{flag} --sub me --per 'london:*=CRUD'",
        highlight=False,
        markup=False,
    )


@app.command(
    epilog="Examples:\n\n  hivectl config show --sources\n\n"
    "  HIVECTL_SERVER_PORT=9000 hivectl config show --sources --set log.level=debug"
)
def show(
    config: Path | None = CONFIG_OPTION,
    sources: bool = typer.Option(
        False, "--sources", help="Say where each value came from, as a trailing comment."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Act as if a flag set KEY (e.g. server.port=9000); VALUE is read as TOML when "
        "it parses, else as a string. Repeatable.",
    ),
) -> None:
    """Print the effective settings as TOML, secrets redacted."""
    from hivectl.core.keyfiles import with_generated_secret
    from hivectl.core.settings import settings_as_dict

    flags = dict(_parse_set(item) for item in set_)
    loaded = settings_from(config, flags, {key: f"--set {key}" for key in flags})
    settings, generated = with_generated_secret(loaded.settings, create=False)
    notes = {key: _source_note(source, label) for key, (source, label) in loaded.sources.items()}
    if generated is not None:
        notes["auth.secret_file"] = "generated by hivectl serve (no key configured)"
    typer.echo(render_toml(settings_as_dict(settings), notes if sources else None), nl=False)


def _parse_set(item: str) -> tuple[str, object]:
    key, equals, text = item.partition("=")
    if not equals or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
    try:
        value: object = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def _source_note(source: Source, label: str) -> str:
    if source is Source.DEFAULT:
        return "default"
    kind = {Source.FILE: "file", Source.ENV: "env", Source.OVERRIDE: "flag"}[source]
    return f"from {kind} {label}"


def render_toml(values: Mapping[str, Mapping[str, Any]], notes: Mapping[str, str] | None) -> str:
    """`values` as TOML, table by table; with `notes`, each key's line ends with ``# <note>``.

    tomli-w writes one ``key = value`` line per key at the start of a line (lists, lists of
    tables included, open with ``key = [`` and continue indented), and a comment after a
    value or after the opening bracket of a multi-line array is valid TOML.
    """
    import tomli_w

    chunks = []
    for table, body in values.items():
        lines = tomli_w.dumps({table: dict(body)}).splitlines()
        if notes is not None:
            lines = _annotate(table, lines, notes)
        chunks.append("\n".join(lines) + "\n")
    return "\n".join(chunks)


def _annotate(table: str, lines: list[str], notes: Mapping[str, str]) -> list[str]:
    annotated = []
    for line in lines:
        note = None
        if " = " in line and not line.startswith((" ", "[")):
            note = notes.get(f"{table}.{line.split(' = ', 1)[0]}")
        annotated.append(f"{line}  # {note}" if note else line)
    return annotated


@app.command(
    epilog="Examples:\n\n  hivectl config check\n\n"
    "  hivectl config check -c /etc/hivectl/config.toml\n\n"
    "  hivectl config check --json | jq .problems"
)
def check(
    config: Path | None = CONFIG_OPTION,
    strict: bool = typer.Option(
        True,
        "--strict/--lenient",
        help="Treat unknown keys as errors (default): a misspelt key would silently keep its "
        "default. --lenient only warns, as serve does.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the verdict as JSON on stdout: ok, config_file, problems, warnings, notes.",
    ),
) -> None:
    """Validate the config and its key files; exit 2 naming each bad key and why."""
    verdict = check_verdict(config, strict=strict)
    if as_json:
        typer.echo(json.dumps(verdict, indent=2))
    else:
        for problem in verdict["problems"]:
            error(problem)
        for warning in verdict["warnings"]:
            warn(warning)
        for note in verdict["notes"]:
            err_console.print(f"note: {note}", highlight=False, markup=False)
    if verdict["problems"]:
        raise typer.Exit(EXIT_USAGE)
    if not as_json:
        where = verdict["config_file"]
        typer.echo(f"{where}: ok" if where is not None else "defaults: ok (no config file)")


def check_verdict(config: Path | None, *, strict: bool) -> dict[str, Any]:
    """What `config check` finds: problems (exit 2), warnings and notes, each one line."""
    from hivectl.core.keyfiles import (
        generated_secret_path,
        needs_generated_secret,
        signing_key,
        with_generated_secret,
    )
    from hivectl.core.tokens import short_secret
    from server.io.auth import keyring_from_settings

    path = config_path(config)
    named = path or (Path(os.environ[CONFIG_ENV_VAR]) if os.environ.get(CONFIG_ENV_VAR) else None)
    verdict: dict[str, Any] = {
        "ok": False,
        "config_file": None if named is None else str(named),
        "problems": [],
        "warnings": [],
        "notes": [],
    }
    try:
        loaded = load_settings(config_file=path, env=os.environ, strict=strict)
    except SettingsError as exc:
        verdict["problems"] = exc.problems
        return verdict
    verdict["warnings"] = list(loaded.warnings)
    settings, _ = with_generated_secret(loaded.settings, create=False)
    auth = settings.auth
    if needs_generated_secret(auth):
        verdict["notes"].append(
            "no signing key configured; hivectl serve will generate "
            f"{generated_secret_path(settings)}"
        )
    else:
        try:
            ring = keyring_from_settings(auth)
            if auth.private_key_file:
                signing_key(auth)
        except ValueError as exc:
            verdict["problems"].append(f"[auth]: {exc}")
            return verdict
        for key in ring.keys:
            too_short = short_secret(key)
            if too_short is not None:
                verdict["warnings"].append(f"[auth]: {too_short}; token mint refuses it")
    verdict["ok"] = True
    return verdict
