"""Shared fixtures: a real server on port 0 and a token factory for its secret."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from hivectl.core.settings import Settings, load_settings
from hivectl.core.tokens import SigningKey, mint_token
from server.io.app import HivekitServer

SECRET = "test-secret-0123456789-abcdefghijklmnop"

Mint = Callable[..., str]


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: memory storage, ephemeral ports, the test secret."""
    base: dict[str, Any] = {
        "server.port": 0,
        "server.api_port": 0,
        "storage.backend": "memory",
        "auth.secret": SECRET,
    }
    base.update(overrides)
    return load_settings(env={}, overrides=base).settings


def mint(
    sub: str = "tester",
    *,
    per: dict[str, dict[str, str]] | None = None,
    dpv: dict[str, list[str]] | None = None,
    ttl: float | None = 3600,
    secret: str = SECRET,
    **extra: Any,
) -> str:
    claims: dict[str, Any] = {"sub": sub, **extra}
    if per is not None:
        claims["per"] = per
    if dpv is not None:
        claims["dpv"] = dpv
    return mint_token(claims, SigningKey("HS256", secret.encode()), now=time.time(), ttl=ttl)


@pytest.fixture
def token() -> Mint:
    return mint


@contextlib.asynccontextmanager
async def running(overrides: dict[str, Any] | None = None) -> AsyncIterator[HivekitServer]:
    """A real server on port 0 with settings overrides (dotted keys), closed after."""
    server = HivekitServer(make_settings(**(overrides or {})))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def server() -> AsyncIterator[HivekitServer]:
    async with running() as started:
        yield started
