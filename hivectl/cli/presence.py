"""`hivectl presence`: ask a running server why an object is online, and how many are.

Both commands use the ``pre`` system query (protocol.md §6.5) through the client library,
so they show what the server believes right now: which providers (devices, gateways) hold
an object online, with the token ``sub``/``jti`` that identifies each, and the presence
ledger (when it came, was last seen, last went and why). That is the answer to "why does
this rider show as offline?" without reading logs.

The token: ``--token`` (or ``$HIVECTL_TOKEN``), else ``[client] token``/``token_file``, else
one minted on the spot from the server's own ``[auth]`` key with read rights only
(``*:*=R``), so an operator on the server's machine needs no flag at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hivectl.cli.common import (
    CA_FILE_OPTION,
    CONFIG_OPTION,
    EXIT_FAILURE,
    client_tls,
    duration_flag,
    fail,
    settings_from,
)
from hivectl.core.settings import Settings
from hivectl.watch.state import STATUS_NAMES

if TYPE_CHECKING:
    from hivectl.client import HivekitClient

T = TypeVar("T")

CLI_SUBJECT = "hivectl-cli"
MINTED_TTL = 300.0
"""Lifetime of a token minted for one query: long enough for any query, short if leaked."""

app = typer.Typer(help="Ask a running server about presence.", no_args_is_help=True)

URL_OPTION = typer.Option(None, "--url", help="Server WebSocket URL (config client.url).")
TOKEN_OPTION = typer.Option(
    None,
    "--token",
    envvar="HIVECTL_TOKEN",
    help="Token to connect with (default: \\[client] token or token_file, else one minted"
    " with read rights from \\[auth]).",
)
JSON_OPTION = typer.Option(False, "--json", help="Print the server's answer as JSON.")
TIMEOUT_OPTION = typer.Option(
    "10s",
    parser=duration_flag,
    metavar="DURATION",
    help="How long to wait for the server: 10s, 1m.",
)

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
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """Why an object is connected or not: its providers and its presence ledger."""
    result = _ask(
        config, url, token, ca_file, timeout, lambda c: c.system.presence(realm, object_id)
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
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """How many objects matching PATTERN are connected and disconnected."""
    result = _ask(
        config, url, token, ca_file, timeout, lambda c: c.system.presence_count(realm, pattern)
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
    ca_file: Path | None,
    timeout: float,
    query: Callable[[HivekitClient], Awaitable[T]],
) -> T:
    """Connect, run one query, disconnect; a failure becomes an error line and exit 1."""
    from websockets.exceptions import WebSocketException

    from hivectl.client import AuthenticationError, HivekitClient, HivekitError

    settings = settings_from(
        config,
        {"client.ca_file": str(ca_file) if ca_file else None},
        {"client.ca_file": "--ca-file"},
    ).settings
    target = url or settings.client.url
    client = HivekitClient(
        target,
        token or _token(settings),
        reconnect=False,
        request_timeout=timeout,
        tls=client_tls(settings.client.ca_file),
    )

    async def run() -> T:
        async with asyncio.timeout(timeout):
            await client.connect()
        try:
            return await query(client)
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except AuthenticationError as exc:
        fail(f"{target}: the server refused the token: {exc.text}", EXIT_FAILURE)
    except HivekitError as exc:
        fail(exc.text, EXIT_FAILURE)
    except (OSError, WebSocketException, TimeoutError) as exc:
        fail(f"cannot reach {target}: {exc or type(exc).__name__}", EXIT_FAILURE)


def _token(settings: Settings) -> str:
    """The configured client token, else one minted with read rights from the auth key."""
    from hivectl.cli.credentials import configured_token, signing_key_or_exit
    from hivectl.core.permissions import per_claim_from_grants
    from hivectl.core.tokens import mint_token

    configured = configured_token(settings)
    if configured is not None:
        return configured
    key = signing_key_or_exit(settings, "no token: pass --token or set HIVECTL_TOKEN; minting one")
    claims = {"sub": CLI_SUBJECT, "per": per_claim_from_grants(["*:*=R"])}
    return mint_token(claims, key, now=time.time(), ttl=MINTED_TTL)
