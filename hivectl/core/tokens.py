"""Minting and verifying the JWTs that authenticate connections (protocol.md §2, §2.1).

The JWT mechanics (base64url, JSON, signatures, ``crit``, ``iss``/``aud``) are PyJWT's;
this module decides *which* key and algorithm may verify a token and turns every way a
token can be wrong into the one-line text the client gets back (always ``erc`` 401).

Keys and algorithms:

* Every configured key is bound to one algorithm (HS256: a shared secret; RS256/ES256:
  a PEM public key). The token header never chooses the algorithm: a header ``alg`` other
  than the selected key's -- ``none``, or HS256 against an RS256 public key (the classic
  key-confusion attack) -- is ``algorithm not allowed``.
* A header ``kid`` names the key when the ring names its keys (an unknown one is
  ``unknown key id <kid>``). Without ``kid`` the unnamed keys are tried (several of them
  allow a secret rotation), or the only key when the ring holds one. A ring whose keys
  carry no ``kid`` ignores the header ``kid``: there is nothing to select among.

Checks, in order; the first failure is the answer:

================================ ===============================================
fault                            text
================================ ===============================================
not a JWS, bad base64/JSON       ``token is malformed``
``alg`` not the key's            ``algorithm not allowed``
``kid`` names no key             ``unknown key id <kid>`` (``token has no key id``)
signature                        ``signature is invalid``
``iss`` / ``aud`` (when set)     ``issuer is invalid`` / ``audience is invalid``
``per`` / ``dpv`` / ``adm``      ``claim per is invalid: ...`` (``dpv``, ``adm``
malformed                        alike)
other claim of the wrong type    ``token is malformed`` (``exp`` a string...)
``exp`` <= now - leeway          ``token has expired``
``nbf`` > now + leeway           ``token is not valid yet``
lifetime over ``max_ttl``        ``token lives longer than the server allows``
================================ ===============================================

``adm`` (true or false) is the admin grant: it is a claim of its own because a token
without ``per`` may already do everything on realms (protocol.md §7), so no value of
``per`` could mean "may also disconnect others and revoke tokens".

``max_ttl`` (``auth.max_token_ttl``), when set, bounds how long any accepted token lives
(``exp`` minus ``iat``, or minus now without ``iat``; no ``exp`` is too long): that bound
is what lets the server forget a revocation once every token it covers has expired.

Nothing is learnt from a payload before its signature holds. Time is passed in (``now``,
seconds since the epoch), never read here: PyJWT's own clock checks are switched off and
``exp``/``nbf`` are compared with ``now`` by this module, with PyJWT's boundaries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import (
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from hivectl.core.permissions import ClaimError, Permissions, ProviderPatterns

ALGORITHMS = ("HS256", "RS256", "ES256")

MALFORMED = "token is malformed"
BAD_SIGNATURE = "signature is invalid"
BAD_ALGORITHM = "algorithm not allowed"
EXPIRED = "token has expired"
NOT_YET_VALID = "token is not valid yet"
BAD_ISSUER = "issuer is invalid"
BAD_AUDIENCE = "audience is invalid"
TOO_LONG = "token lives longer than the server allows"
NO_KEY_ID = "token has no key id"

_PublicKey: TypeAlias = bytes | RSAPublicKey | EllipticCurvePublicKey
_PUBLIC_TYPES = {"HS256": bytes, "RS256": RSAPublicKey, "ES256": EllipticCurvePublicKey}
_PRIVATE_TYPES = {"HS256": bytes, "RS256": RSAPrivateKey, "ES256": EllipticCurvePrivateKey}


class TokenError(Exception):
    """Authentication failed; `text` is what the client is told, `reason` a short name from a
    fixed set (`REASONS`) for logs and metric labels, where the text may carry a key id."""

    def __init__(self, text: str, reason: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.reason = reason or _REASONS.get(text, "malformed")


_REASONS = {
    MALFORMED: "malformed",
    BAD_SIGNATURE: "bad_signature",
    BAD_ALGORITHM: "bad_algorithm",
    EXPIRED: "expired",
    NOT_YET_VALID: "not_yet_valid",
    BAD_ISSUER: "bad_issuer",
    BAD_AUDIENCE: "bad_audience",
    NO_KEY_ID: "no_key_id",
    TOO_LONG: "too_long",
}
REASONS = (*_REASONS.values(), "unknown_kid", "bad_claims")


@dataclass(frozen=True)
class VerificationKey:
    """HS256: the shared secret; RS256/ES256: the PEM public key text."""

    algorithm: str
    key: str | bytes
    kid: str | None = None

    def __post_init__(self) -> None:
        _check_algorithm(self.algorithm)


@dataclass(frozen=True)
class SigningKey:
    """HS256: the shared secret; RS256/ES256: the PEM private key text."""

    algorithm: str
    key: str | bytes
    kid: str | None = None

    def __post_init__(self) -> None:
        _check_algorithm(self.algorithm)


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")


def _prepare(key: VerificationKey | SigningKey, *, private: bool) -> Any:
    """The key as PyJWT will use it, checked once: usable, and public or private as asked."""
    name = f"{key.algorithm} key" + (f" {key.kid!r}" if key.kid is not None else "")
    try:
        prepared = jwt.get_algorithm_by_name(key.algorithm).prepare_key(key.key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as error:
        raise ValueError(f"{name} is unusable: {error}") from None
    expected = (_PRIVATE_TYPES if private else _PUBLIC_TYPES)[key.algorithm]
    if not isinstance(prepared, expected):
        raise ValueError(f"{name} must be a {'private' if private else 'public'} key")
    return _CheckedSecret(prepared) if isinstance(prepared, bytes) else prepared


class _CheckedSecret(bytes):
    """An HMAC secret that PyJWT's `HMACAlgorithm.prepare_key` has accepted once."""


