"""Keys and tokens for the client-side commands (`simulate`, `watch`, `presence`).

They resolve the signing key exactly as `hivectl serve` and `token mint` do (the generated
secret included), so tokens they mint on the server's machine are ones the server accepts,
and an operator there needs no token flag at all.
"""

from __future__ import annotations

from pathlib import Path

from hivectl.cli.common import EXIT_USAGE, fail
from hivectl.core.keyfiles import KeyFileError, signing_key, with_generated_secret
from hivectl.core.settings import Settings
from hivectl.core.tokens import SigningKey


def signing_key_or_exit(settings: Settings, purpose: str) -> SigningKey:
    """The configured signing key; exit 2 naming the settings to fix when there is none."""
    settings, _ = with_generated_secret(settings, create=False)
    try:
        return signing_key(settings.auth)
    except KeyFileError as exc:
        fail(f"{purpose} needs the server's signing key: {exc}", EXIT_USAGE)


def configured_token(settings: Settings) -> str | None:
    """``[client] token`` (``--token``, ``$HIVECTL_TOKEN``) or ``token_file``, if set."""
    client = settings.client
    if client.token:
        return client.token
    if client.token_file:
        try:
            return Path(client.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"cannot read [client].token_file: {exc}", EXIT_USAGE)
    return None
