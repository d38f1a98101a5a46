"""`hivectl console`: open the web console in a browser, signed in.

It mints a short-lived token from the server's own key (as `watch` and `presence` do; read
rights only unless ``--admin``, which adds write rights and the admin grant the console's
Connections panel needs, and lives as briefly as `hivectl token mint --admin` by default) and
opens ``http(s)://HOST:PORT/console/#token=...``. The token is in the URL *fragment*:
browsers never send a fragment to the server, so it never reaches the server's logs or a
proxy's, and the page removes it from the address bar (and so from the history) as soon as
it has read it. ``--no-browser`` prints the link instead, for a server reached through an
SSH tunnel or a browser on another machine.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    fail,
    secret_file_flags,
    settings_from,
)
from hivectl.cli.remote import URL_OPTION
from hivectl.cli.token import TTL_OPTION, format_span, lifetime

CONSOLE_SUBJECT = "hivectl-console"
"""``sub`` of minted console tokens, as the server's logs and presence explanations show it."""


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  hivectl console --realm london\n\n"
        "  hivectl console --realm london --no-browser --ttl 8h\n\n"
        "  hivectl console --realm london --admin"
    )(console)


def console_link(ws_url: str, token: str, realm: str | None) -> str:
    """``ws://h:p/ws`` -> ``http://h:p/console/#token=...&realm=...`` (``wss`` -> ``https``)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"expected a ws:// or wss:// URL, got {ws_url!r}")
    fragment = {"token": token, **({"realm": realm} if realm else {})}
    return f"{scheme}://{parts.netloc}/console/#{urlencode(fragment)}"


def console_claims(realm: str | None, *, admin: bool, jti: str) -> dict[str, object]:
    """Read rights on the realm (every realm without one); ``--admin`` adds the right to
    change it and the admin grant (``adm``: list and disconnect connections). No ``dpv``:
    the console never makes anything look online."""
    if not admin:
        return {"sub": CONSOLE_SUBJECT, "jti": jti, "per": {realm or "*": {"*": "R"}}}
    return {"sub": CONSOLE_SUBJECT, "jti": jti, "per": {realm or "*": {"*": "CRUD"}}, "adm": True}


def console(
    realm: str | None = typer.Option(
        None, "--realm", help="Realm to open (default: the first one the token may read)."
    ),
    admin: bool = typer.Option(
        False,
        "--admin",
        help="Mint an admin token (adm: true) that may also change the realm, list connections"
        " and disconnect them (default: read-only).",
    ),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the link instead of opening a browser."
    ),
    ttl: float | None = TTL_OPTION,
    url: str | None = URL_OPTION,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Open the web console (/console on the server's port) signed in with a minted token."""
    import time
    import webbrowser

    from hivectl.cli.credentials import signing_key_or_exit
    from hivectl.core.tokens import mint_token

    seconds = lifetime(ttl, admin=admin)
    settings = settings_from(
        config,
        {"client.url": url, **secret_file_flags(secret_file)},
        {**SECRET_FILE_LABELS, "client.url": "--url"},
    ).settings
    key = signing_key_or_exit(settings, "minting the console's token")
    jti = f"console-{secrets.token_hex(6)}"
    token = mint_token(
        console_claims(realm, admin=admin, jti=jti), key, now=time.time(), ttl=seconds
    )
    try:
        link = console_link(settings.client.url, token, realm)
    except ValueError as exc:
        fail(f"[client] url: {exc}", EXIT_USAGE)
    rights = "admin (read, write, disconnect)" if admin else "read-only"
    typer.echo(f"{rights} token, jti {jti}, valid for {format_span(seconds)}", err=True)
    if no_browser:
        typer.echo(link)
        return
    if not webbrowser.open(link):
        typer.echo("no browser could be opened; open this link:", err=True)
        typer.echo(link)
