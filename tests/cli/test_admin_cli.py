"""`hivectl connections list`, `disconnect`, `token revoke` / `revocations`, `token mint --admin`.

Flags become requests (`hivectl.cli.admin.call` replaced by a recorder, as uvicorn's tests
replace ``uvicorn.run``), then end to end against a real `hivectl serve` process, with
devices connected from this process.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from hivectl.cli import admin
from hivectl.core.tokens import decode_unverified
from tests.cli.conftest import ServeProcess, invoke, words
from tests.cli.test_presence_cli import cli
from tests.conftest import SECRET, mint

Calls = list[tuple[str, dict[str, Any]]]

ANSWERS: dict[str, dict[str, Any]] = {
    "con": {
        "connections": [
            {
                "id": "a#1:x:7",
                "node": "a#1",
                "remote": "10.0.0.7:5123",
                "sub": "rider-12",
                "jti": "j12",
                "dpv": {"london": ["riders/12"]},
                "since": "2026-11-30T12:00:00.000Z",
                "messagesIn": 41,
                "messagesOut": 3,
                "queued": 0,
            }
        ],
        "unanswered": ["b#2"],
    },
    "dis": {
        "disconnected": [{"id": "a#1:x:7", "node": "a#1", "sub": "rider-12"}],
        "unanswered": [],
    },
    "rev": {"revocation": {"jti": "j12", "expires": None, "at": "2026-11-30T12:00:00.000Z"}},
    "rvl": {
        "revocations": [{"sub": "rider-12", "expires": None, "at": "2026-11-30T12:00:00.000Z"}]
    },
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded: Calls = []

    def record(
        config: Any, url: Any, token: Any, timeout: float, act: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        recorded.append((act, options))
        return ANSWERS[act]

    monkeypatch.setattr(admin, "call", record)
    return recorded


@pytest.mark.parametrize(
    ("args", "request_"),
    [
        (["connections", "list"], ("con", {})),
        (
            ["connections", "list", "--realm", "london", "--sub", "rider-*", "--node", "a"],
            ("con", {"realm": "london", "sub": "rider-*", "node": "a"}),
        ),
        (["disconnect", "--conn", "a#1:x:7"], ("dis", {"conn": "a#1:x:7"})),
        (
            ["disconnect", "--sub", "rider-12", "--reason", "left"],
            ("dis", {"sub": "rider-12", "reason": "left"}),
        ),
        (["disconnect", "--jti", "j12"], ("dis", {"jti": "j12"})),
        (["token", "revoke", "--jti", "j12"], ("rev", {"jti": "j12"})),
        (["token", "revoke", "--sub", "rider-12"], ("rev", {"sub": "rider-12"})),
        (
            ["token", "revoke", "--sub", "r", "--issued-before", "2026-01-01T00:00:00+00:00"],
            ("rev", {"sub": "r", "issuedBefore": 1767225600.0}),
        ),
        (["token", "revocations"], ("rvl", {})),
    ],
)
def test_flags_become_one_request(
    calls: Calls, args: list[str], request_: tuple[str, dict[str, Any]]
) -> None:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    assert calls == [request_]
    assert json.loads(result.stdout) == ANSWERS[request_[0]]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["disconnect"], "exactly one of --conn, --sub, --jti"),
        (["disconnect", "--sub", "a", "--jti", "b"], "exactly one of --conn, --sub, --jti"),
        (["token", "revoke"], "exactly one of --jti, --sub"),
        (["token", "revoke", "--jti", "a", "--sub", "b"], "exactly one of --jti, --sub"),
        (["token", "revoke", "--jti", "a", "--issued-before", "2026-01-01"], "needs --sub"),
        (["token", "revoke", "--sub", "a", "--issued-before", "tuesday"], "not an ISO-8601"),
    ],
)
def test_bad_flag_combinations_are_usage_errors(calls: Calls, args: list[str], text: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert text in words(result.stderr)
    assert calls == []


def test_the_tables_show_every_field_and_name_the_nodes_that_did_not_answer(
    calls: Calls,
) -> None:
    listed = invoke("connections", "list", env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    text = words(listed.stdout)
    for value in ("a#1:x:7", "10.0.0.7:5123", "rider-12", "j12", '{"london":["riders/12"]}', "41"):
        assert value in text
    assert "1 connections" in text
    assert "no answer from nodes: b#2" in words(listed.stderr)
    kicked = invoke("disconnect", "--sub", "rider-12")
    assert "disconnected a#1:x:7 (sub rider-12)" in kicked.stdout
    assert "revoked jti j12; forgotten at -" in invoke("token", "revoke", "--jti", "j12").stdout
    revocations = invoke("token", "revocations", env={"COLUMNS": "200"}).stdout
    assert "sub rider-12 - 2026-11-30T12:00:00.000Z never" in words(revocations)


def minted(*flags: str) -> dict[str, Any]:
    result = invoke("token", "mint", "--sub", "al", *flags, env={"HIVECTL_AUTH_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    return decode_unverified(result.stdout.strip())[1]


def test_mint_admin_sets_the_grant_and_a_short_lifetime() -> None:
    admin_claims = minted("--admin")
    assert (admin_claims["adm"], admin_claims["exp"] - admin_claims["iat"]) == (True, 15 * 60)
    longer = minted("--admin", "--ttl", "1h")
    assert (longer["adm"], longer["exp"] - longer["iat"]) == (True, 3600)
    plain = minted()
    assert "adm" not in plain
    assert plain["exp"] - plain["iat"] == 3600


async def test_end_to_end_against_a_real_server(
    reaping_server: ServeProcess, tmp_path: Path
) -> None:
    server = reaping_server
    secret = {"HIVECTL_AUTH_SECRET": SECRET}
    url = ("--url", server.ws_url)
    rider = await connect(server.ws_url, proxy=None, ping_interval=None)
    await rider.send("Bearer " + mint("rider-12", jti="j12", dpv={"london": ["riders/12"]}))
    assert json.loads(await rider.recv())[0]["res"] == "suc"

    code, out, err = await cli(tmp_path, "connections", "list", *url, "--json", **secret)
    assert code == 0, err
    listed = json.loads(out)
    # The CLI's own connection (an admin token minted from the secret) and the rider.
    assert [entry["sub"] for entry in listed["connections"]] == ["hivectl-admin", "rider-12"]
    assert listed["unanswered"] == []

    code, out, err = await cli(tmp_path, "token", "revoke", "--jti", "j12", *url, **secret)
    assert code == 0, err
    assert "revoked jti j12" in out
    async with asyncio.timeout(5):
        await rider.wait_closed()
    assert (rider.close_code, rider.close_reason) == (4003, "token revoked")
    code, out, err = await cli(tmp_path, "token", "revocations", *url, "--json", **secret)
    assert [entry["jti"] for entry in json.loads(out)["revocations"]] == ["j12"]

    code, out, err = await cli(tmp_path, "disconnect", "--sub", "nobody", *url, **secret)
    assert (code, "0 connections disconnected" in out) == (0, True)

    # An ordinary token is refused: 403, exit 1.
    code, out, err = await cli(tmp_path, "connections", "list", *url, HIVECTL_TOKEN=mint("someone"))
    assert code == 1
    assert "admin operations need a token with the adm claim" in words(err)
