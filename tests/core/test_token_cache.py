"""`VerifiedTokens`: a token verified once is not verified again, yet every use is timed."""

from __future__ import annotations

from typing import Any

import pytest

from hivectl.core import tokens
from hivectl.core.tokens import (
    KeyRing,
    SigningKey,
    TokenError,
    VerificationKey,
    VerifiedTokens,
    mint_token,
    verify_token,
)

NOW = 1_800_000_000.0
SECRET = b"s3cret-s3cret-s3cret-s3cret-s3cret!"
RING = KeyRing([VerificationKey("HS256", SECRET)])


def mint(**claims: Any) -> str:
    return mint_token({"sub": "rider", **claims}, SigningKey("HS256", SECRET), now=NOW, ttl=60)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature and claims were checked, in order."""
    checked: list[str] = []
    real = tokens._verified_claims

    def counting(token: str, *args: Any) -> tokens.Claims:
        checked.append(token)
        return real(token, *args)

    monkeypatch.setattr(tokens, "_verified_claims", counting)
    return checked


def test_a_token_seen_before_is_not_checked_again(checks: list[str]) -> None:
    cache = VerifiedTokens(10)
    token = mint(dpv={"london": ["riders/r1"]})
    first = verify_token(token, RING, now=NOW, verified=cache)
    again = verify_token(token, RING, now=NOW + 1, verified=cache)
    assert again is first
    assert checks == [token]


def test_a_cached_token_still_expires(checks: list[str]) -> None:
    cache = VerifiedTokens(10)
    token = mint()
    verify_token(token, RING, now=NOW, verified=cache)
    with pytest.raises(TokenError, match=r"^token has expired$"):
        verify_token(token, RING, now=NOW + 61, verified=cache)
    assert checks == [token]


def test_tokens_that_fail_are_not_kept() -> None:
    cache = VerifiedTokens(10)
    forged = mint_token({"sub": "x"}, SigningKey("HS256", b"another-secret-" * 3), now=NOW)
    for _ in range(2):
        with pytest.raises(TokenError, match=r"^signature is invalid$"):
            verify_token(forged, RING, now=NOW, verified=cache)
    assert len(cache) == 0


def test_the_settings_that_change_the_answer_are_part_of_the_key() -> None:
    cache = VerifiedTokens(10)
    token = mint()  # no per: everything, unless permissions are required
    open_claims = verify_token(token, RING, now=NOW, verified=cache)
    strict_claims = verify_token(token, RING, now=NOW, require_permissions=True, verified=cache)
    assert open_claims.per.allows("R", "london", "riders/r1")
    assert not strict_claims.per.allows("R", "london", "riders/r1")
    with pytest.raises(TokenError, match=r"^issuer is invalid$"):
        verify_token(token, RING, now=NOW, issuer="https://issuer", verified=cache)


def test_the_least_recently_used_token_goes_first(checks: list[str]) -> None:
    cache = VerifiedTokens(2)
    a, b, c = (mint(jti=name) for name in "abc")
    for token in (a, b, a, c):  # a was used after b: b goes when c comes
        verify_token(token, RING, now=NOW, verified=cache)
    assert len(cache) == 2
    verify_token(a, RING, now=NOW, verified=cache)
    verify_token(b, RING, now=NOW, verified=cache)
    assert checks == [a, b, c, b]
