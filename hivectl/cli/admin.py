"""`hivectl connections list`, `hivectl disconnect`, `hivectl token revoke` / `revocations`.

Operator commands over the ``adm`` requests (README, "Operating"): each parses its flags
into one request (`connections_options`, `disconnect_options`, `revoke_options`, pure),
sends it with `call` and renders the answer. They connect like `hivectl presence`: the
URL from ``--url`` or ``[client] url``; the token from ``--token`` (``$HIVECTL_TOKEN``),
``[client] token``/``token_file``, else one minted on the spot from the server's own
``[auth]`` key with the admin grant and a short lifetime, so an operator on the server's
machine needs no flag at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    duration_flag,
    fail,
    settings_from,
    warn,
)
from hivectl.core.settings import Settings

ADMIN_SUBJECT = "hivectl-admin"
MINTED_TTL = 300.0
"""Lifetime of an admin token minted for one command: short, since it may do anything."""

URL_OPTION = typer.Option(None, "--url", help="Server WebSocket URL (config client.url).")
TOKEN_OPTION = typer.Option(
    None,
    "--token",
    envvar="HIVECTL_TOKEN",
    help="Admin token (adm claim) to connect with (default: \\[client] token or token_file,"
    " else one minted with the admin grant from \\[auth]).",
)
JSON_OPTION = typer.Option(False, "--json", help="Print the server's answer as JSON.")
TIMEOUT_OPTION = typer.Option(
    "10s",
    parser=duration_flag,
    metavar="DURATION",
    help="How long to wait for the server: 10s, 1m.",
)

connections_app = typer.Typer(help="See the server's live connections.", no_args_is_help=True)


@connections_app.command(
    "list",
    epilog="Examples:\n\n  hivectl connections list\n\n"
    "  hivectl connections list --realm london --sub 'rider-*' --json",
)
def list_connections(
    realm: str | None = typer.Option(
        None, "--realm", help="Only connections whose token names this realm (per or dpv)."
    ),
    sub: str | None = typer.Option(
        None, "--sub", help="Only tokens whose sub matches (id pattern)."
    ),
    node: str | None = typer.Option(None, "--node", help="Only connections held by this node."),
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Every live connection (of every node in a cluster), sorted by sub, node and age."""
    result = call(config, url, token, timeout, "con", connections_options(realm, sub, node))
    if json_output:
        print_json(result)
    else:
        table = new_table(
            "id", "node", "remote", "sub", "jti", "dpv", "since", "in", "out", "queued"
        )
        for entry in result["connections"]:
            dpv = entry.get("dpv")
            table.add_row(
                *(Text(show(entry.get(key))) for key in ("id", "node", "remote", "sub", "jti")),
                Text("-" if dpv is None else json.dumps(dpv, separators=(",", ":"))),
                Text(show(entry.get("since"))),
                *(str(entry.get(key, 0)) for key in ("messagesIn", "messagesOut", "queued")),
            )
        Console().print(table)
        typer.echo(f"{len(result['connections'])} connections")
    _warn_unanswered(result)


