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
    duration_flag,
    err_console,
    fail,
    read_token,
    secret_file_flags,
    settings_from,
)
from hivectl.core.permissions import GRANT_FORM, PROVIDER_FORM, parse_grant, parse_provider_flag

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


def _check_ttl(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if seconds <= 0:
        raise typer.BadParameter("must be longer than 0s")
    return seconds


TTL_OPTION = typer.Option(
    None,
    "--ttl",
    parser=duration_flag,
    metavar="DURATION",
    callback=_check_ttl,
    help=f"Lifetime of the token: 30m, 1h, 7d (default {DEFAULT_TTL}, {ADMIN_TTL} with --admin).",
)
"""``--ttl`` of the commands that mint a token to hand out (`mint`, `hivectl console`)."""


def lifetime(ttl: float | None, *, admin: bool) -> float:
    """``--ttl`` as given, or the default: shorter for a token with the admin grant."""
    return ttl if ttl is not None else duration_flag(ADMIN_TTL if admin else DEFAULT_TTL)


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
    ttl: float | None = TTL_OPTION,
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
        token = mint_token(claims, key, now=time.time(), ttl=lifetime(ttl, admin=admin))
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
    "  hivectl token mint --sub me | hivectl token verify -\n\n"
    "  hivectl token verify $TOKEN --json | jq .expires_in_s"
)
def verify(
    token: str = TOKEN_ARGUMENT,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the verdict as JSON on stdout: valid, reason, error, claims, exp,"
        " expires_in_s (negative: how long ago it expired).",
    ),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
) -> None:
    """Verify a token as the server would; exit 3 with the reason when it fails."""
    from hivectl.core.keyfiles import with_generated_secret
    from hivectl.core.tokens import TokenError, decode_unverified, verify_token
    from server.io.auth import AuthConfigError, keyring_from_settings

    loaded = settings_from(config, secret_file_flags(secret_file), SECRET_FILE_LABELS)
    settings, _ = with_generated_secret(loaded.settings, create=False)
    auth = settings.auth
    try:
        keys = keyring_from_settings(auth)
    except (AuthConfigError, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    text = read_token(token)
    now = time.time()
    try:
        claims = dict(
            verify_token(
                text,
                keys,
                now=now,
                leeway=auth.leeway,
                require_permissions=auth.require_permissions,
                issuer=auth.issuer or None,
                audience=auth.audience or None,
                max_ttl=auth.max_token_ttl,
            ).raw
        )
    except TokenError as exc:
        # The times are checked after the signature: a token refused for its times has a
        # valid signature, so its claims can be shown.
        timed = exc.reason in ("expired", "not_yet_valid")
        shown = decode_unverified(text)[1] if timed else None
        verdict = token_verdict(shown, now, error=exc.text, reason=exc.reason)
        if as_json:
            typer.echo(json.dumps(verdict, indent=2))
            raise typer.Exit(EXIT_CHECK_FAILED) from None
        fail(f"token rejected: {rejection_text(verdict)}", EXIT_CHECK_FAILED)
    typer.echo(json.dumps(token_verdict(claims, now) if as_json else claims, indent=2))


def token_verdict(
    claims: dict[str, Any] | None,
    now: float,
    *,
    error: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The ``--json`` answer of `token verify`: valid or not and why, and when it expires
    (``expires_in_s`` negative once it has) or becomes valid, as seconds and RFC 3339 UTC."""
    verdict: dict[str, Any] = {"valid": error is None, "reason": reason, "error": error}
    for claim, field in (("exp", "expires_in_s"), ("nbf", "valid_in_s")):
        value = (claims or {}).get(claim)
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        verdict[claim] = None if number is None else rfc3339(number)
        verdict[field] = None if number is None else round(number - now, 3)
    verdict["claims"] = claims
    return verdict


def rejection_text(verdict: dict[str, Any]) -> str:
    """``token has expired at 2026-12-05T12:00:00Z, 3m12s ago``: the reason, and when."""
    if verdict["reason"] == "expired" and verdict["exp"] is not None:
        ago = format_span(-verdict["expires_in_s"])
        return f"{verdict['error']} at {verdict['exp']}, {ago} ago"
    if verdict["reason"] == "not_yet_valid" and verdict["nbf"] is not None:
        wait = format_span(verdict["valid_in_s"])
        return f"{verdict['error']}: valid from {verdict['nbf']}, in {wait}"
    return str(verdict["error"])


def rfc3339(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_span(seconds: float) -> str:
    """A span the way durations are written: 45s, 3m12s, 2h05m, 3d4h."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


app.command(
    epilog="Examples:\n\n  hivectl token revoke --jti 3f9c2a1b7d4e6f80\n\n"
    "  hivectl token revoke --sub rider-12\n\n"
    "  hivectl token revoke --sub rider-12 --issued-before 2026-11-30T12:00:00+00:00"
)(admin.revoke)
app.command(
    epilog="Examples:\n\n  hivectl token revocations\n\n  hivectl token revocations --json"
)(admin.revocations)
