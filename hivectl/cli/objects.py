"""`hivectl object`: list, read, delete, export and import a realm's objects.

Thin: options -> `hivectl.transfer.operations`, which speaks the protocol through
`hivectl.client` and paces every bulk step under the server's ``[limits]`` as read from
the same config (`hivectl.cli.remote`). Lists are Rich tables, ``--json`` for scripts;
export writes JSON lines on stdout (`hivectl.transfer.lines` says what a line holds);
progress and reports go to stderr.

Exit codes: 0 done; 1 the server cannot be reached or refused, some objects failed, an
import met existing objects under ``--on-conflict fail``, or a deletion was not confirmed;
2 bad options or a bad import file (nothing sent).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hivectl.cli.bulk import confirm_or_exit, progress, report_failures
from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    SECRET_FILE_OPTION,
    err_console,
    error,
    fail,
)
from hivectl.cli.remote import (
    BULK_TTL,
    JSON_OPTION,
    TIMEOUT_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    remote,
    run_client,
)

if TYPE_CHECKING:
    from hivectl.client import HivekitClient

app = typer.Typer(help="List, read, delete, export and import objects.", no_args_is_help=True)

PATTERNS_ARGUMENT = typer.Argument(
    None, metavar="[PATTERN]...", help="Id patterns ('*' matches anything, '/' too); default '*'."
)


@app.command(
    "list",
    epilog="Examples:\n\n  hivectl object list london\n\n"
    "  hivectl object list london 'riders/*' --where 'type=\"rider\"' --json",
)
def list_command(
    realm: str = typer.Argument(..., help="Realm id."),
    patterns: list[str] | None = PATTERNS_ARGUMENT,
    where: list[str] | None = typer.Option(
        None, "--where", help="Attribute filter (protocol lis atr), repeatable: all must hold."
    ),
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Objects whose id matches a pattern: id, label, connection status."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from hivectl.client.objects import STATUS_NAMES
    from hivectl.transfer.operations import list_objects

    target = remote(config, url, token, {realm: {"*": "R"}}, secret_file=secret_file)
    listed = run_client(
        target, lambda c: list_objects(c, realm, patterns or ["*"], where or ()), timeout
    )
    if json_output:
        typer.echo(json.dumps(list(listed.values()), ensure_ascii=False))
        return
    table = Table("id", "label", "status", caption=f"{len(listed)} objects in {realm}")
    for entry in listed.values():
        status = STATUS_NAMES.get(entry.get("cst", ""), str(entry.get("cst", "")))
        table.add_row(Text(entry["id"]), Text(entry.get("lab", "")), status)
    Console().print(table)


@app.command(
    epilog="Examples:\n\n  hivectl object get london riders/jo\n\n"
    "  hivectl object get london riders/jo --json | jq .loc"
)
def get(
    realm: str = typer.Argument(..., help="Realm id."),
    object_id: str = typer.Argument(..., metavar="ID", help="Object id (exact, not a pattern)."),
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """One object, every field as the server keeps it."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    target = remote(config, url, token, {realm: {"*": "R"}}, secret_file=secret_file)

    async def read(client: HivekitClient) -> dict[str, Any]:
        from hivectl.core.wire import request

        result: dict[str, Any] = await client.connection.request(
            request("obj", "rea", rea=realm, id=object_id)
        )
        return result

    obj = run_client(target, read, timeout)
    if json_output:
        typer.echo(json.dumps(obj, ensure_ascii=False))
        return
    table = Table("field", "value", show_header=False)
    for key, value in obj.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        table.add_row(key, Text(shown))
    Console().print(table)