class _CheckedSecretHMAC(HMACAlgorithm):
    """HMAC that takes a `_CheckedSecret` as it is.

    PyJWT prepares the key again at every verification, and for HMAC that means trying to
    read the secret as JSON, PEM, SSH and DER keys: 9 % of the server's time in a connect +
    close with a new token each time. The key ring's secrets passed that check when the
    ring was built; anything else still goes through it.
    """

    def prepare_key(self, key: str | bytes) -> bytes:
        if isinstance(key, _CheckedSecret):
            return key
        return super().prepare_key(key)

    def check_key_length(self, key: bytes) -> str | None:
        """Length is `short_secret`'s concern, said once in our words (not PyJWT's warning
        at every verification)."""
        return None


_VERIFIER = jwt.PyJWT()
"""The decoder of `_verified_payload`: PyJWT's, with HS256 taking checked secrets as they
are. PyJWT registers algorithms on its signature layer, which it keeps as ``_jws``."""
_VERIFIER._jws.unregister_algorithm("HS256")
_VERIFIER._jws.register_algorithm("HS256", _CheckedSecretHMAC(HMACAlgorithm.SHA256))


@dataclass(frozen=True)
class _ReadyKey:
    algorithm: str
    kid: str | None
    key: _PublicKey


class KeyRing:
    """The keys a server accepts, each bound to its own algorithm."""

    __slots__ = ("_algorithms", "_named", "_unnamed", "keys")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        """Raise ValueError for an empty ring, a repeated ``kid`` or an unusable key."""
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("a key ring needs at least one key")
        self._named: dict[str, _ReadyKey] = {}
        unnamed: list[_ReadyKey] = []
        for key in self.keys:
            ready = _ReadyKey(key.algorithm, key.kid, _prepare(key, private=False))
            if key.kid is None:
                unnamed.append(ready)
            elif key.kid in self._named:
                raise ValueError(f"two keys share the key id {key.kid!r}")
            else:
                self._named[key.kid] = ready
        self._unnamed = tuple(unnamed)
        self._algorithms = frozenset(key.algorithm for key in self.keys)

    def candidates(self, header: Mapping[str, Any]) -> tuple[_ReadyKey, ...]:
        """The keys that may verify a token with this (unverified) header, or TokenError."""
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise TokenError(BAD_ALGORITHM)
        chosen = tuple(key for key in self._select(header.get("kid")) if key.algorithm == algorithm)
        if not chosen:
            raise TokenError(BAD_ALGORITHM)
        return chosen

    def _select(self, kid: str | None) -> tuple[_ReadyKey, ...]:
        if kid is not None and self._named:
            if kid not in self._named:
                raise TokenError(f"unknown key id {kid}", "unknown_kid")
            return (self._named[kid],)
        if self._unnamed:
            return self._unnamed
        if len(self._named) == 1:
            return tuple(self._named.values())
        raise TokenError(NO_KEY_ID)


