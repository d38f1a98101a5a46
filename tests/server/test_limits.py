"""Every limit of design.md §5 over real sockets: just under passes, just over gets the
documented error or close code, and the server keeps serving everyone else.

Limits and what crossing them does:

========================  ======================================================
limit                     over it
========================  ======================================================
max_message_size          close 1009 (the `websockets` library's own check)
max_messages_per_frame    one 413 error for the frame, connection kept
messages_per_second       429 per message past the bucket (burst), close 4029
                          after more than ``burst`` rejections within a second
max_subscriptions         429 for the subscription, connection kept
max_pubsub_subscriptions  429 for the subscription, connection kept
max_connections           HTTP 503 on the upgrade request
max_connections_per_sub   the Bearer fails (401, text says why), close 1008
auth_timeout              close 1008
allowed_origins           HTTP 403 on the upgrade request
send_queue_bytes          and nothing read for send_stall_timeout: close 4008,
                          after every frame already queued (`test_flow`)
send_queue_max_bytes      close 4008 at once, after every frame already queued
========================  ======================================================
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from server.io.app import HivekitServer
from tests.conftest import Mint, running
from tests.server.inprocess import rss
from tests.server.wsutil import RawClient, eventually, post, subscribe_msg

Message = dict[str, Any]


def hbt(cid: str) -> Message:
    return {"typ": "sys", "act": "hbt", "cid": cid}


def heartbeats(prefix: str, count: int) -> list[Message]:
    return [hbt(f"{prefix}{n}") for n in range(count)]


async def still_serving(server: HivekitServer, token: Mint) -> None:
    """A fresh connection authenticates and gets a heartbeat answered."""
    other = await RawClient.open(server.ws_url, token("bystander"))
    await other.marker()
    await other.close()


def is_error(code: int) -> Callable[[Message], bool]:
    return lambda m: m.get("res") == "err" and m.get("erc") == code


# -- message size and messages per frame -----------------------------------------------------


def frame_of_size(size: int) -> str:
    """A heartbeat frame of exactly `size` bytes (padded in an ignored ``dat``)."""
    empty = orjson.dumps([{**hbt("big"), "dat": ""}]).decode()
    return empty.replace('"dat":""', '"dat":"' + "x" * (size - len(empty)) + '"')


async def test_a_frame_of_max_message_size_passes_and_one_byte_more_closes_1009(
    token: Mint,
) -> None:
    async with running({"limits.max_message_size": 4096}) as server:
        client = await RawClient.open(server.ws_url, token())
        await client.send(frame_of_size(4096))
        assert (await client.reply("big"))["res"] == "suc"

        await client.send(frame_of_size(4097))
        await client.wait_closed()
        assert client.ws.close_code == 1009
        await still_serving(server, token)


async def test_messages_per_frame_at_the_limit_pass_and_one_more_is_a_413(token: Mint) -> None:
    async with running({"limits.max_messages_per_frame": 5}) as server:
        client = await RawClient.open(server.ws_url, token())
        await client.send(heartbeats("ok", 5))
        replies = await client.wait_count(lambda m: str(m.get("cid")).startswith("ok"), 5)
        assert all(reply["res"] == "suc" for reply in replies)

        await client.send(heartbeats("over", 6))
        too_many = await client.wait_for(is_error(413))
        assert too_many["err"] == "too many messages in one frame (limit 5)"
        await client.marker()  # the connection is kept
        assert not [m for m in client.received if str(m.get("cid")).startswith("over")]
        await client.close()

        assert server.api_url is not None
        status, body = await post(server.api_url, heartbeats("http", 5), token())
        assert (status, len(body)) == (200, 5)
        status, body = await post(server.api_url, heartbeats("http", 6), token())
        assert (status, body[0]["erc"]) == (413, 413)


# -- message rate ------------------------------------------------------------------------------


async def test_a_burst_passes_then_each_message_gets_429_then_4029(token: Mint) -> None:
    # One token a second: a stall in the test adds a token or two, never enough to matter.
    async with running({"limits.messages_per_second": 1, "limits.burst": 10}) as server:
        client = await RawClient.open(server.ws_url, token())  # the Bearer frame counts too
        await client.send(heartbeats("burst", 9))
        replies = await client.wait_count(lambda m: str(m.get("cid")).startswith("burst"), 9)
        assert [reply["res"] for reply in replies] == ["suc"] * 9

        await client.send([{"typ": "obj", "act": "rea", "rea": "r", "id": "o", "cid": "late"}])
        limited = await client.reply("late")
        assert limited == {
            "typ": "obj",
            "act": "rea",
            "cid": "late",
            "res": "err",
            "err": "rate limited (limit 1 messages per second)",
            "erc": 429,
        }

        await client.send(heartbeats("flood", 30))
        await client.wait_closed()
        assert client.ws.close_code == 4029
        assert client.ws.close_reason == "rate limited"
        flood = [m for m in client.received if str(m.get("cid")).startswith("flood")]
        assert flood  # the rejections before the close were answered, each with a 429
        assert all(m["erc"] == 429 for m in flood)
        assert len(flood) < 30  # the rest of the frame went unanswered: the client was closed
        await still_serving(server, token)


# -- subscriptions -----------------------------------------------------------------------------


def object_subscription(sub_id: str) -> Message:
    return {
        "typ": "sub",
        "act": "cre",
        "id": sub_id,
        "rea": "r",
        "dat": {"typ": "obj", "sty": "rea"},
    }


async def test_subscriptions_at_the_limit_pass_and_one_more_is_a_429(token: Mint) -> None:
    async with running({"limits.max_subscriptions": 2}) as server:
        client = await RawClient.open(server.ws_url, token())
        await client.ok({"typ": "rea", "act": "cre", "id": "r"})
        await client.ok(object_subscription("s1"))
        await client.ok(object_subscription("s2"))
        over = await client.request(object_subscription("s3"))
        assert (over["erc"], over["err"]) == (429, "too many subscriptions (limit 2)")

        await client.ok({"typ": "sub", "act": "del", "id": "s1", "rea": "r"})
        await client.ok(object_subscription("s3"))  # room again after a delete
        other = await RawClient.open(server.ws_url, token())
        await other.ok(object_subscription("s1"))  # the limit is per connection
        await other.close()
        await client.close()


async def test_pubsub_subscriptions_at_the_limit_pass_and_one_more_is_a_429(token: Mint) -> None:
    async with running({"limits.max_pubsub_subscriptions": 2}) as server:
        client = await RawClient.open(server.ws_url, token())
        await client.ok({"typ": "rea", "act": "cre", "id": "r"})
        await client.ok(subscribe_msg("r", "e", "a/*"))
        await client.ok(subscribe_msg("r", "e", "b/*"))
        await client.ok(subscribe_msg("r", "e", "a/*"))  # the same one again takes no room
        over = await client.request(subscribe_msg("r", "e", "c/*"))
        assert (over["erc"], over["err"]) == (429, "too many pub/sub subscriptions (limit 2)")

        await client.ok({**subscribe_msg("r", "e", "a/*"), "act": "uns"})
        await client.ok(subscribe_msg("r", "e", "c/*"))
        await client.close()


# -- connections -------------------------------------------------------------------------------


async def test_connections_up_to_the_limit_pass_and_one_more_gets_http_503(token: Mint) -> None:
    async with running({"limits.max_connections": 2}) as server:
        first = await RawClient.open(server.ws_url, token())
        second = await RawClient.open(server.ws_url, token())
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.ws_url, proxy=None)
        assert refused.value.response.status_code == 503

        await first.close()

        async def admitted() -> bool:
            try:
                third = await RawClient.open(server.ws_url, token())
            except InvalidStatus:
                return False
            await third.marker()
            await third.close()
            return True

        await eventually(admitted)
        await second.marker()
        await second.close()


async def test_connections_per_sub_over_the_limit_fail_auth_and_close_1008(token: Mint) -> None:
    async with running({"limits.max_connections_per_sub": 2}) as server:
        devices = [await RawClient.open(server.ws_url, token("dev")) for _ in range(2)]

        third = await RawClient.open(server.ws_url)
        refused = await third.auth(token("dev"))
        assert refused == {
            "typ": "sys",
            "act": "aut",
            "res": "err",
            "err": "too many connections for sub dev (limit 2)",
            "erc": 401,
        }
        await third.wait_closed()
        assert third.ws.close_code == 1008

        # Re-authenticating as the same sub keeps the connection's own place.
        assert (await devices[0].auth(token("dev")))["res"] == "suc"
        # Becoming a sub that is full is refused the same way.
        other = await RawClient.open(server.ws_url, token("other"))
        assert (await other.auth(token("dev")))["erc"] == 401
        await other.wait_closed()
        assert other.ws.close_code == 1008

        await still_serving(server, token)
        await devices[0].close()

        async def admitted() -> bool:
            client = await RawClient.open(server.ws_url)
            ok = (await client.auth(token("dev")))["res"] == "suc"
            await client.close()
            return ok

        await eventually(admitted)
        await devices[1].marker()


async def test_an_unauthenticated_connection_is_closed_1008_at_the_auth_timeout(
    token: Mint,
) -> None:
    async with running({"limits.auth_timeout": 0.3}) as server:
        authenticated = await RawClient.open(server.ws_url, token())
        silent = await RawClient.open(server.ws_url)
        await silent.wait_closed()
        assert (silent.ws.close_code, silent.ws.close_reason) == (1008, "authentication timeout")
        await authenticated.marker()  # past the deadline, authenticated in time: kept
        await authenticated.close()


async def test_only_allowed_origins_may_connect(token: Mint) -> None:
    async with running({"limits.allowed_origins": ["https://app.example"]}) as server:
        for origin in ("https://evil.example", None):
            with pytest.raises(InvalidStatus) as refused:
                await connect(server.ws_url, proxy=None, origin=origin)
            assert refused.value.response.status_code == 403
        client = await RawClient.open(server.ws_url, token(), origin="https://app.example")
        await client.marker()
        await client.close()


# -- slow consumers ----------------------------------------------------------------------------

EVENTS = 1000
PAYLOAD = "p" * 32 * 1024
RSS_GROWTH_BOUND = 16 * 1024 * 1024
"""Bytes the process may grow by while 32 MB of events flow past a reader that never reads."""


@contextlib.asynccontextmanager
async def sampling_rss() -> AsyncIterator[list[int]]:
    """The largest RSS seen while the block runs, sampled every few milliseconds."""
    peak = [rss()]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        task.cancel()
        peak[0] = max(peak[0], rss())


async def plain_subscriber(url: str, token: str, realm: str, event: str) -> ClientConnection:
    """An authenticated pub/sub subscriber that keeps nothing it is not asked to read."""
    ws = await connect(url, proxy=None, ping_interval=None)
    await ws.send(f"Bearer {token}")
    assert orjson.loads(await ws.recv())[0]["res"] == "suc"
    await ws.send(orjson.dumps([{**subscribe_msg(realm, event), "cid": "s"}]).decode())
    assert orjson.loads(await ws.recv())[0]["res"] == "suc"
    return ws


async def test_a_reader_that_never_reads_is_closed_4008_and_nobody_waits_for_it(
    token: Mint,
) -> None:
    limits = {"limits.send_queue_bytes": 64 * 1024, "limits.send_queue_max_bytes": 1024 * 1024}
    async with running(limits) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
        stuck = await RawClient.open(server.ws_url, token("stuck"))
        await stuck.ok(subscribe_msg("r", "e"))
        reader = await plain_subscriber(server.ws_url, token("reader"), "r", "e")
        stuck.ws.transport.pause_reading()  # and it stays paused while the events flow

        baseline = rss()
        async with sampling_rss() as peak:
            for n in range(EVENTS):
                publish = {"eve": "e", "idp": f"o/{n}", "dat": PAYLOAD}
                await admin.ok({"typ": "rea", "act": "pub", "id": "r", "dat": publish})
                # Each publish is one frame to each subscriber: the reader gets exactly this.
                async with asyncio.timeout(5):
                    (push,) = orjson.loads(await reader.recv())
                assert push["dat"]["idp"] == f"o/{n}"
        assert peak[0] - baseline < RSS_GROWTH_BOUND, f"{(peak[0] - baseline) / 2**20:.1f} MiB"

        stuck.ws.transport.resume_reading()
        await stuck.wait_closed()
        assert (stuck.ws.close_code, stuck.ws.close_reason) == (4008, "slow consumer")
        # It got what was queued before the close frame, in order, and nothing after it.
        got = [m["dat"]["idp"] for m in stuck.pushes("e")]
        assert 0 < len(got) < EVENTS
        assert got == [f"o/{n}" for n in range(len(got))]
        await still_serving(server, token)
        await reader.close()
        await admin.close()
