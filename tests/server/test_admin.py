"""Operator requests (``typ:"adm"``) against a real server: connections, disconnects, revocations.

Over the WebSocket and ``POST /api/v1`` alike; only tokens with ``adm: true`` may use them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from server.io.app import HivekitServer
from tests.conftest import SECRET, Mint, mint, running
from tests.server.wsutil import RawClient, eventually, is_status, post

ACTIONS = [
    ("con", {}),
    ("dis", {"sub": "rider-1"}),
    ("rev", {"jti": "j1"}),
    ("rvl", None),
    ("cst", None),
]
REALM = "london"


def adm(act: str, dat: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"typ": "adm", "act": act, **fields}
    if dat is not None:
        message["dat"] = dat
    return message


async def admin_client(server: HivekitServer) -> RawClient:
    return await RawClient.open(server.ws_url, mint("ops", adm=True))


async def with_rider(admin: RawClient, rider: str) -> None:
    """Realm `REALM` and the rider's object in it (idempotent)."""
    await admin.request({"typ": "rea", "act": "cre", "id": REALM})
    await admin.ok({"typ": "obj", "act": "cre", "rea": REALM, "id": f"riders/{rider}"})


async def rider_connection(
    server: HivekitServer, rider: str, *, jti: str | None = None, ttl: float | None = 3600
) -> RawClient:
    claims: dict[str, Any] = {"jti": jti} if jti is not None else {}
    own = f"riders/{rider}"
    token = mint(rider, per={REALM: {own: "RU"}}, dpv={REALM: [own]}, ttl=ttl, **claims)
    return await RawClient.open(server.ws_url, token)


async def ledger(client: RawClient, rider: str) -> dict[str, Any]:
    result: dict[str, Any] = await client.ok(
        {"typ": "sys", "act": "pre", "rea": REALM, "id": f"riders/{rider}"}
    )
    return result


# -- the admin grant -----------------------------------------------------------------


@pytest.mark.parametrize(("act", "dat"), ACTIONS)
@pytest.mark.parametrize(
    "claims",
    [{}, {"adm": False}, {"per": {"*": {"*": "CRUD"}}}],
    ids=["no per", "adm false", "every right"],
)
async def test_a_non_admin_token_gets_403_for_every_admin_action(
    server: HivekitServer, act: str, dat: dict[str, Any] | None, claims: dict[str, Any]
) -> None:
    client = await RawClient.open(server.ws_url, mint("someone", **claims))
    rider = await rider_connection(server, "rider-1", jti="j1")
    try:
        reply = await client.request(adm(act, dat))
        assert (reply["res"], reply["erc"], reply["typ"], reply["act"]) == ("err", 403, "adm", act)
        assert "adm claim" in reply["err"]
        assert "dat" not in reply  # nothing about other connections leaks
        status, body = await post(server.api_url or "", [adm(act, dat, cid=1)], mint("x", **claims))
        assert status == 200
        assert [(entry["cid"], entry["erc"]) for entry in body] == [(1, 403)]
        # Nothing happened: the rider is still connected, its token still accepted.
        await rider.marker()
        assert not rider.closed
        assert (await RawClient.open(server.ws_url, mint("rider-1", jti="j1"))).ws is not None
    finally:
        await client.close()
        await rider.close()


async def test_the_http_api_serves_admin_requests(server: HivekitServer) -> None:
    token = mint("ops", adm=True)
    status, body = await post(
        server.api_url or "",
        [adm("rev", {"sub": "rider-9"}, cid="r"), adm("rvl", cid="l"), adm("con", cid="c")],
        token,
    )
    assert status == 200
    replies = {entry["cid"]: entry for entry in body}
    assert replies["r"]["dat"]["revocation"]["sub"] == "rider-9"
    assert [entry["sub"] for entry in replies["l"]["dat"]["revocations"]] == ["rider-9"]
    assert replies["c"]["dat"] == {"connections": [], "unanswered": []}  # HTTP is no connection


# -- connections ---------------------------------------------------------------------