def load_pem(path: str | PathLike[str]) -> str:
    """The text of a PEM key file (raise ValueError when it is not PEM)."""
    text = Path(path).read_text(encoding="ascii", errors="replace")
    if not text.lstrip().startswith("-----BEGIN "):
        raise ValueError(f"{path}: not a PEM file")
    return text


def secret_from_text(text: str) -> bytes:
    """An HS256 secret from a file or variable: its UTF-8 bytes, trailing newlines removed."""
    return text.rstrip("\r\n").encode("utf-8")


def read_secret_file(path: str | PathLike[str]) -> bytes:
    """The HS256 secret in a file (see `secret_from_text`). A file that is not UTF-8 text is
    a ValueError naming it: secret files hold text, so a binary one is a mistake (a key file
    of another kind, or random bytes not encoded)."""
    data = Path(path).read_bytes()
    try:
        return secret_from_text(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not a text file; an HS256 secret file holds text, e.g. the output of"
            " `openssl rand -base64 32`"
        ) from None


MIN_HS256_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output, 256 bits."""


def short_secret(key: VerificationKey | SigningKey) -> str | None:
    """Why `key` is too short for HS256 (None when it is not an HS256 key or is long enough).

    `token mint` refuses such a key; a server warns, since refusing would lock out every
    client holding a token signed with it until the secret is rotated."""
    if key.algorithm != "HS256":
        return None
    length = len(key.key.encode() if isinstance(key.key, str) else key.key)
    if length >= MIN_HS256_SECRET_BYTES:
        return None
    name = "HS256 secret" + (f" {key.kid!r}" if key.kid is not None else "")
    return (
        f"{name} is {length} bytes; RFC 7518 requires at least {MIN_HS256_SECRET_BYTES}"
        " (256 bits): generate one with `openssl rand -base64 32` or `hivectl config init`"
    )


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    sub: str | None
    jti: str | None
    exp: float | None
    nbf: float | None
    iat: float | None
    per: Permissions
    dpv: ProviderPatterns
    raw: Mapping[str, Any]
    adm: bool = False
    """The admin grant (``adm: true``): operations on the server itself, beyond realms."""


class VerifiedTokens:
    """Tokens whose signature and claims have been verified, with their claims (LRU).

    A client that reconnects -- a phone on a flaky network, a fleet after a network blip --
    sends the same token again, and checking its signature again gives the same answer: that
    check is most of what the server spends on a connect (``hivectl bench`` churn: about
    140 of 160 µs of the hub's work per connect and close). Only tokens that verified are
    kept, so invalid ones cannot fill it; ``exp`` and ``nbf`` are still compared with the
    time of every use. Entries are keyed by the token and the settings that change the
    answer; one cache belongs to one `KeyRing`. At most `size` entries, the least recently
    used go first.
    """

    __slots__ = ("_claims", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._claims: OrderedDict[tuple[str, bool, str | None, str | None], Claims] = OrderedDict()

    def __len__(self) -> int:
        return len(self._claims)

    def get(self, key: tuple[str, bool, str | None, str | None]) -> Claims | None:
        claims = self._claims.get(key)
        if claims is not None:
            self._claims.move_to_end(key)
        return claims

    def put(self, key: tuple[str, bool, str | None, str | None], claims: Claims) -> None:
        self._claims[key] = claims
        while len(self._claims) > self.size:
            self._claims.popitem(last=False)


def verify_token(
    token: str,
    keys: KeyRing,
    *,
    now: float,
    leeway: float = 0.0,
    require_permissions: bool = False,
    issuer: str | None = None,
    audience: str | None = None,
    verified: VerifiedTokens | None = None,
    max_ttl: float = 0.0,
) -> Claims:
    """Verify `token` at time `now`; raise TokenError with the client's text.

    With `verified` (the cache of tokens `keys` verified before), a token found there skips
    the signature and claim checks; the time checks run on every call. `max_ttl` > 0
    refuses tokens that would live longer (see the module doc).
    """
    key = (token, require_permissions, issuer, audience)
    claims = verified.get(key) if verified is not None else None
    if claims is None:
        claims = _verified_claims(token, keys, require_permissions, issuer, audience)
        if verified is not None:
            verified.put(key, claims)
    if claims.exp is not None and claims.exp <= now - leeway:
        raise TokenError(EXPIRED)
    if claims.nbf is not None and claims.nbf > now + leeway:
        raise TokenError(NOT_YET_VALID)
    if max_ttl > 0 and not lives_within(claims, max_ttl + leeway, now):
        raise TokenError(TOO_LONG)
    return claims


def lives_within(claims: Claims, ttl: float, now: float) -> bool:
    """Whether a token with these claims expires within `ttl` of being issued (or of now)."""
    if claims.exp is None:
        return False
    return claims.exp - (claims.iat if claims.iat is not None else now) <= ttl


def _verified_claims(
    token: str, keys: KeyRing, require_permissions: bool, issuer: str | None, audience: str | None
) -> Claims:
    """The claims of `token` once its signature and claims hold; TokenError otherwise."""
    header = _unverified_header(token)
    candidates = keys.candidates(header)
    payload = None
    if issuer is None and audience is None:
        payload = _hs256_payload(token, header, candidates)
    if payload is None:
        payload = _verified_payload(token, candidates, issuer=issuer, audience=audience)
    try:
        # The claims are JSON the stdlib decoded, which keeps lone surrogates and integers of
        # any size: such a `sub` would later fail to encode in every reply that shows it.
        orjson.dumps(payload)
    except orjson.JSONEncodeError:
        raise TokenError(MALFORMED) from None
    try:
        claims = _read_claims(payload, require_permissions=require_permissions)
    except ClaimError as error:
        if error.claim in _OWN_TEXT:
            raise TokenError(str(error), "bad_claims") from None
        raise TokenError(MALFORMED) from None
    return claims


_OWN_TEXT = ("per", "dpv", "adm")
"""Claims whose fault is named to the client (the standard ones are ``token is malformed``)."""


def _unverified_header(token: str) -> dict[str, Any]:
    """The header that chooses the key, read from the token's first part alone.

    ``jwt.get_unverified_header`` decodes all three parts, which ``jwt.decode`` then does
    again: 19 of the 90 µs a verification took. Only what choosing a key needs is checked
    here (a JSON object, ``alg`` a string, ``kid`` absent or a string); PyJWT checks the
    whole token when it verifies it.
    """
    segment = token.partition(".")[0]
    try:
        header = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, orjson.JSONDecodeError):  # binascii.Error is a ValueError
        raise TokenError(MALFORMED) from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise TokenError(MALFORMED)
    if not isinstance(header.get("kid", ""), str):
        raise TokenError(MALFORMED)
    return header


_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
"""A compact JWS whose three parts are unpadded base64url, nothing else."""
_LONG_INTEGER = re.compile(rb"[0-9]{19,}")
"""Digits that may be an integer orjson reads as a float (past 64 bits), where the stdlib
keeps an int: such a payload takes PyJWT's path, which refuses it (`_verified_claims`)."""


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_BASE64 = bytes.maketrans(b"-_", b"+/")


def _canonical(segment: bytes) -> bool:
    """Whether an unpadded base64url segment (known to hold only that alphabet) is the one
    encoding of its bytes, as PyJWT requires: a length that leaves no lone character, and
    no bits set in its last character past the last whole byte."""
    extra = len(segment) % 4
    if extra == 0:
        return True
    if extra == 1:
        return False
    return _BASE64URL.index(segment[-1]) % (16 if extra == 2 else 4) == 0


def _base64url(segment: bytes) -> bytes:
    return binascii.a2b_base64(segment.translate(_TO_BASE64) + b"=" * (-len(segment) % 4))


def _hs256_payload(
    token: str, header: Mapping[str, Any], candidates: Sequence[_ReadyKey]
) -> dict[str, Any] | None:
    """The payload of a well-formed HS256 token that one of `candidates` signed, checked
    as PyJWT checks it (`_verified_payload`) without PyJWT's cost per call; None for
    anything else, which then goes PyJWT's way and gets its answer there.

    PyJWT spent 40-60 of the 70-100 µs a new token took (``hivectl bench`` churn with new
    tokens): segment checks in Python, the stdlib JSON decoder, options merged per call.
    This path accepts only what PyJWT accepts, with the same payload: three canonical
    unpadded base64url parts; a header without ``crit`` or ``b64`` (PyJWT's extensions);
    a signature that is the HMAC-SHA256 of the first two parts under the key; a payload
    that is a JSON object orjson reads as the stdlib does (no integer orjson would turn
    into a float; anything orjson refuses goes to PyJWT: NaN, lone surrogates, a BOM,
    UTF-16); ``sub`` and ``jti`` strings when present. Issuer and audience checks are left
    to PyJWT (the caller passes neither).
    """
    if "crit" in header or "b64" in header or _COMPACT.fullmatch(token) is None:
        return None
    data = token.encode("ascii")
    signing_input, _, signature_segment = data.rpartition(b".")
    header_segment, _, payload_segment = signing_input.partition(b".")
    if not (_canonical(header_segment) and _canonical(payload_segment)):
        return None
    if not _canonical(signature_segment):
        return None
    signature = _base64url(signature_segment)
    for key in candidates:
        if key.algorithm != "HS256" or not isinstance(key.key, bytes):
            continue
        expected = hmac.new(key.key, signing_input, hashlib.sha256).digest()
        if hmac.compare_digest(signature, expected):
            break
    else:
        return None
    raw = _base64url(payload_segment)
    if _LONG_INTEGER.search(raw) is not None:
        return None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    for name in ("sub", "jti"):
        if name in payload and not isinstance(payload[name], str):
            return None
    return payload


def _verified_payload(
    token: str, candidates: Sequence[_ReadyKey], *, issuer: str | None, audience: str | None
) -> dict[str, Any]:
    options: Options = {
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_iss": issuer is not None,
        "verify_aud": audience is not None,
    }
    for key in candidates:
        try:
            return _VERIFIER.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                options=options,
                issuer=issuer,
                audience=audience,
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as error:
            raise TokenError(_error_text(error)) from None
    raise TokenError(BAD_SIGNATURE)


def _error_text(error: jwt.InvalidTokenError) -> str:
    if isinstance(error, jwt.InvalidIssuerError):
        return BAD_ISSUER
    if isinstance(error, jwt.InvalidAudienceError):
        return BAD_AUDIENCE
    if isinstance(error, jwt.MissingRequiredClaimError):
        return {"iss": BAD_ISSUER, "aud": BAD_AUDIENCE}.get(error.claim, MALFORMED)
    return MALFORMED


def _read_claims(payload: Mapping[str, Any], *, require_permissions: bool) -> Claims:
    """Type-check the claims we use; ClaimError names the first bad one."""
    if "per" in payload:
        per = Permissions.parse(payload["per"])
    else:
        per = Permissions.nothing() if require_permissions else Permissions.unrestricted()
    dpv = ProviderPatterns.parse(payload["dpv"]) if "dpv" in payload else ProviderPatterns.empty()
    return Claims(
        sub=_string(payload, "sub"),
        jti=_string(payload, "jti"),
        exp=_number(payload, "exp"),
        nbf=_number(payload, "nbf"),
        iat=_number(payload, "iat"),
        per=per,
        dpv=dpv,
        raw=MappingProxyType(payload),
        adm=_flag(payload, "adm"),
    )


def _flag(payload: Mapping[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise ClaimError(name, "expected true or false")
    return value


def _string(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if name in payload and not isinstance(value, str):
        raise ClaimError(name, "expected a string")
    return value


def _number(payload: Mapping[str, Any], name: str) -> float | None:
    if name not in payload:
        return None
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(name, "expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ClaimError(name, "expected a finite number")
    return number


def mint_token(
    claims: Mapping[str, Any], key: SigningKey, *, now: float, ttl: float | None = None
) -> str:
    """Sign `claims` with `key`, setting ``iat`` (and ``exp`` = now + ttl when given).

    Raise ClaimError for claims a server would refuse (``per``, ``dpv``, ``sub``, ``exp``...),
    ValueError for an unusable key (an HS256 secret under 32 bytes included).
    """
    payload = {**claims, "iat": int(now)}
    if ttl is not None:
        payload["exp"] = int(now + ttl)
    _read_claims(payload, require_permissions=False)
    too_short = short_secret(key)
    if too_short is not None:
        raise ValueError(too_short)
    private = _prepare(key, private=True)
    headers = {"kid": key.kid} if key.kid is not None else None
    return jwt.encode(payload, private, algorithm=key.algorithm, headers=headers)


def unverified_identity(token: str) -> tuple[str | None, str | None]:
    """The ``sub`` and ``kid`` a token claims, NOT verified: for the log line of a refusal,
    so an operator can tell whose token failed (None where unreadable; cut to 200 chars)."""
    try:
        header, claims = decode_unverified(token)
    except TokenError:
        return None, None
    sub, kid = claims.get("sub"), header.get("kid")
    return (
        sub[:200] if isinstance(sub, str) else None,
        kid[:200] if isinstance(kid, str) else None,
    )


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a token, signature and times NOT checked (for display only)."""
    try:
        decoded = jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenError(MALFORMED) from None
    return decoded["header"], decoded["payload"]
