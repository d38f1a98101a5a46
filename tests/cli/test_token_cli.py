"""`hivectl token mint / decode / verify`: tokens the server's own code accepts, exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hivectl.core.settings import load_settings
from hivectl.core.tokens import SigningKey, mint_token
from server.app import HivekitServer
from tests.cli.conftest import Client, invoke, words

SECRET = "cli-test-secret-0123456789-abcdefghijkl"
OTHER_SECRET = "another-secret-0123456789-abcdefghijklm"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose secret is in a file, as `config init` would write it."""
    secret = tmp_path / "jwt.secret"
    secret.write_text(SECRET + "\n")
    path = tmp_path / "hivectl-test.toml"
    path.write_text(
        f'[server]\nport = 0\napi_port = 0\n[auth]\nsecret_file = "{secret}"\n'
        '[storage]\nbackend = "memory"\n'
    )
    return path


def mint(config: Path, *args: str) -> str:
    result = invoke("token", "mint", "--config", str(config), *args)
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    return token


@pytest.fixture
async def server(config: Path) -> AsyncIterator[HivekitServer]:
    """A real server started from the same config file the CLI reads."""
    running = HivekitServer(load_settings(config_file=config).settings)
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def test_a_minted_token_is_accepted_and_its_claims_take_effect(
    config: Path, server: HivekitServer
) -> None:
    admin = await Client.open(server.ws_url)
    assert (await admin.authenticate(mint(config, "--sub", "ops", "--per", "london:*=CRUD")))[
        "res"
    ] == "suc"
    assert (await admin.call(typ="rea", act="cre", id="london"))["res"] == "suc"
    rider_id = "deliveryRiders/johndoe-123"
    assert (await admin.call(typ="obj", act="cre", rea="london", id=rider_id))["res"] == "suc"
    read = {"typ": "obj", "act": "rea", "rea": "london", "id": rider_id}
    assert (await admin.call(**read))["dat"]["cst"] == "dis"

    rider_token = mint(
        config,
        "--sub",
        "johndoe-123",
        "--per",
        "london:deliveryRiders/*=R",
        "--dpv",
        f"london:{rider_id}",
    )
    rider = await Client.open(server.ws_url)
    assert (await rider.authenticate(rider_token))["res"] == "suc"
    assert (await admin.call(**read))["dat"]["cst"] == "con"  # dpv keeps it online
    assert (await rider.call(**read))["res"] == "suc"  # per grants R
    update = await rider.call(typ="obj", act="upd", rea="london", id=rider_id, dat={"a": 1})
    assert update["erc"] == 403  # ... and nothing else
    for client in (admin, rider):
        await client.close()


async def test_a_token_signed_with_another_secret_is_rejected(
    tmp_path: Path, config: Path, server: HivekitServer
) -> None:
    other = tmp_path / "other.secret"
    other.write_text(OTHER_SECRET)
    token = mint(config, "--sub", "mallory", "--secret-file", str(other))
    client = await Client.open(server.ws_url)
    reply = await client.authenticate(token)
    assert (reply["res"], reply["erc"], reply["err"]) == ("err", 401, "signature is invalid")
    await client.close()


def test_verify_exits_0_with_the_claims_or_3_with_the_reason(tmp_path: Path, config: Path) -> None:
    token = mint(config, "--sub", "ops", "--per", "london:*=R", "--dpv", "london:cars/1")
    accepted = invoke("token", "verify", token, "--config", str(config))
    assert accepted.exit_code == 0, accepted.stderr
    claims = json.loads(accepted.stdout)
    assert claims["sub"] == "ops"
    assert claims["per"] == {"london": {"*": "R"}}
    assert claims["dpv"] == {"london": ["cars/1"]}

    from_stdin = invoke("token", "verify", "-", "--config", str(config), stdin=token + "\n")
    assert from_stdin.exit_code == 0

    other = tmp_path / "other.secret"
    other.write_text(OTHER_SECRET)
    rejected = invoke("token", "verify", token, "--secret-file", str(other))
    assert rejected.exit_code == 3
    assert "token rejected: signature is invalid" in words(rejected.stderr)
    assert rejected.stdout == ""

    garbage = invoke("token", "verify", "not-a-token", "--config", str(config))
    assert garbage.exit_code == 3
    assert "token is malformed" in words(garbage.stderr)