async def test_connections_list_shows_each_connection_sorted_and_filtered(
    server: HivekitServer,
) -> None:
    admin = await admin_client(server)
    await with_rider(admin, "b")
    riders = [await rider_connection(server, name, jti=f"j-{name}") for name in ("b", "a")]
    idle = await RawClient.open(server.ws_url)  # not authenticated yet
    other = await RawClient.open(server.ws_url, mint("watcher", per={"paris": {"*": "R"}}))
    try:
        await riders[0].ok({"typ": "obj", "act": "rea", "rea": REALM, "id": "riders/b"})
        listed = (await admin.ok(adm("con")))["connections"]
        assert [entry["sub"] for entry in listed] == ["a", "b", "ops", "watcher", None]
        b = listed[1]
        assert set(b) == {
            "id",
            "node",
            "remote",
            "sub",
            "jti",
            "dpv",
            "since",
            "messagesIn",
            "messagesOut",
            "queued",
        }
        assert (b["node"], b["jti"], b["dpv"]) == (server.node_id, "j-b", {REALM: ["riders/b"]})
        assert b["remote"].startswith("127.0.0.1:")
        assert b["id"].startswith(f"{server.node_id}:")
        assert (b["messagesIn"], b["messagesOut"], b["queued"]) == (1, 2, 0)  # rea; aut + reply
        assert b["since"] <= time.strftime("%Y-%m-%dT%H:%M:%S.999Z", time.gmtime())

        async def subs(dat: dict[str, Any]) -> list[str | None]:
            result = await admin.ok(adm("con", dat))
            return [entry["sub"] for entry in result["connections"]]

        assert await subs({"sub": "?"}) == []  # literal, as in every id pattern
        assert await subs({"sub": "*"}) == ["a", "b", "ops", "watcher"]
        assert await subs({"sub": "a"}) == ["a"]
        # A realm: the tokens that provide for it or may act in it (no per: every realm).
        assert await subs({"realm": REALM}) == ["a", "b", "ops"]
        assert await subs({"realm": "paris"}) == ["ops", "watcher"]
        assert await subs({"node": server.node_id, "sub": "b"}) == ["b"]
        assert await subs({"node": "elsewhere"}) == []
        for bad in ({"sub": 1}, {"nod": "x"}, {"realm": ""}):
            reply = await admin.request(adm("con", bad))
            assert (reply["res"], reply["erc"]) == ("err", 400), reply
        assert (await admin.request(adm("con", [])))["erc"] == 400  # type: ignore[arg-type]
    finally:
        for client in (admin, *riders, idle, other):
            await client.close()


# -- disconnect ----------------------------------------------------------------------


@pytest.mark.parametrize("by", ["conn", "sub", "jti"])
async def test_disconnect_closes_with_4003_and_the_object_goes_disconnected_kicked(
    server: HivekitServer, by: str
) -> None:
    admin = await admin_client(server)
    await with_rider(admin, "r1")
    await admin.ok(
        {"typ": "rea", "act": "sub", "id": REALM, "dat": {"eve": "connectionStatusChanged"}}
    )
    rider = await rider_connection(server, "r1", jti="j-r1")
    bystander = await rider_connection(server, "r2", jti="j-r2")
    try:
        await admin.wait_for(is_status("riders/r1", "con"))
        listed = (await admin.ok(adm("con", {"sub": "r1"})))["connections"]
        target = {"conn": listed[0]["id"], "sub": "r1", "jti": "j-r1"}[by]
        result = await admin.ok(adm("dis", {by: target, "reason": "left the company"}))
        assert result == {
            "disconnected": [{"id": listed[0]["id"], "node": server.node_id, "sub": "r1"}],
            "unanswered": [],
        }
        await rider.wait_closed()
        assert (rider.ws.close_code, rider.ws.close_reason) == (4003, "kicked: left the company")
        await admin.wait_for(is_status("riders/r1", "dis"))
        explained = await ledger(admin, "r1")
        assert (explained["cst"], explained["lastReason"]) == ("dis", "kicked")
        await bystander.marker()
        assert not bystander.closed
        # A kick is not a revocation: the same token connects again.
        again = await rider_connection(server, "r1", jti="j-r1")
        await again.close()
    finally:
        for client in (admin, rider, bystander):
            await client.close()


async def test_disconnect_needs_exactly_one_target(server: HivekitServer) -> None:
    admin = await admin_client(server)
    try:
        for dat in ({}, {"sub": "a", "jti": "b"}, {"reason": "x"}, {"conn": 5}):
            reply = await admin.request(adm("dis", dat))
            assert (reply["res"], reply["erc"]) == ("err", 400), reply
        assert await admin.ok(adm("dis", {"sub": "nobody"})) == {
            "disconnected": [],
            "unanswered": [],
        }
    finally:
        await admin.close()


# -- revoke --------------------------------------------------------------------------


