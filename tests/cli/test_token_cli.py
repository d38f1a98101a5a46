"""`hivectl token mint / decode / verify`: tokens the server's own code accepts, exit codes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hivectl.core.settings import load_settings
from hivectl.core.tokens import SigningKey, mint_token
from server.io.app import HivekitServer
from tests.cli.conftest import Client, ServeProcess, clean_env, invoke, words

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


def test_verify_says_when_a_token_expired(config: Path) -> None:
    key = SigningKey("HS256", SECRET.encode())
    now = time.time()
    token = mint_token({"sub": "late"}, key, now=now - 7200 - 190, ttl=7200)
    exp = int(now - 7200 - 190) + 7200
    stamp = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = invoke("token", "verify", token, "--config", str(config))
    assert result.exit_code == 3
    assert re.fullmatch(
        rf"error: token rejected: token has expired at {stamp}, 3m1[0-9]s ago",
        result.stderr.strip(),
    )

    as_json = invoke("token", "verify", token, "--config", str(config), "--json")
    assert as_json.exit_code == 3
    verdict = json.loads(as_json.stdout)
    assert (verdict["valid"], verdict["reason"], verdict["exp"]) == (False, "expired", stamp)
    assert -200 < verdict["expires_in_s"] < -189
    assert verdict["claims"]["sub"] == "late"


def test_verify_json_of_a_valid_and_of_a_forged_token(tmp_path: Path, config: Path) -> None:
    token = mint(config, "--sub", "ops", "--ttl", "1h")
    verdict = json.loads(invoke("token", "verify", token, "-c", str(config), "--json").stdout)
    assert (verdict["valid"], verdict["reason"], verdict["error"]) == (True, None, None)
    assert 3590 < verdict["expires_in_s"] <= 3600
    assert verdict["claims"]["sub"] == "ops"

    other = tmp_path / "other.secret"
    other.write_text(OTHER_SECRET)
    forged = invoke("token", "verify", token, "--secret-file", str(other), "--json")
    assert forged.exit_code == 3
    verdict = json.loads(forged.stdout)
    assert (verdict["reason"], verdict["error"]) == ("bad_signature", "signature is invalid")
    assert verdict["claims"] is None  # nothing is shown from a token whose signature fails


def test_mint_refuses_an_hs256_secret_under_32_bytes(tmp_path: Path) -> None:
    short = invoke("token", "mint", "--sub", "x", env={"HIVECTL_AUTH_SECRET": "too-short"})
    assert short.exit_code == 2
    assert "HS256 secret is 9 bytes; RFC 7518 requires at least 32 (256 bits)" in words(
        short.stderr
    )
    assert "HIVECTL_AUTH_SECRET" in short.stderr
    assert "Warning" not in short.stderr  # PyJWT's own warning is not what the user sees
    secret = tmp_path / "short.secret"
    secret.write_text("x" * 31 + "\n")
    from_file = invoke("token", "mint", "--sub", "x", "--secret-file", str(secret))
    assert from_file.exit_code == 2
    assert f"{secret}: HS256 secret is 31 bytes" in words(from_file.stderr)
    secret.write_text("x" * 32 + "\n")
    assert invoke("token", "mint", "--sub", "x", "--secret-file", str(secret)).exit_code == 0


def test_a_binary_secret_file_is_named(tmp_path: Path) -> None:
    secret = tmp_path / "binary.secret"
    secret.write_bytes(bytes(range(256)))
    for command in (("mint", "--sub", "x"), ("verify", "a.b.c")):
        result = invoke("token", *command, "--secret-file", str(secret))
        assert result.exit_code == 2
        assert f"{secret}: not a text file" in words(result.stderr)


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


def test_serve_warns_about_a_short_secret_in_its_own_words_and_serves(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    """Served, not refused: refusing would lock out every client until the secret rotates."""
    serve = ServeProcess(tmp_path, clean_env(HIVECTL_AUTH_SECRET="short"), "--storage", "memory")
    serve_process.append(serve)
    (warning,) = [line for line in serve.lines if "WARNING" in line]
    assert "HS256 secret is 5 bytes; RFC 7518 requires at least 32" in warning
    assert "InsecureKeyLengthWarning" not in serve.stderr
