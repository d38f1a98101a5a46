"""`hivectl console`: the link it makes and the token in it."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from hivectl.cli.console import CONSOLE_SUBJECT, console_claims, console_link
from hivectl.core.tokens import KeyRing, SigningKey, verify_token
from tests.cli.conftest import invoke
from tests.conftest import SECRET


@pytest.mark.parametrize(
    ("ws_url", "base"),
    [
        ("ws://127.0.0.1:8765/ws", "http://127.0.0.1:8765/console/"),
        ("wss://hive.example:443/ws", "https://hive.example:443/console/"),
        ("ws://[::1]:9000/v1/ws", "http://[::1]:9000/console/"),
    ],
)
def test_the_link_puts_token_and_realm_in_the_fragment(ws_url: str, base: str) -> None:
    link = console_link(ws_url, "a.b.c", "lon don/1")
    parts = urlsplit(link)
    assert link.startswith(base + "#")
    assert parts.query == ""  # a query string would reach the server's logs
    assert parse_qs(parts.fragment) == {"token": ["a.b.c"], "realm": ["lon don/1"]}
    assert "realm" not in console_link(ws_url, "t", None)


def test_a_link_needs_a_websocket_url() -> None:
    with pytest.raises(ValueError, match="expected a ws:// or wss:// URL"):
        console_link("tcp://127.0.0.1:1", "t", None)


def test_claims_read_only_unless_admin_and_never_a_provider() -> None:
    assert console_claims("london", admin=False, jti="j") == {
        "sub": CONSOLE_SUBJECT,
        "jti": "j",
        "per": {"london": {"*": "R"}},
    }
    assert console_claims(None, admin=True, jti="j") == {
        "sub": CONSOLE_SUBJECT,
        "jti": "j",
        "per": {"*": {"*": "CRUD"}},
        "adm": True,
    }


def _claims_of(link: str) -> dict[str, object]:
    token = parse_qs(urlsplit(link).fragment)["token"][0]
    keys = KeyRing([SigningKey("HS256", SECRET.encode())])
    return dict(verify_token(token, keys, now=time.time()).raw)


def test_no_browser_prints_a_link_with_a_short_lived_read_only_token() -> None:
    result = invoke(
        "console",
        "--realm",
        "london",
        "--no-browser",
        "--ttl",
        "10m",
        "--url",
        "ws://127.0.0.1:9/ws",
        env={"HIVECTL_AUTH_SECRET": SECRET},
    )
    assert result.exit_code == 0, result.stderr
    link = result.stdout.strip()
    assert link.startswith("http://127.0.0.1:9/console/#token=")
    claims = _claims_of(link)
    assert claims["per"] == {"london": {"*": "R"}}
    assert "dpv" not in claims
    assert 590 <= int(claims["exp"]) - int(claims["iat"]) <= 600  # type: ignore[call-overload]
    assert f"read-only token, jti {claims['jti']}, valid for 10m00s" in result.stderr


def test_admin_mints_an_admin_token_that_lives_15_minutes_by_default() -> None:
    result = invoke(
        "console",
        "--realm",
        "london",
        "--admin",
        "--no-browser",
        "--url",
        "ws://127.0.0.1:9/ws",
        env={"HIVECTL_AUTH_SECRET": SECRET},
    )
    assert result.exit_code == 0, result.stderr
    claims = _claims_of(result.stdout.strip())
    assert claims["adm"] is True
    assert claims["per"] == {"london": {"*": "CRUD"}}
    assert int(claims["exp"]) - int(claims["iat"]) == 15 * 60  # type: ignore[call-overload]
    assert f"admin (read, write, disconnect) token, jti {claims['jti']}, valid for 15m00s" in (
        result.stderr
    )


def test_without_admin_the_token_lives_an_hour_by_default() -> None:
    result = invoke(
        "console",
        "--no-browser",
        "--url",
        "ws://127.0.0.1:9/ws",
        env={"HIVECTL_AUTH_SECRET": SECRET},
    )
    assert result.exit_code == 0, result.stderr
    claims = _claims_of(result.stdout.strip())
    assert "adm" not in claims
    assert int(claims["exp"]) - int(claims["iat"]) == 3600  # type: ignore[call-overload]


@pytest.mark.parametrize("ttl", ["0s", "soon"])
def test_a_bad_ttl_is_a_usage_error(ttl: str) -> None:
    result = invoke("console", "--no-browser", "--ttl", ttl, env={"HIVECTL_AUTH_SECRET": SECRET})
    assert result.exit_code == 2
    assert "--ttl" in result.stderr


def test_without_a_signing_key_it_says_what_to_set() -> None:
    result = invoke("console", "--no-browser")
    assert result.exit_code == 2
    assert "minting the console's token" in result.stderr
