"""`hivectl token`: mint JWTs with the server's own key settings."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from hivectl.cli.common import CONFIG_OPTION, EXIT_USAGE, err_console, settings_from

app = typer.Typer(help="Mint and inspect tokens.", no_args_is_help=True)


@app.command()
def mint(
    sub: str = typer.Option(..., help="Who the token is for (the sub claim)."),
    per: list[str] = typer.Option([], help="Permission REALM:PATTERN=LETTERS (repeatable)."),
    dpv: list[str] = typer.Option([], help="Data provider REALM:PATTERN (repeatable)."),
    ttl: float = typer.Option(3600.0, help="Seconds until the token expires."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Mint a token signed with the configured key; prints only the token."""
    from hivectl.core.permissions import dpv_claim_from_flags, per_claim_from_grants
    from hivectl.core.tokens import SigningKey, mint_token, secret_from_text

    auth = settings_from(config, {}).settings.auth
    try:
        claims: dict[str, object] = {"sub": sub}
        if per:
            claims["per"] = per_claim_from_grants(per)
        if dpv:
            claims["dpv"] = dpv_claim_from_flags(dpv)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    if auth.secret:
        secret = auth.secret.encode()
    elif auth.secret_file:
        secret = secret_from_text(Path(auth.secret_file).read_text())
    else:
        err_console.print(
            "[red]error:[/red] no secret: set HIVECTL_AUTH_SECRET or [auth] secret_file"
        )
        raise typer.Exit(EXIT_USAGE)
    key = SigningKey(algorithm="HS256", key=secret)
    typer.echo(mint_token(claims, key, now=time.time(), ttl=ttl))