def disconnect(
    conn: str | None = typer.Option(None, "--conn", help="The connection id (connections list)."),
    sub: str | None = typer.Option(None, "--sub", help="Every connection of this token sub."),
    jti: str | None = typer.Option(None, "--jti", help="Every connection of this token id."),
    reason: str | None = typer.Option(
        None, "--reason", help="Said in the close frame (4003 kicked: REASON)."
    ),
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Close connections (close code 4003); their objects go disconnected, reason kicked."""
    options = disconnect_options(conn, sub, jti, reason)
    result = call(config, url, token, timeout, "dis", options)
    if json_output:
        print_json(result)
    else:
        closed = result["disconnected"]
        for entry in closed:
            typer.echo(f"disconnected {entry['id']} (sub {show(entry.get('sub'))})")
        typer.echo(f"{len(closed)} connections disconnected")
    _warn_unanswered(result)


def revoke(
    jti: str | None = typer.Option(None, "--jti", help="Revoke the token with this jti."),
    sub: str | None = typer.Option(None, "--sub", help="Revoke every token of this sub..."),
    issued_before: str | None = typer.Option(
        None,
        "--issued-before",
        metavar="TIME",
        help="...issued before TIME (ISO-8601; default: now). Needs --sub.",
    ),
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Refuse tokens from now on and close the connections using them."""
    options = revoke_options(jti, sub, issued_before)
    result = call(config, url, token, timeout, "rev", options)
    if json_output:
        print_json(result)
    else:
        entry = result["revocation"]
        typer.echo(f"revoked {_target(entry)}; forgotten at {show(entry.get('expires'))}")


def revocations(
    json_output: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
    token: str | None = TOKEN_OPTION,
    timeout: float = TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """The revocations in force, oldest first (until the tokens they cover expire)."""
    result = call(config, url, token, timeout, "rvl", {})
    if json_output:
        print_json(result)
        return
    table = new_table("revoked", "issued before", "revoked at", "forgotten at")
    for entry in result["revocations"]:
        table.add_row(
            Text(_target(entry)),
            Text(show(entry.get("issuedBefore"))),
            Text(show(entry.get("at"))),
            Text(show(entry.get("expires"), none="never")),
        )
    Console().print(table)


# -- flags -> requests (pure) ---------------------------------------------------


def connections_options(realm: str | None, sub: str | None, node: str | None) -> dict[str, Any]:
    return _present(realm=realm, sub=sub, node=node)


def disconnect_options(
    conn: str | None, sub: str | None, jti: str | None, reason: str | None
) -> dict[str, Any]:
    if sum(value is not None for value in (conn, sub, jti)) != 1:
        fail("give exactly one of --conn, --sub, --jti", EXIT_USAGE)
    return _present(conn=conn, sub=sub, jti=jti, reason=reason)


def revoke_options(jti: str | None, sub: str | None, issued_before: str | None) -> dict[str, Any]:
    if (jti is None) == (sub is None):
        fail("give exactly one of --jti, --sub", EXIT_USAGE)
    if issued_before is not None and sub is None:
        fail("--issued-before needs --sub", EXIT_USAGE)
    before = None if issued_before is None else parse_time(issued_before)
    return _present(jti=jti, sub=sub, issuedBefore=before)


def parse_time(text: str) -> float:
    """An ISO-8601 time as seconds since the epoch; without a zone, local time."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--issued-before: not an ISO-8601 time: {text!r}", EXIT_USAGE)
    return parsed.timestamp()


def _present(**options: Any) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


# -- the request ----------------------------------------------------------------


def call(
    config: Path | None,
    url: str | None,
    token: str | None,
    timeout: float,
    act: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Connect, send one ``adm`` request, disconnect; a failure is an error line, exit 1."""
    from websockets.exceptions import WebSocketException

    from hivectl.client import AuthenticationError, HivekitClient, HivekitError

    settings = settings_from(config, {}).settings
    target = url or settings.client.url
    client = HivekitClient(
        target, token or admin_token(settings), reconnect=False, request_timeout=timeout
    )

    async def run() -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            await client.connect()
        try:
            return await client.admin.request(act, **options)
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


def admin_token(settings: Settings) -> str:
    """The configured client token, else one minted with the admin grant from the auth key."""
    from hivectl.cli.credentials import configured_token, signing_key_or_exit
    from hivectl.core.tokens import mint_token

    configured = configured_token(settings)
    if configured is not None:
        return configured
    key = signing_key_or_exit(settings, "no token: pass --token or set HIVECTL_TOKEN; minting one")
    return mint_token({"sub": ADMIN_SUBJECT, "adm": True}, key, now=time.time(), ttl=MINTED_TTL)


# -- rendering ------------------------------------------------------------------
# Shared with `hivectl.cli.cluster`.


def new_table(*headers: str) -> Table:
    """Cells wrap rather than end in an ellipsis: an id cut short cannot be used."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _warn_unanswered(result: dict[str, Any]) -> None:
    unanswered = result.get("unanswered") or []
    if unanswered:
        warn(f"no answer from nodes: {', '.join(unanswered)} (their part is missing)")


def _target(entry: dict[str, Any]) -> str:
    return f"jti {entry['jti']}" if "jti" in entry else f"sub {entry.get('sub')}"


def show(value: Any, none: str = "-") -> str:
    return none if value is None else str(value)


def print_json(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
