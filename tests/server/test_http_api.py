"""``POST /api/v1`` on the WebSocket port and on its own listener, and the health
endpoints (protocol.md §1): every API test runs against both, which answer alike."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient, eventually, post, subscribe_msg

UNAUTHORIZED = {"err": "signature is invalid", "erc": 401}


def _ws_port_api(server: HivekitServer) -> str:
    return server.ws_url.replace("ws://", "http://").removesuffix("/ws") + "/api/v1"


@pytest.fixture(params=["websocket port", "api port"])
def api_url(request: pytest.FixtureRequest, server: HivekitServer) -> str:
    if request.param == "websocket port":
        return _ws_port_api(server)
    url = server.api_url
    assert url is not None
    return url


async def test_replies_come_back_as_an_array_with_their_cids(
    server: HivekitServer, token: Mint, api_url: str
) -> None:
    status, body = await post(
        api_url,
        [
            {"typ": "rea", "act": "cre", "id": "r", "lab": "R", "cid": "a"},
            {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 1}},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": 2},
            {"typ": "sys", "act": "hbt", "cid": "heartbeat-1"},
        ],
        token("admin"),
    )
    assert status == 200
    assert body == [
        {"typ": "rea", "act": "cre", "cid": "a", "res": "suc"},
        {
            "typ": "obj",
            "act": "rea",
            "cid": 2,
            "res": "suc",
            "dat": {
                "id": "x",
                "lab": "",
                "loc": body[1]["dat"]["loc"],
                "dat": {"v": 1},
                "cst": "dis",
                "tds": [],
            },
        },
        {"typ": "sys", "act": "hbt", "cid": "heartbeat-1", "res": "suc"},
    ]  # the set was applied and has no entry
    ws = await RawClient.open(server.ws_url, token("admin"))
    assert (await ws.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "x"}))["dat"] == {"v": 1}
    await ws.close()


async def test_bad_or_missing_token_is_401(
    server: HivekitServer, token: Mint, api_url: str
) -> None:
    hello = [{"typ": "sys", "act": "hbt", "cid": "h"}]
    wrong = token(secret="a-different-secret-0123456789-abcdefgh")
    assert await post(api_url, hello, wrong) == (401, UNAUTHORIZED)
    assert await post(api_url, hello, None) == (401, UNAUTHORIZED)
    malformed = {"err": "token is malformed", "erc": 401}
    assert await post(api_url, hello, "garbage") == (401, malformed)
    assert (await post(api_url, hello, token("admin")))[0] == 200

    async def counted() -> bool:
        return server.http_requests == {401: 3, 200: 1}

    await eventually(counted)  # answered from the API thread, counted in the event loop
    body, _ = server.metrics.exposition(None)
    assert b'hivectl_http_requests_total{status="401"} 3.0' in body
    assert server.hub.auth_refused == {"bad_signature": 1, "malformed": 1}


async def test_per_message_errors_are_in_the_array_with_http_200(
    server: HivekitServer, token: Mint, api_url: str
) -> None:
    status, body = await post(
        api_url,
        [
            {"typ": "rea", "act": "cre", "id": "r", "cid": 1},
            {"typ": "rea", "act": "cre", "id": "r", "cid": 2},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "missing", "cid": 3},
            {"typ": "zzz", "act": "rea", "cid": 4},
            {"typ": "rea", "act": "sub", "id": "r", "dat": {"eve": "e"}, "cid": 5},
            {"typ": "obj", "act": "set", "rea": "nowhere", "id": "x"},
        ],
        token("admin"),
    )
    assert status == 200
    summary = [(m.get("cid"), m["res"], m.get("erc"), m.get("err")) for m in body]
    # replies are matched by cid, not by position
    assert sorted(summary, key=lambda entry: entry[0] or 99) == [
        (1, "suc", None, None),
        (2, "err", 409, "realm with id r already exists"),
        (3, "err", 404, "unknown object missing"),
        (4, "err", 400, 'unknown type "zzz"'),
        (5, "err", 400, "subscriptions need a WebSocket connection"),
        (None, "err", 404, "unknown realm nowhere"),
    ]

    limited = token("u", per={"r": {"a/*": "R"}})
    status, body = await post(
        api_url, [{"typ": "obj", "act": "cre", "rea": "r", "id": "a/1", "cid": "c"}], limited
    )
    assert status == 200
    assert body == [
        {
            "typ": "obj",
            "act": "cre",
            "cid": "c",
            "res": "err",
            "err": "permission denied: C on r/a/1",
            "erc": 403,
        }
    ]


async def test_malformed_bodies_are_400(server: HivekitServer, token: Mint, api_url: str) -> None:
    status, body = await post(api_url, b"not json", token())
    assert status == 400
    assert body[0]["erc"] == 400
    status, body = await post(api_url, {"typ": "sys", "act": "hbt"}, token())
    assert status == 400
    assert body == [{"res": "err", "err": "body must be a JSON array of messages", "erc": 400}]


async def test_a_provider_token_over_http_provides_nothing(
    server: HivekitServer, token: Mint, api_url: str
) -> None:
    watcher = await RawClient.open(server.ws_url, token("watcher"))
    await watcher.ok({"typ": "rea", "act": "cre", "id": "r"})
    await watcher.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "car/1"})
    await watcher.ok(subscribe_msg("r"))
    provider = token("gw", dpv={"r": ["car/*"]})
    status, body = await post(
        api_url,
        [
            {"typ": "obj", "act": "cre", "rea": "r", "id": "car/2", "cid": "c"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "car/1", "cid": "r1"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "car/2", "cid": "r2"},
        ],
        provider,
    )
    assert status == 200
    assert [m["dat"]["cst"] for m in body[1:]] == ["dis", "dis"]
    stats = await watcher.ok({"typ": "sys", "act": "sta"})
    assert (stats["providers"], stats["connectedObjects"], stats["connections"]) == (0, 0, 1)
    await watcher.marker()
    assert watcher.statuses() == []
    await watcher.close()


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status, response.read().decode()


async def test_health_endpoints_share_the_websocket_port(server: HivekitServer) -> None:
    base = server.ws_url.removesuffix("/ws").replace("ws://", "http://")
    assert await asyncio.to_thread(_get, base + "/healthz") == (200, "ok\n")
    assert await asyncio.to_thread(_get, base + "/readyz") == (200, "ready\n")
