"""Key material on disk: the generated zero-config secret and the key `token mint` signs with.

Zero-config start: when ``[auth]`` names no key at all (HS256 with no ``secret``, no
``secret_file`` and no ``[[auth.keys]]``), ``hivectl serve`` generates a secret on its first
start and keeps it beside its data, as ``hivectl.secret`` in the directory of
``[storage].path``, readable by its owner only (mode 0600). Every command that needs the key
(`serve`, `token mint`, `token verify`, `config show`) resolves it with `with_generated_secret`,
so a token minted in the same place (same config, same working directory) is one the server
accepts. Only `serve` creates the file; the others find it or say how to get one.

The file is created with ``O_EXCL``: two servers starting at once keep the first one's secret,
and an existing secret is never overwritten (tokens minted with it would stop working).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from hivectl.core.settings import AuthSettings, Settings
from hivectl.core.tokens import SigningKey, load_pem, read_secret_file, short_secret

SECRET_FILE_NAME = "hivectl.secret"


class KeyFileError(ValueError):
    """No usable signing key: the message says which setting to fix."""


@dataclass(frozen=True)
class GeneratedSecret:
    path: Path
    created: bool
    """True when this call wrote the file (the first start)."""


def needs_generated_secret(auth: AuthSettings) -> bool:
    """True when the settings name no key, so the generated secret is the key."""
    return auth.algorithm == "HS256" and not (auth.secret or auth.secret_file or auth.keys)


def generated_secret_path(settings: Settings) -> Path:
    """Where the generated secret lives: beside the data, ``[storage].path``'s directory."""
    return Path(settings.storage.path).parent / SECRET_FILE_NAME


def create_secret_file(path: Path) -> bool:
    """Write a fresh 32-byte URL-safe secret to `path` with mode 0600; False if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return True


def with_generated_secret(
    settings: Settings, *, create: bool
) -> tuple[Settings, GeneratedSecret | None]:
    """`settings` with ``[auth].secret_file`` pointing at the generated secret when no key is
    configured and the file exists (or was just created, when `create`); else unchanged."""
    if not needs_generated_secret(settings.auth):
        return settings, None
    path = generated_secret_path(settings)
    created = create_secret_file(path) if create else False
    if not path.is_file():
        return settings, None
    auth = replace(settings.auth, secret_file=str(path))
    return replace(settings, auth=auth), GeneratedSecret(path, created)


def signing_key(auth: AuthSettings, *, kid: str | None = None) -> SigningKey:
    """The key `token mint` signs with: the HS256 secret, or the RS256/ES256 private key file.

    Raise `KeyFileError` when nothing usable is configured, an HS256 secret is shorter than
    RFC 7518 allows, or a file cannot be read or is not a key (each naming the file).
    """
    try:
        if auth.algorithm == "HS256":
            if auth.secret:
                return _long_enough(
                    SigningKey("HS256", auth.secret.encode(), kid),
                    "[auth].secret (HIVECTL_AUTH_SECRET)",
                )
            if auth.secret_file:
                secret = SigningKey("HS256", read_secret_file(auth.secret_file), kid)
                return _long_enough(secret, auth.secret_file)
            raise KeyFileError(
                "no signing secret: set HIVECTL_AUTH_SECRET, --secret-file or [auth].secret_file"
            )
        if not auth.private_key_file:
            raise KeyFileError(f"{auth.algorithm} needs [auth].private_key_file to sign tokens")
        return SigningKey(auth.algorithm, load_pem(auth.private_key_file), kid)
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file: {exc}") from None
    except KeyFileError:
        raise
    except ValueError as exc:  # a secret file that is not text, a key file that is not PEM
        raise KeyFileError(str(exc)) from None


def _long_enough(key: SigningKey, where: str) -> SigningKey:
    too_short = short_secret(key)
    if too_short is not None:
        raise KeyFileError(f"{where}: {too_short}")
    return key