async def test_a_revoked_jti_is_closed_and_refused_everywhere(server: HivekitServer) -> None:
    admin = await admin_client(server)
    await with_rider(admin, "r1")
    token = mint("r1", per={REALM: {"riders/r1": "RU"}}, dpv={REALM: ["riders/r1"]}, jti="stolen")
    rider = await RawClient.open(server.ws_url, token)  # verified once: in the server's cache
    other = await rider_connection(server, "r2", jti="fine")
    try:
        result = await admin.ok(adm("rev", {"jti": "stolen"}))
        # Its expiry was known from the live connection: forgotten at the token's exp.
        assert result["revocation"]["jti"] == "stolen"
        assert result["revocation"]["expires"] is not None
        await rider.wait_closed()
        assert (rider.ws.close_code, rider.ws.close_reason) == (4003, "token revoked")
        assert (await ledger(admin, "r1"))["lastReason"] == "revoked"
        refused = await RawClient.open(server.ws_url)
        assert (await refused.auth(token))["err"] == "token has been revoked"
        reauth = await other.auth(token)  # re-authentication on a live connection
        assert (reauth["res"], reauth["erc"], reauth["err"]) == (
            "err",
            401,
            "token has been revoked",
        )
        await other.marker()  # and that connection keeps its old token
        assert not other.closed
        status, body = await post(
            server.api_url or "", [{"typ": "sys", "act": "hbt", "cid": 1}], token
        )
        assert (status, body) == (401, {"err": "token has been revoked", "erc": 401})
        await refused.close()
    finally:
        for client in (admin, rider, other):
            await client.close()


async def test_a_sub_revocation_covers_tokens_issued_before(server: HivekitServer) -> None:
    admin = await admin_client(server)
    issued = int(time.time()) - 120  # minted two minutes ago
    old = jwt.encode({"sub": "rider-7", "iat": issued, "exp": issued + 3600}, SECRET)
    rider = await RawClient.open(server.ws_url, old)
    try:
        cutoff = time.time() - 60
        await admin.ok(adm("rev", {"sub": "rider-7", "issuedBefore": cutoff}))
        await rider.wait_closed()
        assert rider.ws.close_code == 4003
        assert (await (await RawClient.open(server.ws_url)).auth(old))["res"] == "err"
        newer = await RawClient.open(server.ws_url, mint("rider-7"))  # issued after: accepted
        await newer.close()
        listed = (await admin.ok(adm("rvl")))["revocations"]
        assert [(entry["sub"], entry["expires"]) for entry in listed] == [("rider-7", None)]
        for dat in ({}, {"jti": "a", "sub": "b"}, {"sub": "x", "issuedBefore": "yesterday"}):
            assert (await admin.request(adm("rev", dat)))["erc"] == 400
        iso = await admin.ok(adm("rev", {"sub": "s", "issuedBefore": "2026-01-01T00:00:00+00:00"}))
        assert iso["revocation"]["issuedBefore"] == "2026-01-01T00:00:00.000Z"
    finally:
        await admin.close()
        await rider.close()


async def test_a_revocation_is_forgotten_once_the_token_has_expired(server: HivekitServer) -> None:
    admin = await admin_client(server)
    rider = await rider_connection(server, "brief", jti="brief", ttl=1)
    try:
        result = await admin.ok(adm("rev", {"jti": "brief"}))
        assert result["revocation"]["expires"] is not None
        assert len((await admin.ok(adm("rvl")))["revocations"]) == 1

        async def forgotten() -> bool:
            return (await admin.ok(adm("rvl")))["revocations"] == []

        await eventually(forgotten, timeout=5.0)
    finally:
        await admin.close()
        await rider.close()


async def test_max_token_ttl_bounds_a_revocation_of_unknown_expiry(token: Mint) -> None:
    async with running({"auth.max_token_ttl": "1h"}) as server:
        admin = await RawClient.open(server.ws_url, mint("ops", adm=True, ttl=60))
        try:
            before = time.time()
            result = await admin.ok(adm("rev", {"jti": "never-seen"}))
            expires = result["revocation"]["expires"]
            assert expires[:16] == time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before + 3600))[:16]
            refused = await RawClient.open(server.ws_url)
            reply = await refused.auth(mint("x", ttl=7200))
            assert reply["err"] == "token lives longer than the server allows"
            await refused.close()
        finally:
            await admin.close()


async def test_revocations_survive_a_restart_with_sqlite(tmp_path: Path) -> None:
    settings = {"storage.backend": "sqlite", "storage.path": str(tmp_path / "hive.db")}
    token = mint("r1", jti="stolen")
    async with running(settings) as server:
        admin = await admin_client(server)
        await admin.ok(adm("rev", {"jti": "stolen"}))
        await admin.close()
    async with running(settings) as server:
        client = await RawClient.open(server.ws_url)
        assert (await client.auth(token))["err"] == "token has been revoked"
        admin = await admin_client(server)
        listed = (await admin.ok(adm("rvl")))["revocations"]
        assert [entry["jti"] for entry in listed] == ["stolen"]
        await admin.close()
        await client.close()
