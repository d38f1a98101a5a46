"""Authentication over real sockets (protocol.md §2): the first frame, failures, refresh."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hivectl.client import AuthenticationError, HivekitClient
from server.io.app import HivekitServer
from tests.conftest import SECRET, Mint, running
from tests.server.wsutil import RawClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand (PyJWT refuses to make the hostile ones)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "x", "iat": int(time.time()), "exp": int(time.time()) + 600, **extra}


def _unchecked(**extra: Any) -> str:
    """An HS256 token with the test secret whose claims are not validated when minted."""
    return jwt.encode(_claims(**extra), SECRET, algorithm="HS256")


def _failure(text: str) -> dict[str, Any]:
    return {"typ": "sys", "act": "aut", "res": "err", "err": text, "erc": 401}


BAD_TOKENS = {
    "bad signature": (lambda mint: mint(secret="another-secret-entirely-0123456789"),
                      "signature is invalid"),
    "expired": (lambda mint: mint(ttl=-60), "token has expired"),
    "not yet valid": (lambda mint: mint(nbf=time.time() + 3600), "token is not valid yet"),
    "alg none": (lambda mint: _raw_token({"alg": "none", "typ": "JWT"}, _claims(), None),
                 "algorithm not allowed"),
    "garbage": (lambda mint: "not-a-jwt", "token is malformed"),
    "per letters": (lambda mint: _unchecked(per={"r": {"*": "CX"}}),
                    'claim per is invalid: realm "r": letters must be from CRUD, got "CX"'),
    "per not nested": (lambda mint: _unchecked(per={"r": "R"}),
                       'claim per is invalid: realm "r": expected an object, got string'),
    "per not object": (lambda mint: _unchecked(per=["r"]),
                       "claim per is invalid: expected an object, got array"),
    "dpv not list": (lambda mint: _unchecked(dpv={"r": "a/*"}),
                     'claim dpv is invalid: realm "r": expected an array, got string'),
    "dpv not strings": (lambda mint: _unchecked(dpv={"r": [1]}),
                        'claim dpv is invalid: realm "r": id patterns must be strings, '
                        "got number"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_bad_token_fails_with_its_text_and_the_socket_stays_usable(
    server: HivekitServer, token: Mint, kind: str
) -> None:
    make, text = BAD_TOKENS[kind]
    client = await RawClient.open(server.ws_url)
    assert await client.auth(make(token)) == _failure(text)
    assert client.received == [_failure(text)]  # nothing before the answer, no cid

    reply = await client.request({"typ": "rea", "act": "lis", "cid": "after-failure"})
    assert reply == {
        "typ": "rea",
        "act": "lis",
        "cid": "after-failure",
        "res": "err",
        "err": "not authenticated",
        "erc": 401,
    }
    assert (await client.auth(token()))["res"] == "suc"  # a new Bearer frame is accepted
    assert await client.ok({"typ": "rea", "act": "lis"}) == {}
    await client.close()


async def test_success_reply_and_requests_before_auth(server: HivekitServer, token: Mint) -> None:
    client = await RawClient.open(server.ws_url)
    before = await client.request({"typ": "sys", "act": "hbt", "cid": 7})
    assert (before["cid"], before["res"], before["erc"]) == (7, "err", 401)
    reply = await client.auth(token())
    assert set(reply) == {"typ", "act", "res", "dat"}  # no cid
    assert (reply["typ"], reply["act"], reply["res"]) == ("sys", "aut", "suc")
    assert set(reply["dat"]) == {"version", "buildDate"}
    assert all(isinstance(v, str) and v for v in reply["dat"].values())
    await client.ok({"typ": "sys", "act": "hbt"})
    await client.close()


async def test_any_path_is_accepted(server: HivekitServer, token: Mint) -> None:
    base = server.ws_url.removesuffix("/ws")
    for path in ("/", "/ws", "/v1/ws"):
        client = await RawClient.open(base + path, token())
        await client.ok({"typ": "sys", "act": "hbt"})
        await client.close()


async def test_client_library_raises_authentication_error(
    server: HivekitServer, token: Mint
) -> None:
    client = HivekitClient(server.ws_url, token(ttl=-5), reconnect=False)
    with pytest.raises(AuthenticationError) as caught:
        await client.connect()
    assert (caught.value.code, caught.value.text) == (401, "token has expired")


async def test_rs256_server_refuses_key_confusion(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(public_pem)
    settings = {"auth.algorithm": "RS256", "auth.public_key_file": str(key_file)}
    async with running(settings) as server:
        confused = _raw_token({"alg": "HS256", "typ": "JWT"}, _claims(), public_pem)
        client = await RawClient.open(server.ws_url)
        assert await client.auth(confused) == _failure("algorithm not allowed")
        hs256 = jwt.encode(_claims(), SECRET, algorithm="HS256")
        assert await client.auth(hs256) == _failure("algorithm not allowed")
        forged = jwt.encode(
            _claims(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
        )
        assert await client.auth(forged) == _failure("signature is invalid")
        genuine = jwt.encode(_claims(), private, algorithm="RS256")
        assert (await client.auth(genuine))["res"] == "suc"
        await client.ok({"typ": "sys", "act": "hbt"})
        await client.close()


async def test_bearer_reauth_swaps_claims(server: HivekitServer, token: Mint) -> None:
    admin = await RawClient.open(server.ws_url, token("admin"))
    await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
    await admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "x"})
    update = {"typ": "obj", "act": "upd", "rea": "r", "id": "x", "lab": "new"}

    client = await RawClient.open(server.ws_url, token("u", per={"r": {"x": "R"}}))
    denied = await client.request(update)
    assert (denied["erc"], denied["err"]) == (403, "permission denied: U on r/x")

    assert (await client.auth(token("u", per={"r": {"x": "RU"}})))["res"] == "suc"
    await client.ok(update)
    assert (await admin.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "x"}))["lab"] == "new"

    # a refused refresh changes nothing: the previous claims stay in force
    refused = await client.auth(token("u", secret="wrong-secret-wrong-secret-0123456789"))
    assert refused == _failure("signature is invalid")
    await client.ok({**update, "lab": "newer"})

    assert (await client.auth(token("u", per={"r": {"x": "R"}})))["res"] == "suc"
    denied = await client.request(update)
    assert denied["erc"] == 403
    await client.close()
    await admin.close()


async def test_unauthenticated_connection_is_closed_after_the_auth_timeout(token: Mint) -> None:
    async with running({"limits.auth_timeout": 0.3}) as server:
        idle = await RawClient.open(server.ws_url)
        authenticated = await RawClient.open(server.ws_url, token())
        await idle.wait_closed()
        assert idle.ws.close_code == 1008
        assert idle.ws.close_reason == "authentication timeout"
        await authenticated.ok({"typ": "sys", "act": "hbt"})  # unaffected
        await authenticated.close()
