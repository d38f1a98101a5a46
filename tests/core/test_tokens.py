"""Token minting and verification (protocol.md §2, §2.1): every way a token can fail."""

from __future__ import annotations

import base64
import hmac
import json
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hivectl.core.permissions import ClaimError, Permissions, ProviderPatterns
from hivectl.core.tokens import (
    Claims,
    KeyRing,
    SigningKey,
    TokenError,
    VerificationKey,
    decode_unverified,
    load_pem,
    mint_token,
    read_secret_file,
    secret_from_text,
    short_secret,
    verify_token,
)

NOW = 1_800_000_000.0
SECRET = b"s3cret-s3cret-s3cret-s3cret-s3cret!"
OTHER_SECRET = b"another-secret-another-secret-0123"
HS_RING = KeyRing([VerificationKey("HS256", SECRET)])
HS_KEY = SigningKey("HS256", SECRET)
PER = "claim per is invalid: "
DPV = "claim dpv is invalid: "


def _pems(private: Any) -> tuple[str, str]:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture(scope="module")
def rsa_pems() -> tuple[str, str]:
    return _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pems() -> tuple[str, str]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: str, secret: bytes | None) -> str:
    """A token built without PyJWT, for inputs PyJWT refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload.encode())}"
    signature = hmac.new(secret, signing_input.encode(), "sha256").digest() if secret else b""
    return f"{signing_input}.{b64(signature)}"


def signed(payload: dict[str, Any], secret: bytes = SECRET, **headers: Any) -> str:
    """An HS256 token with exactly these claims (no validation of ours on the way)."""
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def ok(token: str, ring: KeyRing = HS_RING, **options: Any) -> Claims:
    return verify_token(token, ring, now=NOW, **options)


def failure(token: str, ring: KeyRing = HS_RING, **options: Any) -> str:
    with pytest.raises(TokenError) as caught:
        verify_token(token, ring, now=NOW, **options)
    assert str(caught.value) == caught.value.text
    return caught.value.text


# --- round trips ----------------------------------------------------------------------------


def test_hs256_mint_then_verify() -> None:
    claims = {"sub": "rider-1", "jti": "t-1", "per": {"london": {"car/*": "RU"}}, "tnd": "x"}
    token = mint_token(claims, HS_KEY, now=NOW, ttl=60.5)
    verified = verify_token(token, HS_RING, now=NOW + 59.9)
    assert verified.sub == "rider-1"
    assert verified.jti == "t-1"
    assert verified.iat == int(NOW)
    assert verified.exp == int(NOW + 60.5)
    assert verified.nbf is None
    assert verified.per == Permissions.parse({"london": {"car/*": "RU"}})
    assert verified.dpv == ProviderPatterns.empty()
    assert verified.raw["tnd"] == "x"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_asymmetric_mint_then_verify(
    algorithm: str, rsa_pems: tuple[str, str], ec_pems: tuple[str, str]
) -> None:
    private_pem, public_pem = rsa_pems if algorithm == "RS256" else ec_pems
    token = mint_token(
        {"sub": "gw", "dpv": {"*": ["gateways/1"]}}, SigningKey(algorithm, private_pem), now=NOW
    )
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    verified = verify_token(token, KeyRing([VerificationKey(algorithm, public_pem)]), now=NOW)
    assert verified.sub == "gw"
    assert verified.dpv.covers("paris", "gateways/1")
    assert verified.exp is None


def test_mint_sets_kid_iat_and_leaves_exp_alone_without_ttl() -> None:
    token = mint_token({"iat": 5, "exp": NOW + 9}, SigningKey("HS256", SECRET, "k1"), now=NOW)
    header, claims = decode_unverified(token)
    assert header["kid"] == "k1"
    assert claims == {"iat": int(NOW), "exp": NOW + 9}


def test_mint_without_kid_sends_no_kid() -> None:
    header, _ = decode_unverified(mint_token({}, HS_KEY, now=NOW))
    assert "kid" not in header


def test_claims_raw_cannot_be_changed() -> None:
    verified = ok(mint_token({"a": 1}, HS_KEY, now=NOW))
    with pytest.raises(TypeError):
        verified.raw["a"] = 2  # type: ignore[index]


# --- permissions default -------------------------------------------------------------------


def test_a_token_without_per_may_do_everything_unless_required() -> None:
    token = signed({"sub": "x"})
    assert ok(token).per.is_unrestricted
    required = ok(token, require_permissions=True)
    assert required.per == Permissions.nothing()
    assert not required.per.allows("R", "any", "thing")


def test_require_permissions_keeps_a_given_per() -> None:
    token = signed({"per": {"*": {"*": "R"}}})
    verified = ok(token, require_permissions=True)
    assert verified.per.allows("R", "a", "b")
    assert not verified.per.allows("U", "a", "b")


# --- signature and algorithm ---------------------------------------------------------------


def test_other_secret_is_a_bad_signature() -> None:
    assert failure(signed({"sub": "x"}, OTHER_SECRET)) == "signature is invalid"


def test_tampered_payload_is_a_bad_signature(rsa_pems: tuple[str, str]) -> None:
    private_pem, public_pem = rsa_pems
    token = mint_token({"sub": "alice"}, SigningKey("RS256", private_pem), now=NOW)
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(json.dumps({'sub': 'mallory'}).encode())}.{signature}"
    ring = KeyRing([VerificationKey("RS256", public_pem)])
    assert failure(forged, ring) == "signature is invalid"


def test_es256_token_from_another_key_is_a_bad_signature(ec_pems: tuple[str, str]) -> None:
    other_private, _ = _pems(ec.generate_private_key(ec.SECP256R1()))
    token = mint_token({}, SigningKey("ES256", other_private), now=NOW)
    assert failure(token, KeyRing([VerificationKey("ES256", ec_pems[1])])) == "signature is invalid"


def test_alg_none_is_not_allowed() -> None:
    token = hand_made({"alg": "none", "typ": "JWT"}, '{"sub":"root"}', None)
    assert failure(token) == "algorithm not allowed"


def test_hs256_signed_with_the_rsa_public_key_is_not_allowed(rsa_pems: tuple[str, str]) -> None:
    public_pem = rsa_pems[1]
    token = hand_made({"alg": "HS256"}, '{"sub":"root"}', public_pem.encode())
    rsa_ring = KeyRing([VerificationKey("RS256", public_pem)])
    assert failure(token, rsa_ring) == "algorithm not allowed"


def test_a_pem_as_an_hs256_secret_is_refused_when_the_ring_is_built(
    rsa_pems: tuple[str, str],
) -> None:
    """The ring checks each secret once, so that verifying does not have to each time."""
    with pytest.raises(ValueError, match="HS256 key is unusable"):
        KeyRing([VerificationKey("HS256", rsa_pems[1].encode())])


def test_the_ring_verifies_many_tokens_with_its_checked_secret() -> None:
    for n in range(3):
        token = mint_token({"sub": f"r{n}"}, HS_KEY, now=NOW)
        assert verify_token(token, HS_RING, now=NOW).sub == f"r{n}"
    forged = mint_token({"sub": "r0"}, SigningKey("HS256", OTHER_SECRET), now=NOW)
    assert failure(forged) == "signature is invalid"


def test_header_algorithm_other_than_the_keys_is_not_allowed(rsa_pems: tuple[str, str]) -> None:
    token = mint_token({}, SigningKey("RS256", rsa_pems[0]), now=NOW)
    assert failure(token) == "algorithm not allowed"


# --- malformed ------------------------------------------------------------------------------


HS256_HEADER = b64(b'{"alg": "HS256"}')
"""A header good enough to choose a key, for tokens broken further on."""


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "!!!.e30.sig",
        f"{b64(b'not json')}.e30.{b64(b'x')}",
        f"{b64(b'[1]')}.e30.{b64(b'x')}",
        hand_made({"typ": "JWT"}, "{}", SECRET),
        hand_made({"alg": 256}, "{}", SECRET),
        hand_made({"alg": "HS256", "kid": 7}, "{}", SECRET),
        hand_made({"alg": "HS256", "kid": ["k1"]}, "{}", SECRET),
        hand_made({"alg": "HS256", "crit": ["exp"], "exp": 1}, "{}", SECRET),
        f"{HS256_HEADER}.!!!.{b64(b'x')}",
        f"{HS256_HEADER}.e30",
    ],
)
def test_broken_tokens_are_malformed(token: str) -> None:
    assert failure(token) == "token is malformed"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        '{"exp": "tomorrow"}',
        '{"exp": true}',
        '{"exp": NaN}',
        '{"exp": 1e400}',
        '{"nbf": null}',
        '{"iat": "now"}',
        '{"sub": 42}',
        '{"sub": null}',
        '{"jti": 1}',
        '{"sub": "\\ud800"}',
        '{"dpv": {"r": ["a\\udfff"]}}',
        '{"x": 123456789012345678901234567890}',
    ],
)
def test_correctly_signed_bad_claims_are_malformed(payload: str) -> None:
    assert failure(hand_made({"alg": "HS256"}, payload, SECRET)) == "token is malformed"


def test_a_bad_signature_hides_a_bad_payload() -> None:
    token = hand_made({"alg": "HS256"}, "not json", OTHER_SECRET)
    assert failure(token) == "signature is invalid"


@pytest.mark.parametrize(
    ("claims", "text"),
    [
        ({"per": "CRUD"}, PER + "expected an object, got string"),
        ({"per": None}, PER + "expected an object, got null"),
        ({"per": {"x": ["*"]}}, PER + 'realm "x": expected an object, got array'),
        ({"per": {"x": {"*": "CX"}}}, PER + 'realm "x": letters must be from CRUD, got "CX"'),
        ({"per": {"x": {"*": 1}}}, PER + 'realm "x": letters must be a string, got number'),
        ({"dpv": ["a"]}, DPV + "expected an object, got array"),
        ({"dpv": {"x": "a"}}, DPV + 'realm "x": expected an array, got string'),
        ({"dpv": {"x": [1]}}, DPV + 'realm "x": id patterns must be strings, got number'),
    ],
)
def test_malformed_per_and_dpv_are_named(claims: dict[str, Any], text: str) -> None:
    assert failure(signed(claims)) == text


# --- time -----------------------------------------------------------------------------------


def test_expiry_is_checked_against_the_given_now() -> None:
    token = signed({"exp": NOW})
    assert failure(token) == "token has expired"
    assert verify_token(token, HS_RING, now=NOW - 0.5).exp == NOW
    assert verify_token(signed({"exp": 1}), HS_RING, now=0).exp == 1


def test_leeway_extends_expiry() -> None:
    token = signed({"exp": NOW - 5})
    assert ok(token, leeway=10).exp == NOW - 5
    assert failure(token, leeway=5) == "token has expired"


def test_not_before_with_and_without_leeway() -> None:
    token = signed({"nbf": NOW + 5})
    assert failure(token) == "token is not valid yet"
    assert failure(token, leeway=4.9) == "token is not valid yet"
    assert ok(token, leeway=5).nbf == NOW + 5
    assert ok(signed({"nbf": NOW})).nbf == NOW


def test_iat_in_the_future_is_accepted() -> None:
    assert ok(signed({"iat": NOW + 3600})).iat == NOW + 3600


# --- issuer and audience -------------------------------------------------------------------


def test_issuer_is_checked_only_when_configured() -> None:
    token = signed({"iss": "https://id.example"})
    assert ok(token).raw["iss"] == "https://id.example"
    assert ok(token, issuer="https://id.example").raw["iss"] == "https://id.example"
    assert failure(token, issuer="https://id.example/") == "issuer is invalid"
    assert failure(signed({}), issuer="https://id.example") == "issuer is invalid"
    not_a_string = hand_made({"alg": "HS256"}, '{"iss": 5}', SECRET)
    assert failure(not_a_string, issuer="https://id.example") == "issuer is invalid"


def test_audience_is_checked_only_when_configured() -> None:
    token = signed({"aud": ["hivectl", "other"]})
    assert ok(token).raw["aud"] == ["hivectl", "other"]
    assert ok(token, audience="hivectl").raw["aud"] == ["hivectl", "other"]
    assert failure(token, audience="nobody") == "audience is invalid"
    assert failure(signed({}), audience="hivectl") == "audience is invalid"


# --- key selection -------------------------------------------------------------------------


NAMED_RING = KeyRing(
    [VerificationKey("HS256", SECRET, "k1"), VerificationKey("HS256", OTHER_SECRET, "k2")]
)


def test_kid_selects_the_key() -> None:
    assert ok(signed({"sub": "b"}, OTHER_SECRET, kid="k2"), NAMED_RING).sub == "b"
    assert failure(signed({}, OTHER_SECRET, kid="k1"), NAMED_RING) == "signature is invalid"


def test_unknown_kid_is_named() -> None:
    assert failure(signed({}, kid="k3"), NAMED_RING) == "unknown key id k3"


def test_no_kid_with_only_named_keys() -> None:
    assert failure(signed({}), NAMED_RING) == "token has no key id"
    single = KeyRing([VerificationKey("HS256", SECRET, "only")])
    assert verify_token(signed({"sub": "a"}), single, now=NOW).sub == "a"


def test_no_kid_tries_every_unnamed_key() -> None:
    rotating = KeyRing(
        [
            VerificationKey("HS256", OTHER_SECRET),
            VerificationKey("HS256", SECRET),
            VerificationKey("HS256", b"third-secret-third-secret-third-se", "k"),
        ]
    )
    assert verify_token(signed({"sub": "new"}), rotating, now=NOW).sub == "new"
    assert verify_token(signed({"sub": "old"}, OTHER_SECRET), rotating, now=NOW).sub == "old"
    assert failure(signed({}, b"x" * 40), rotating) == "signature is invalid"


def test_a_ring_without_kids_ignores_the_header_kid() -> None:
    assert ok(signed({"sub": "a"}, kid="whatever")).sub == "a"


def test_kid_of_a_key_with_another_algorithm(
    rsa_pems: tuple[str, str], ec_pems: tuple[str, str]
) -> None:
    ring = KeyRing(
        [VerificationKey("RS256", rsa_pems[1], "rsa"), VerificationKey("ES256", ec_pems[1], "ec")]
    )
    wrong_kid = mint_token({}, SigningKey("ES256", ec_pems[0], "rsa"), now=NOW)
    assert failure(wrong_kid, ring) == "algorithm not allowed"
    right_kid = mint_token({"sub": "e"}, SigningKey("ES256", ec_pems[0], "ec"), now=NOW)
    assert ok(right_kid, ring).sub == "e"


# --- bad configuration ---------------------------------------------------------------------


def test_key_ring_refuses_bad_configuration(rsa_pems: tuple[str, str]) -> None:
    private_pem, public_pem = rsa_pems
    with pytest.raises(ValueError, match="at least one key"):
        KeyRing([])
    with pytest.raises(ValueError, match="'a'"):
        KeyRing([VerificationKey("HS256", SECRET, "a"), VerificationKey("HS256", SECRET, "a")])
    with pytest.raises(ValueError, match="must be a public key"):
        KeyRing([VerificationKey("RS256", private_pem)])
    with pytest.raises(ValueError, match="unusable"):
        KeyRing([VerificationKey("HS256", public_pem)])
    with pytest.raises(ValueError, match="unusable"):
        KeyRing([VerificationKey("RS256", "not a key")])


def test_es256_needs_a_p256_key() -> None:
    _, p384_public = _pems(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="unusable"):
        KeyRing([VerificationKey("ES256", p384_public)])


@pytest.mark.parametrize("algorithm", ["none", "HS512", "hs256", "PS256"])
def test_only_three_algorithms_exist(algorithm: str) -> None:
    with pytest.raises(ValueError, match="HS256, RS256, ES256"):
        VerificationKey(algorithm, SECRET)
    with pytest.raises(ValueError, match="HS256, RS256, ES256"):
        SigningKey(algorithm, SECRET)


def test_signing_needs_a_private_key(rsa_pems: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="must be a private key"):
        mint_token({}, SigningKey("RS256", rsa_pems[1]), now=NOW)


@pytest.mark.parametrize(
    ("claims", "text"),
    [
        ({"per": {"x": {"*": "CX"}}}, PER + 'realm "x": letters must be from CRUD, got "CX"'),
        ({"dpv": {"x": "car/*"}}, DPV + 'realm "x": expected an array, got string'),
        ({"sub": 5}, "claim sub is invalid: expected a string"),
        ({"nbf": "soon"}, "claim nbf is invalid: expected a number"),
    ],
)
def test_mint_refuses_claims_a_server_would_refuse(claims: dict[str, Any], text: str) -> None:
    with pytest.raises(ClaimError) as caught:
        mint_token(claims, HS_KEY, now=NOW)
    assert str(caught.value) == text


# --- helpers --------------------------------------------------------------------------------


def test_decode_unverified_shows_an_expired_foreign_token() -> None:
    token = signed({"sub": "x", "exp": 1}, OTHER_SECRET, kid="k9")
    header, claims = decode_unverified(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": "k9"}
    assert claims == {"sub": "x", "exp": 1}


@pytest.mark.parametrize("token", ["abc", "a.b.c", hand_made({"alg": "HS256"}, "[1]", SECRET)])
def test_decode_unverified_refuses_malformed_tokens(token: str) -> None:
    with pytest.raises(TokenError, match=r"^token is malformed$"):
        decode_unverified(token)


def test_secret_from_text_strips_only_trailing_newlines() -> None:
    assert secret_from_text(" a b \n") == b" a b "
    assert secret_from_text("abc\r\n\n") == b"abc"
    assert secret_from_text("ümlaut") == "ümlaut".encode()


def test_load_pem(tmp_path: Path, ec_pems: tuple[str, str]) -> None:
    good = tmp_path / "key.pem"
    good.write_text(ec_pems[1])
    assert load_pem(good) == ec_pems[1]
    ring = KeyRing([VerificationKey("ES256", load_pem(str(good)))])
    assert ok(mint_token({"sub": "f"}, SigningKey("ES256", ec_pems[0]), now=NOW), ring).sub == "f"
    bad = tmp_path / "secret.txt"
    bad.write_text("hunter2")
    with pytest.raises(ValueError, match="not a PEM file"):
        load_pem(bad)


def test_hand_made_tokens_match_pyjwt() -> None:
    """The helper above really signs like HS256 (else the tests built on it prove nothing)."""
    token = hand_made({"alg": "HS256"}, '{"sub":"a"}', SECRET)
    assert jwt.decode(token, SECRET, algorithms=["HS256"]) == {"sub": "a"}


def test_an_hs256_secret_under_32_bytes_is_short_and_cannot_sign(tmp_path: Path) -> None:
    """RFC 7518 §3.2: an HS256 key is at least 256 bits."""
    assert short_secret(SigningKey("HS256", b"x" * 32)) is None
    assert short_secret(VerificationKey("HS256", "x" * 31, kid="old")) == (
        "HS256 secret 'old' is 31 bytes; RFC 7518 requires at least 32 (256 bits): generate"
        " one with `openssl rand -base64 32` or `hivectl config init`"
    )
    with pytest.raises(ValueError, match="is 31 bytes"):
        mint_token({"sub": "x"}, SigningKey("HS256", b"x" * 31), now=0)
    ring = KeyRing([VerificationKey("HS256", b"short")])  # verifying still works: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        token = jwt.encode({"sub": "x"}, b"short", algorithm="HS256")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyJWT's own warning is not raised at each token
        assert verify_token(token, ring, now=0).sub == "x"


def test_a_secret_file_is_text_and_a_binary_one_is_named(tmp_path: Path) -> None:
    text = tmp_path / "text.secret"
    text.write_text("s3cret\n")
    assert read_secret_file(text) == b"s3cret"
    binary = tmp_path / "binary.secret"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=f"{binary}: not a text file"):
        read_secret_file(binary)


# --- the admin grant and the lifetime bound ---------------------------------------------


def test_adm_true_is_the_admin_grant_and_nothing_else_is() -> None:
    assert ok(signed({"adm": True})).adm is True
    assert ok(signed({"adm": False})).adm is False
    assert ok(signed({})).adm is False
    assert ok(signed({"per": {"*": {"*": "CRUD"}}})).adm is False


@pytest.mark.parametrize("value", ["true", 1, None, [], {}])
def test_an_adm_that_is_not_a_boolean_is_refused_by_name(value: object) -> None:
    assert failure(signed({"adm": value})) == "claim adm is invalid: expected true or false"
    with pytest.raises(ClaimError):
        mint_token({"adm": value}, HS_KEY, now=NOW)


def test_max_ttl_refuses_tokens_that_live_longer() -> None:
    bound = 3600.0
    assert ok(signed({"iat": NOW, "exp": NOW + bound}), max_ttl=bound).exp == NOW + bound
    too_long = "token lives longer than the server allows"
    assert failure(signed({"iat": NOW, "exp": NOW + bound + 1}), max_ttl=bound) == too_long
    assert failure(signed({"iat": NOW}), max_ttl=bound) == too_long  # no exp: for ever
    # Without iat the lifetime left counts from now.
    assert ok(signed({"exp": NOW + bound}), max_ttl=bound).exp == NOW + bound
    assert failure(signed({"exp": NOW + bound + 1}), max_ttl=bound) == too_long
    # Leeway widens it as it widens expiry; 0 sets no bound at all.
    assert ok(signed({"iat": NOW, "exp": NOW + bound + 5}), max_ttl=bound, leeway=5).iat == NOW
    assert ok(signed({"iat": NOW}), max_ttl=0).exp is None


@pytest.mark.parametrize(
    "token",
    [
        signed({"sub": "rider-1", "dpv": {"fleet": ["rider-1"]}, "jti": "j", "exp": NOW + 60}),
        signed({"sub": "a", "x": 9223372036854775807, "y": 1.5e-300, "z": "caf\u00e9"}),
        signed({"sub": "a"}, kid="k1"),
        signed({"sub": "a"}, typ="JWT", cty="x"),
        hand_made({"alg": "HS256"}, '{"x": 18446744073709551616}', SECRET),
        hand_made({"alg": "HS256"}, '{"x": -9223372036854775809}', SECRET),
        hand_made({"alg": "HS256"}, '{"a": 1, "a": 2}', SECRET),
        hand_made({"alg": "HS256"}, '{"x": NaN}', SECRET),
        hand_made({"alg": "HS256"}, '{"x": 1e400}', SECRET),
        hand_made({"alg": "HS256"}, '{"x": "\\ud800"}', SECRET),
        hand_made({"alg": "HS256"}, '\ufeff{"x": 1}', SECRET),
        hand_made({"alg": "HS256"}, '{"sub": 1}', SECRET),
        hand_made({"alg": "HS256"}, '{"jti": null}', SECRET),
        hand_made({"alg": "HS256", "b64": True, "crit": ["b64"]}, "{}", SECRET),
        hand_made({"alg": "HS256"}, "{}", OTHER_SECRET),
        hand_made({"alg": "HS256"}, "[]", SECRET),
        hand_made({"alg": "HS256"}, "{}", SECRET) + "=",
        hand_made({"alg": "HS256"}, "{}", SECRET)[:-1] + "B",
        "eyJhbGciOiJIUzI1NiJ9=.e30." + hand_made({"alg": "HS256"}, "{}", SECRET).split(".")[2],
    ],
)
def test_the_hs256_fast_path_answers_as_pyjwt_does(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_hs256_payload` takes the well-formed tokens; whatever it takes or leaves, the
    answer is the one PyJWT alone gives."""
    from hivectl.core import tokens

    def answer() -> object:
        try:
            claims = verify_token(token, HS_RING, now=NOW)
        except TokenError as error:
            return (error.text, error.reason)
        return (dict(claims.raw), claims.sub, claims.jti, claims.exp, claims.per, claims.dpv)

    fast = answer()
    monkeypatch.setattr(tokens, "_hs256_payload", lambda *arguments: None)
    assert fast == answer()


def test_the_hs256_fast_path_takes_a_plain_token() -> None:
    from hivectl.core import tokens

    token = signed({"sub": "a", "dpv": {"r": ["a"]}})
    header = tokens._unverified_header(token)
    payload = tokens._hs256_payload(token, header, HS_RING.candidates(header))
    assert payload == {"sub": "a", "dpv": {"r": ["a"]}}
