"""`hivectl realm`: list, create and delete realms on a running server.

Over the protocol (``typ:"rea"``, protocol.md §6.1) through `hivectl.client`; the URL and
token come as for every client-side command (`hivectl.cli.remote`). ``list`` counts each
realm's objects with the ``pre`` count query (§6.5), all in one frame. ``delete`` removes
the realm with every object in it, so it says how many and asks first unless ``--yes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hivectl.cli.bulk import confirm_or_exit
from hivectl.cli.common import CONFIG_OPTION, EXIT_USAGE, SECRET_FILE_OPTION, err_console, fail
from hivectl.cli.remote import (
    JSON_OPTION,
    TIMEOUT_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    remote,
    run_client,
)

if TYPE_CHECKING:
    from hivectl.client import HivekitClient

app = typer.Typer(help="List, create and delete realms.", no_args_is_help=True)


@app.command("list", epilog="Examples:\n\n  hivectl realm list\n\n  hivectl realm list --json")
def list_command(
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Every realm the token may see, with its label and how many objects are connected."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    target = remote(config, url, token, {"*": {"*": "R"}}, secret_file=secret_file)
    realms = run_client(target, _realms_with_counts, timeout)
    if json_output:
        typer.echo(json.dumps(realms, ensure_ascii=False))
        return
    table = Table("realm", "label", "objects", "connected", caption=f"{len(realms)} realms")
    for realm in realms:
        objects, connected = realm["objects"], realm["connected"]
        table.add_row(
            Text(realm["id"]),
            Text(realm["lab"]),
            "-" if objects is None else str(objects),
            "-" if connected is None else str(connected),
        )
    Console().print(table)


async def _realms_with_counts(client: HivekitClient) -> list[dict[str, Any]]:
    """``lis``, then one ``pre`` count per realm in one frame (None where it is refused)."""
    from hivectl.client import HivekitError
    from hivectl.core.wire import presence_filter, request

    listed = await client.realm.list()
    counts = await client.connection.request_batch(
        [request("sys", "pre", rea=realm_id, dat=presence_filter("*")) for realm_id in listed]
    )
    realms = []
    for (realm_id, entry), count in zip(listed.items(), counts, strict=True):
        known = not isinstance(count, HivekitError)
        realms.append(
            {
                "id": realm_id,
                "lab": entry.get("lab", ""),
                "objects": count["connected"] + count["disconnected"] if known else None,
                "connected": count["connected"] if known else None,
            }
        )
    return realms


@app.command(
    epilog="Examples:\n\n  hivectl realm create london\n\n"
    "  hivectl realm create london --label 'London' --data '{\"city\": \"London\"}'"
)
def create(
    realm: str = typer.Argument(..., help="Realm id."),
    label: str = typer.Option("", "--label", help="The realm's label."),
    data: str | None = typer.Option(None, "--data", help="The realm's data: a JSON object."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Create a realm (exit 1 if it exists)."""
    parsed = None
    if data is not None:
        try:
            parsed = json.loads(data)
        except json.JSONDecodeError as exc:
            fail(f"--data is not JSON: {exc}", EXIT_USAGE)
        if not isinstance(parsed, dict):
            fail("--data must be a JSON object", EXIT_USAGE)
    target = remote(config, url, token, {realm: {"*": "C"}}, secret_file=secret_file)
    run_client(target, lambda c: c.realm.create(realm, label, parsed), timeout)
    err_console.print(f"created realm {realm}", highlight=False)


@app.command(
    epilog="Examples:\n\n  hivectl realm delete test-realm\n\n"
    "  hivectl realm delete test-realm --yes"
)
def delete(
    realm: str = typer.Argument(..., help="Realm id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Delete a realm with every object in it (asks first, with the count)."""
    target = remote(config, url, token, {realm: {"*": "RD"}}, secret_file=secret_file)

    async def count(client: HivekitClient) -> int:
        await client.realm.get(realm)  # 404 "unknown realm" when there is none
        counted = await client.system.presence_count(realm)
        return counted["connected"] + counted["disconnected"]

    objects = run_client(target, count, timeout)
    confirm_or_exit(f"Delete realm {realm} and its {objects} objects?", yes)
    run_client(target, lambda c: c.realm.delete(realm), timeout)
    err_console.print(f"deleted realm {realm} ({objects} objects)", highlight=False)
