"""How a command reaches a running server: its URL, a token, and what a failure looks like.

Shared by the commands that talk to a server through `hivectl.client` (``presence``,
``realm``, ``object``). The URL is ``--url``, else ``[client] url``. The token is
``--token`` (or ``$HIVECTL_TOKEN``), else ``[client] token``/``token_file``, else one minted
on the spot from the server's own ``[auth]`` key (`hivectl.cli.credentials`) with only the
rights the command needs, so an operator on the server's machine needs no flag at all.

The connection is made with the same settings, so a bulk command also reads the server's
``[limits]`` from them and paces itself under them (`Remote.budget`), and a ``wss://``
server is verified against ``[client] ca_file`` when set (``--ca-file`` where offered).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from hivectl.cli.common import (
    EXIT_FAILURE,
    SECRET_FILE_LABELS,
    client_tls,
    duration_flag,
    fail,
    secret_file_flags,
    settings_from,
)
from hivectl.core.settings import Settings

if TYPE_CHECKING:
    from hivectl.client import HivekitClient
    from hivectl.core.pacing import Budget
    from hivectl.core.permissions import PerClaim

T = TypeVar("T")

CLI_SUBJECT = "hivectl-cli"
"""``sub`` of minted tokens: ``[[limits.rates]]`` may match it to let bulk commands go faster."""
QUERY_TTL = 300.0
"""Lifetime of a token minted for one query: long enough for any query, short if leaked."""
BULK_TTL = 3600.0
"""For bulk commands: the server closes a connection whose token expires (4001)."""

URL_OPTION = typer.Option(None, "--url", help="Server WebSocket URL (default: config client.url).")
TOKEN_OPTION = typer.Option(
    None,
    "--token",
    envvar="HIVECTL_TOKEN",
    help="Token to connect with (default: \\[client] token or token_file, else one minted"
    " from \\[auth] with the rights this command needs).",
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts.")
TIMEOUT_OPTION = typer.Option(
    "10s",
    parser=duration_flag,
    metavar="DURATION",
    help="How long to wait for the server's replies: 10s, 1m.",
)


@dataclass(frozen=True)
class Remote:
    """Where and as whom a command connects."""

    settings: Settings
    url: str
    token: str
    sub: str | None
    tls: ssl.SSLContext | None = None

    def budget(self) -> Budget:
        """How fast and in what frames this connection may send (`hivectl.core.pacing`)."""
        from hivectl.core.pacing import connection_budget

        return connection_budget(self.settings.limits, self.sub)


def remote(
    config: Path | None,
    url: str | None,
    token: str | None,
    per: PerClaim,
    *,
    secret_file: Path | None = None,
    ca_file: Path | None = None,
    ttl: float = QUERY_TTL,
) -> Remote:
    """Settings with the flags on top, and the token: the configured one, else one minted
    with `per` (exit 2 when there is no key to mint it with)."""
    from hivectl.cli.credentials import configured_token, signing_key_or_exit
    from hivectl.core.tokens import TokenError, decode_unverified, mint_token

    settings = settings_from(
        config,
        {
            "client.url": url,
            "client.token": token,
            "client.ca_file": str(ca_file) if ca_file else None,
            **secret_file_flags(secret_file),
        },
        {
            **SECRET_FILE_LABELS,
            "client.url": "--url",
            "client.token": "--token",
            "client.ca_file": "--ca-file",
        },
    ).settings
    tls = client_tls(settings.client.ca_file)
    configured = configured_token(settings)
    if configured is not None:
        try:
            sub = decode_unverified(configured)[1].get("sub")
        except TokenError:
            sub = None  # the server will say what is wrong with it
        return Remote(
            settings, settings.client.url, configured, sub if isinstance(sub, str) else None, tls
        )
    key = signing_key_or_exit(settings, "no token: pass --token or set HIVECTL_TOKEN; minting one")
    minted = mint_token({"sub": CLI_SUBJECT, "per": per}, key, now=time.time(), ttl=ttl)
    return Remote(settings, settings.client.url, minted, CLI_SUBJECT, tls)


def run_client(target: Remote, work: Callable[[HivekitClient], Awaitable[T]], timeout: float) -> T:
    """Connect, run `work`, disconnect; a failure becomes an error line and exit 1."""
    from websockets.exceptions import WebSocketException

    from hivectl.client import AuthenticationError, HivekitClient, HivekitError

    client = HivekitClient(
        target.url, target.token, reconnect=False, request_timeout=timeout, tls=target.tls
    )

    async def run() -> T:
        async with asyncio.timeout(timeout):
            await client.connect()
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        return asyncio.run(run())
    except AuthenticationError as exc:
        fail(f"{target.url}: the server refused the token: {exc.text}", EXIT_FAILURE)
    except HivekitError as exc:
        fail(exc.text, EXIT_FAILURE)
    except (OSError, WebSocketException, TimeoutError) as exc:
        fail(f"cannot reach {target.url}: {exc or type(exc).__name__}", EXIT_FAILURE)
