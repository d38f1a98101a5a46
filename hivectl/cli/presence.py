"""`hivectl presence`: ask a running server why an object is online, and how many are.

Both commands use the ``pre`` system query (protocol.md §6.5) through the client library,
so they show what the server believes right now: which providers (devices, gateways) hold
an object online, with the token ``sub``/``jti`` that identifies each, and the presence
ledger (when it came, was last seen, last went and why). That is the answer to "why does
this rider show as offline?" without reading logs.

The URL and token come as for every client-side command (`hivectl.cli.remote`); a minted
token has read rights only (``*:*=R``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hivectl.cli.common import CA_FILE_OPTION, CONFIG_OPTION, SECRET_FILE_OPTION
from hivectl.cli.remote import (
    JSON_OPTION,
    TIMEOUT_OPTION,
    TOKEN_OPTION,
    URL_OPTION,
    remote,
    run_client,
)
from hivectl.watch.state import STATUS_NAMES

if TYPE_CHECKING:
    from hivectl.client import HivekitClient

T = TypeVar("T")

READ_EVERYTHING = {"*": {"*": "R"}}

app = typer.Typer(help="Ask a running server about presence.", no_args_is_help=True)

_LEDGER = (
    ("connectedSince", "connected since"),
    ("lastSeen", "last seen"),
    ("lastDisconnectedAt", "last disconnected at"),
    ("lastReason", "last reason"),
    ("graceUntil", "grace until"),
)


@app.command(
    epilog="Examples:\n\n  hivectl presence explain london riders/jo\n\n"
    "  hivectl presence explain london riders/jo --json"
)
def explain(
    realm: str = typer.Argument(..., help="Realm id."),
    object_id: str = typer.Argument(..., metavar="ID", help="Object id (exact, not a pattern)."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    json_output: bool = JSON_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """Why an object is connected or not: its providers and its presence ledger."""
    result = _ask(
        config,
        url,
        token,
        secret_file,
        ca_file,
        timeout,
        lambda c: c.system.presence(realm, object_id),
    )
    if json_output:
        _print_json(explanation_json(realm, object_id, result))
        return
    console = Console()
    status = STATUS_NAMES.get(result.get("cst", ""), "disconnected")
    console.print(Text.assemble((f"{realm} / {object_id}", "bold"), ": ", status))
    providers = result.get("providers") or []
    if providers:
        table = Table("sub", "jti", "node", "since", title="providers")
        for provider in providers:
            table.add_row(
                *(Text(str(provider.get(key, "-"))) for key in ("sub", "jti", "node", "since"))
            )
        console.print(table)
    else:
        console.print("no provider holds it")
    for key, label in _LEDGER:
        if key in result:
            console.print(Text.assemble(f"{label:<21}", str(result[key])))


@app.command(
    epilog="Examples:\n\n  hivectl presence count london\n\n"
    "  hivectl presence count london 'riders/*' --json"
)
def count(
    realm: str = typer.Argument(..., help="Realm id."),
    pattern: str = typer.Argument("*", help="Object id pattern (default: every object)."),
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    json_output: bool = JSON_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """How many objects matching PATTERN are connected and disconnected."""
    result = _ask(
        config,
        url,
        token,
        secret_file,
        ca_file,
        timeout,
        lambda c: c.system.presence_count(realm, pattern),
    )
    if json_output:
        _print_json(result)
        return
    table = Table("realm", "pattern", "connected", "disconnected")
    table.add_row(Text(realm), Text(pattern), str(result["connected"]), str(result["disconnected"]))
    Console().print(table)


def explanation_json(realm: str, object_id: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The ``explain --json`` document in the CLI's JSON vocabulary (as ``watch --json``):
    ``realm``, ``id``, ``status`` (``connected``/``disconnected``, not the wire's ``cst``
    ``con``/``dis``), then the server's ``providers`` and ledger (``connectedSince``,
    ``lastSeen``, ``lastDisconnectedAt``, ``lastReason``, ``graceUntil``) as it gives them."""
    rest = {key: value for key, value in answer.items() if key != "cst"}
    status = STATUS_NAMES.get(answer.get("cst", ""), "disconnected")
    return {"realm": realm, "id": object_id, "status": status, **rest}


def _print_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


def _ask(
    config: Path | None,
    url: str | None,
    token: str | None,
    secret_file: Path | None,
    ca_file: Path | None,
    timeout: float,
    query: Callable[[HivekitClient], Awaitable[T]],
) -> T:
    target = remote(config, url, token, READ_EVERYTHING, secret_file=secret_file, ca_file=ca_file)
    return run_client(target, query, timeout)
