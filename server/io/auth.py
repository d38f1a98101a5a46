"""Verification keys from the `[auth]` settings.

Each key is bound to one algorithm by configuration; the token header only picks a
key by ``kid``, never the algorithm. A secret is read from the settings (which took it
from the environment) or from a file, never required as a command-line value.
"""

from __future__ import annotations

from pathlib import Path

from hivectl.core.settings import AuthSettings
from hivectl.core.tokens import KeyRing, VerificationKey, load_pem, read_secret_file


class AuthConfigError(ValueError):
    """The settings do not yield a usable key (no secret, unreadable key file...)."""


def keyring_from_settings(auth: AuthSettings) -> KeyRing:
    keys = [_main_key(auth)] if _has_main_key(auth) else []
    for entry in auth.keys:
        keys.append(
            _key(
                entry.algorithm,
                entry.secret,
                entry.secret_file,
                entry.public_key_file,
                entry.kid or None,
            )
        )
    if not keys:
        raise AuthConfigError(
            "no signing secret configured: set HIVECTL_AUTH_SECRET or [auth] secret_file"
        )
    return KeyRing(keys)


def _has_main_key(auth: AuthSettings) -> bool:
    return bool(auth.secret or auth.secret_file or auth.public_key_file)


def _main_key(auth: AuthSettings) -> VerificationKey:
    return _key(auth.algorithm, auth.secret, auth.secret_file, auth.public_key_file, None)


def _key(
    algorithm: str, secret: str, secret_file: str, public_key_file: str, kid: str | None
) -> VerificationKey:
    try:
        if algorithm == "HS256":
            if secret:
                material: str | bytes = secret.encode()
            elif secret_file:
                material = read_secret_file(secret_file)
            else:
                raise AuthConfigError("HS256 needs a secret or a secret_file")
        else:
            if not public_key_file:
                raise AuthConfigError(f"{algorithm} needs a public_key_file")
            material = load_pem(Path(public_key_file))
    except OSError as exc:
        raise AuthConfigError(f"cannot read key file: {exc}") from None
    return VerificationKey(algorithm=algorithm, key=material, kid=kid)
