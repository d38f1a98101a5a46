"""`hivectl token`: mint, decode and verify JWTs with the server's own key settings.

`mint` and `verify` load the same settings and the same key (the generated secret
included) as `hivectl serve`, and `verify` checks with the server's own `KeyRing` and
`verify_token`, so "verify says yes" means "the server would accept it". Secrets come
from the config, a file or the environment, never from a flag value.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from hivectl.cli import admin
from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    err_console,
    fail,
    read_token,
    secret_file_flags,
    settings_from,
)
from hivectl.core.permissions import GRANT_FORM, PROVIDER_FORM, parse_grant, parse_provider_flag
from hivectl.core.settings import parse_duration

app = typer.Typer(help="Mint and inspect tokens.", no_args_is_help=True)

TOKEN_ARGUMENT = typer.Argument(..., help="The token, or - to read it from stdin.")
DEFAULT_TTL = "1h"
ADMIN_TTL = "15m"
"""An admin token may disconnect anyone and revoke any token: it lives briefly by default."""


def _check_per(values: list[str]) -> list[str]:
    """Reject a bad ``--per`` before anything is loaded: a usage error showing the form."""
    for value in values:
        try:
            parse_grant(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def _check_dpv(values: list[str]) -> list[str]:
    for value in values:
        try:
            parse_provider_flag(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return values


def _check_ttl(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise typer.BadParameter("must be longer than 0s")
    return value


@app.command(
    epilog="Examples:\n\n"
    "  hivectl token mint --sub johndoe-123 --per 'london:deliveryRiders/*=R' "
    "--per 'london:deliveryRiders/johndoe-123=CU' --dpv 'london:deliveryRiders/johndoe-123'\n\n"
    "  TOKEN=$(hivectl token mint --sub ops --per '*:*=CRUD' --ttl 30m)\n\n"
    "  ADMIN=$(hivectl token mint --sub alice --admin)"
)
def mint(
    sub: str = typer.Option(..., "--sub", help="Who the token is for (the sub claim)."),
    per: list[str] = typer.Option(
        [], "--per", callback=_check_per, metavar="GRANT", help=f"Permission {GRANT_FORM}."
    ),
    dpv: list[str] = typer.Option(
        [], "--dpv", callback=_check_dpv, metavar="PROVIDES", help=f"Data provider {PROVIDER_FORM}."
    ),
    ttl: str | None = typer.Option(
        None,
        "--ttl",
        callback=_check_ttl,
        help=f"Lifetime: 30m, 1h, 7d [default: {DEFAULT_TTL}, {ADMIN_TTL} with --admin].",
    ),
    admin: bool = typer.Option(
        False, "--admin", help="Add the admin grant (adm: true): disconnect, revoke, list all."
    ),
    jti: bool = typer.Option(False, "--jti", help="Add a random unique jti claim."),
    kid: str | None = typer.Option(None, "--kid", help="Key id for the token header."),
    claims_file: Path | None = typer.Option(
        None,
        "--claims",
        help="JSON object of extra claims (- for stdin); the flags above win over it.",
        allow_dash=True,
        dir_okay=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print token, header and claims as JSON."),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Mint a token signed with the configured key; prints only the token."""
    import secrets

    from hivectl.core.keyfiles import (
        generated_secret_path,
        needs_generated_secret,
        signing_key,
        with_generated_secret,
    )
    from hivectl.core.permissions import dpv_claim_from_flags, per_claim_from_grants
    from hivectl.core.tokens import decode_unverified, mint_token

    claims: dict[str, Any] = _claims_from(claims_file) if claims_file is not None else {}
    claims["sub"] = sub
    if per:
        claims["per"] = per_claim_from_grants(per)
    if dpv:
        claims["dpv"] = dpv_claim_from_flags(dpv)
    if jti:
        claims["jti"] = secrets.token_hex(8)
    if admin:
        claims["adm"] = True
    loaded = settings_from(config, secret_file_flags(secret_file), SECRET_FILE_LABELS)
    settings, _ = with_generated_secret(loaded.settings, create=False)
    try:
        key = signing_key(settings.auth, kid=kid)
    except ValueError as exc:
        hint = ""
        if needs_generated_secret(settings.auth):
            where = generated_secret_path(settings)
            hint = f", or run `hivectl serve` here once: it generates {where}"
        fail(f"{exc}{hint}", EXIT_USAGE)
    try:
        lifetime = parse_duration(ttl or (ADMIN_TTL if admin else DEFAULT_TTL))
        token = mint_token(claims, key, now=time.time(), ttl=lifetime)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        header, payload = decode_unverified(token)
        typer.echo(json.dumps({"token": token, "header": header, "claims": payload}, indent=2))
    else:
        typer.echo(token)


def _claims_from(path: Path) -> dict[str, Any]:
    text = typer.get_text_stream("stdin").read() if str(path) == "-" else _read(path)
    try:
        claims = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}: not JSON: {exc}", EXIT_USAGE)
    if not isinstance(claims, dict):
        fail(f"{path}: expected a JSON object of claims", EXIT_USAGE)
    return claims


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc}", EXIT_USAGE)


@app.command(
    epilog="Examples:\n\n  hivectl token decode eyJhbGciOi...\n\n"
    "  echo $TOKEN | hivectl token decode -"
)
def decode(token: str = TOKEN_ARGUMENT) -> None:
    """Show a token's header and claims WITHOUT checking its signature or times."""
    from hivectl.core.tokens import TokenError, decode_unverified

    try:
        header, claims = decode_unverified(read_token(token))
    except TokenError as exc:
        fail(exc.text, EXIT_USAGE)
    err_console.print("[yellow]signature NOT verified[/yellow] (use `hivectl token verify`)")
    typer.echo(json.dumps({"header": header, "claims": claims}, indent=2))


@app.command(
    epilog="Examples:\n\n  hivectl token verify $TOKEN\n\n"
    "  hivectl token mint --sub me | hivectl token verify -"
)
def verify(
    token: str = TOKEN_ARGUMENT,
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Verify a token as the server would; exit 3 with the reason when it fails."""
    from hivectl.core.keyfiles import with_generated_secret
    from hivectl.core.tokens import TokenError, verify_token
    from server.auth import AuthConfigError, keyring_from_settings

    loaded = settings_from(config, secret_file_flags(secret_file), SECRET_FILE_LABELS)
    settings, _ = with_generated_secret(loaded.settings, create=False)
    auth = settings.auth
    try:
        keys = keyring_from_settings(auth)
    except (AuthConfigError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        claims = verify_token(
            read_token(token),
            keys,
            now=time.time(),
            leeway=auth.leeway,
            require_permissions=auth.require_permissions,
            issuer=auth.issuer or None,
            audience=auth.audience or None,
            max_ttl=auth.max_token_ttl,
        )
    except TokenError as exc:
        fail(f"token rejected: {exc.text}", EXIT_CHECK_FAILED)
    typer.echo(json.dumps(dict(claims.raw), indent=2))


app.command(
    epilog="Examples:\n\n  hivectl token revoke --jti 3f9c2a1b7d4e6f80\n\n"
    "  hivectl token revoke --sub rider-12\n\n"
    "  hivectl token revoke --sub rider-12 --issued-before 2026-11-30T12:00:00+00:00"
)(admin.revoke)
app.command(
    epilog="Examples:\n\n  hivectl token revocations\n\n  hivectl token revocations --json"
)(admin.revocations)