def test_verify_reports_an_expired_token(config: Path) -> None:
    key = SigningKey("HS256", SECRET.encode())
    token = mint_token({"sub": "late"}, key, now=time.time() - 7200, ttl=3600)
    result = invoke("token", "verify", token, "--config", str(config))
    assert result.exit_code == 3
    assert "token rejected: token has expired" in words(result.stderr)


@pytest.mark.parametrize(
    ("flag", "value", "form"),
    [
        ("--per", "london:cars/*", "REALM:PATTERN=LETTERS"),
        ("--per", "london:cars/*=CRUX", "REALM:PATTERN=LETTERS"),
        ("--per", "cars=R", "REALM:PATTERN=LETTERS"),
        ("--dpv", "just-a-realm", "REALM:PATTERN"),
        ("--ttl", "soon", 'a duration like "30s"'),
        ("--ttl", "0s", "must be longer than 0s"),
    ],
)
def test_bad_flags_are_usage_errors_showing_the_form(
    config: Path, flag: str, value: str, form: str
) -> None:
    result = invoke("token", "mint", "--config", str(config), "--sub", "x", flag, value)
    assert result.exit_code == 2
    assert form in words(result.stderr)
    assert flag in words(result.stderr)
    assert result.stdout == ""


def test_ttl_jti_kid_and_claims_file(tmp_path: Path, config: Path) -> None:
    extra = tmp_path / "claims.json"
    extra.write_text(json.dumps({"tnd": "acme", "sub": "overridden"}))
    result = invoke(
        "token",
        "mint",
        "--config",
        str(config),
        "--sub",
        "rider-12",
        "--ttl",
        "30m",
        "--jti",
        "--kid",
        "2026-11",
        "--claims",
        str(extra),
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    minted = json.loads(result.stdout)
    claims = minted["claims"]
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert claims["sub"] == "rider-12"  # the flag wins over the file
    assert claims["tnd"] == "acme"
    assert len(claims["jti"]) == 16
    assert minted["header"] == {"alg": "HS256", "kid": "2026-11", "typ": "JWT"}

    decoded = invoke("token", "decode", minted["token"])
    assert decoded.exit_code == 0
    assert json.loads(decoded.stdout) == {"header": minted["header"], "claims": claims}
    assert "signature NOT verified" in decoded.stderr


def test_decode_of_garbage_is_a_usage_error() -> None:
    result = invoke("token", "decode", "-", stdin="abc.def\n")
    assert result.exit_code == 2
    assert "token is malformed" in result.stderr


def test_the_secret_comes_from_the_environment_too() -> None:
    env = {"HIVECTL_AUTH_SECRET": SECRET}
    token = invoke("token", "mint", "--sub", "x", env=env).stdout.strip()
    assert invoke("token", "verify", token, env=env).exit_code == 0


def test_mint_without_any_key_says_how_to_get_one() -> None:
    result = invoke("token", "mint", "--sub", "x")
    assert result.exit_code == 2
    message = words(result.stderr)
    assert "HIVECTL_AUTH_SECRET" in message and "--secret-file" in message
    assert "run `hivectl serve` here once" in message


def test_es256_tokens_are_signed_with_the_private_key_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "key.pem"
    public = tmp_path / "key.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = tmp_path / "es256.toml"
    config.write_text(
        f'[auth]\nalgorithm = "ES256"\npublic_key_file = "{public}"\n'
        f'private_key_file = "{private}"\n'
    )
    result = invoke("token", "mint", "--config", str(config), "--sub", "x", "--json")
    assert result.exit_code == 0, result.stderr
    minted = json.loads(result.stdout)
    assert minted["header"]["alg"] == "ES256"
    assert invoke("token", "verify", minted["token"], "--config", str(config)).exit_code == 0
    assert invoke("config", "check", "--config", str(config)).exit_code == 0

    config.write_text(f'[auth]\nalgorithm = "ES256"\npublic_key_file = "{public}"\n')
    missing = invoke("token", "mint", "--config", str(config), "--sub", "x")
    assert missing.exit_code == 2
    assert "ES256 needs [auth].private_key_file" in words(missing.stderr)