@app.command(
    epilog="Examples:\n\n  hivectl object delete london riders/jo\n\n"
    "  hivectl object delete london 'test-*' --yes"
)
def delete(
    realm: str = typer.Argument(..., help="Realm id."),
    patterns: list[str] = typer.Argument(..., metavar="PATTERN...", help="Id patterns."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Delete the objects whose id matches a pattern; asks first when more than one."""
    from hivectl.transfer.operations import delete_objects, list_objects

    per = {realm: {"*": "RD"}}
    target = remote(config, url, token, per, secret_file=secret_file, ttl=BULK_TTL)
    ids = list(run_client(target, lambda c: list_objects(c, realm, patterns), timeout))
    if not ids:
        fail(f"no object in {realm} matches {' '.join(patterns)}", EXIT_FAILURE)
    if len(ids) > 1:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        confirm_or_exit(f"Delete {len(ids)} objects from {realm} ({shown})?", yes)
    with progress(f"deleting from {realm}") as advance:
        outcome = run_client(
            target, lambda c: delete_objects(c, realm, ids, target.budget(), advance), timeout
        )
    err_console.print(f"deleted {len(outcome.done)} objects from {realm}", highlight=False)
    report_failures("were not deleted", outcome.failed, len(ids))


@app.command(
    epilog="Examples:\n\n  hivectl object export london > london.jsonl\n\n"
    "  hivectl object export london 'riders/*' > riders.jsonl"
)
def export(
    realm: str = typer.Argument(..., help="Realm id."),
    patterns: list[str] | None = PATTERNS_ARGUMENT,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Every object (matching the patterns) as JSON lines on stdout, in creation order:
    id, lab, loc, dat, tds, what `object import` takes back."""
    from hivectl.transfer.lines import export_line
    from hivectl.transfer.operations import export_objects

    per = {realm: {"*": "R"}}
    target = remote(config, url, token, per, secret_file=secret_file, ttl=BULK_TTL)
    with progress(f"exporting {realm}") as advance:
        exported = run_client(
            target,
            lambda c: export_objects(c, realm, patterns or ["*"], target.budget(), advance),
            timeout,
        )
    out = sys.stdout.buffer
    for obj in exported.objects:
        out.write(export_line(obj))
    out.flush()
    err_console.print(f"exported {len(exported.objects)} objects from {realm}", highlight=False)
    if exported.vanished:
        err_console.print(
            f"{len(exported.vanished)} listed objects were deleted before they were read",
            highlight=False,
        )
    total = len(exported.objects) + len(exported.failed)
    report_failures("could not be read", exported.failed, total)


@app.command(
    "import",
    epilog="Examples:\n\n  hivectl object import london london.jsonl\n\n"
    "  hivectl object import london-copy london.jsonl --on-conflict update",
)
def import_command(
    realm: str = typer.Argument(..., help="Realm to import into (created when missing)."),
    file: str = typer.Argument(
        ..., metavar="FILE", help="JSON lines of `object export`; - reads stdin."
    ),
    on_conflict: str = typer.Option(
        "fail",
        "--on-conflict",
        help="When an id exists already: fail (write nothing), skip it, or update it"
        " to the file's version.",
    ),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Create the file's objects in REALM, in file order, paced under the server's limits."""
    from hivectl.transfer.lines import parse_lines
    from hivectl.transfer.operations import CONFLICT_POLICIES, import_objects

    policy = next((name for name in CONFLICT_POLICIES if name == on_conflict), None)
    if policy is None:
        fail(f"--on-conflict must be one of {', '.join(CONFLICT_POLICIES)}", EXIT_USAGE)
    parsed = parse_lines(_read_lines(file))
    if parsed.problems:
        for problem in parsed.problems[:20]:
            error(f"{file}: {problem}")
        fail(f"{file}: {len(parsed.problems)} bad lines; nothing was imported", EXIT_USAGE)
    per = {realm: {"*": "CRU"}}
    target = remote(config, url, token, per, secret_file=secret_file, ttl=BULK_TTL)
    with progress(f"importing into {realm}") as advance:
        imported = run_client(
            target,
            lambda c: import_objects(c, realm, parsed.objects, policy, target.budget(), advance),
            timeout,
        )
    if imported.realm_created:
        err_console.print(f"created realm {realm}", highlight=False)
    if imported.conflicts:
        shown = ", ".join(imported.conflicts[:5]) + (", ..." if len(imported.conflicts) > 5 else "")
        fail(
            f"{len(imported.conflicts)} objects exist already in {realm} ({shown}); nothing was"
            " imported: pass --on-conflict skip or update",
            EXIT_FAILURE,
        )
    err_console.print(
        f"imported into {realm}: {len(imported.created)} created, {len(imported.updated)}"
        f" updated, {len(imported.skipped)} skipped, {len(imported.failed)} failed",
        highlight=False,
    )
    report_failures(
        "failed (objects are created in file order: run again with --on-conflict skip to finish)",
        imported.failed,
        len(parsed.objects),
    )


def _read_lines(file: str) -> list[bytes]:
    if file == "-":
        return sys.stdin.buffer.read().splitlines()
    try:
        return Path(file).read_bytes().splitlines()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_USAGE)
