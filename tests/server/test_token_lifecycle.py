"""Token lifecycle on live connections (protocol.md §2): expiry, refresh, coverage changes."""

from __future__ import annotations

import math
import time

from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient, is_status, subscribe_msg


def soon() -> int:
    """An ``exp`` one to two seconds away (a whole second: JWT times are integers here)."""
    return math.ceil(time.time()) + 1


async def test_a_token_that_expires_closes_the_connection_4001(
    server: HivekitServer, token: Mint
) -> None:
    client = await RawClient.open(server.ws_url, token(ttl=None, exp=soon()))
    await client.marker()
    await client.wait_closed(timeout=5)
    assert (client.ws.close_code, client.ws.close_reason) == (4001, "token expired")


async def test_reauthenticating_before_expiry_keeps_the_connection(
    server: HivekitServer, token: Mint
) -> None:
    expires = soon()
    client = await RawClient.open(server.ws_url, token(ttl=None, exp=expires))
    assert (await client.auth(token(ttl=3600)))["res"] == "suc"
    while time.time() < expires + 0.5:  # past the first token's expiry, then still served
        await client.marker()
    assert not client.closed


async def test_a_failed_reauth_changes_nothing(server: HivekitServer, token: Mint) -> None:
    client = await RawClient.open(server.ws_url, token(per={"r": {"*": "CR"}}))
    await client.ok({"typ": "rea", "act": "cre", "id": "r"})
    refused = await client.auth(token(secret="another-secret-entirely-0123456789"))
    assert (refused["res"], refused["erc"]) == ("err", 401)
    await client.ok({"typ": "rea", "act": "rea", "id": "r"})  # the old claims still hold


async def test_reauth_swaps_permissions_in_one_step(server: HivekitServer, token: Mint) -> None:
    client = await RawClient.open(server.ws_url, token())
    await client.ok({"typ": "rea", "act": "cre", "id": "r"})
    assert (await client.auth(token(per={"other": {"*": "R"}})))["res"] == "suc"
    denied = await client.request({"typ": "rea", "act": "rea", "id": "r"})
    assert (denied["erc"], denied["err"]) == (403, "permission denied: R on r")


async def test_reauth_that_drops_a_dpv_pattern_disconnects_exactly_what_it_no_longer_covers(
    server: HivekitServer, token: Mint
) -> None:
    watcher = await RawClient.open(server.ws_url, token("watcher"))
    await watcher.ok({"typ": "rea", "act": "cre", "id": "r"})
    for object_id in ("car/1", "car/2", "bike/1", "both/1"):
        await watcher.ok({"typ": "obj", "act": "cre", "rea": "r", "id": object_id})
    await watcher.ok(subscribe_msg("r"))

    provider = await RawClient.open(
        server.ws_url, token("gw", dpv={"r": ["car/*", "bike/*", "both/*"]})
    )
    await watcher.wait_count(is_status(cst="con"), 4)

    start = len(watcher.received)
    reply = await provider.auth(token("gw", dpv={"r": ["bike/*", "both/*"]}))
    assert reply["res"] == "suc"
    await provider.marker()  # the re-auth has been handled, and its pushes written
    await watcher.marker()
    changes = [
        (m["dat"]["idp"], m["dat"]["dat"]["cst"])
        for m in watcher.received[start:]
        if is_status()(m)
    ]
    assert changes == [("car/1", "dis"), ("car/2", "dis")]
    car = await watcher.ok({"typ": "sys", "act": "pre", "rea": "r", "id": "car/1"})
    assert (car["cst"], car["lastReason"]) == ("dis", "reauth")
    bike = await watcher.ok({"typ": "obj", "act": "rea", "rea": "r", "id": "bike/1"})
    assert bike["cst"] == "con"

    start = len(watcher.received)
    assert (await provider.auth(token("gw")))["res"] == "suc"  # no dpv: no longer a provider
    await provider.marker()
    await watcher.marker()
    changes = [
        (m["dat"]["idp"], m["dat"]["dat"]["cst"])
        for m in watcher.received[start:]
        if is_status()(m)
    ]
    assert changes == [("bike/1", "dis"), ("both/1", "dis")]
