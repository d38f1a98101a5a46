"""Frames, malformed input and system messages over real sockets (protocol.md §1, §5, §6.5)."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import pytest

from server.io.app import HivekitServer
from tests.conftest import Mint
from tests.server.wsutil import RawClient, subscribe_msg

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _epoch(text: str) -> float:
    assert ISO.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
async def client(server: HivekitServer, token: Mint) -> Any:
    raw = await RawClient.open(server.ws_url, token("admin"))
    await raw.ok({"typ": "rea", "act": "cre", "id": "r"})
    yield raw
    await raw.close()


async def test_set_then_read_in_one_frame_reads_what_was_set(client: RawClient) -> None:
    await client.send(
        [
            {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 1}},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-1"},
            {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 2, "w": 3}},
            {"typ": "obj", "act": "upd", "rea": "r", "id": "x", "dat": {"w": None}, "cid": "u"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-2"},
            {"typ": "obj", "act": "del", "rea": "r", "id": "x", "cid": "d"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-3"},
        ]
    )
    assert (await client.reply("read-1"))["dat"]["dat"] == {"v": 1}
    assert (await client.reply("read-2"))["dat"]["dat"] == {"v": 2}
    gone = await client.reply("read-3")
    assert (gone["erc"], gone["err"]) == (404, "unknown object x")
    await client.marker()
    assert not [m for m in client.received if m.get("act") == "set"]  # set gets no reply


async def test_a_hundred_requests_in_one_frame_are_each_answered_once(client: RawClient) -> None:
    frame: list[dict[str, Any]] = []
    for n in range(50):
        frame.append({"typ": "obj", "act": "cre", "rea": "r", "id": f"o{n}", "cid": f"c{n}"})
        frame.append({"typ": "obj", "act": "rea", "rea": "r", "id": f"o{n}", "cid": n})
    await client.send(frame)
    await client.wait_count(lambda m: "cid" in m and m.get("act") in ("cre", "rea"), 100)
    await client.marker()
    replies = [m for m in client.received if m.get("typ") == "obj"]
    assert sorted(map(str, (m["cid"] for m in replies))) == sorted(
        [f"c{n}" for n in range(50)] + [str(n) for n in range(50)]
    )
    assert all(m["res"] == "suc" for m in replies)
    assert all(m["dat"]["id"] == f"o{m['cid']}" for m in replies if m["act"] == "rea")
    assert list(await client.ok({"typ": "obj", "act": "lis", "rea": "r"})) == [
        f"o{n}" for n in range(50)
    ]


MALFORMED: list[tuple[str, str | bytes, list[dict[str, Any]]]] = [
    ("not json", "this is not json", [{"res": "err", "erc": 400}]),
    ("nan", '[{"typ":"sys","act":"hbt","cid":"n","dat":NaN}]', [{"res": "err", "erc": 400}]),
    ("not an array", '{"typ":"sys","act":"hbt","cid":"h"}',
     [{"res": "err", "err": "frame must be a JSON array of messages", "erc": 400}]),
    ("array of non-objects", "[1, null, []]",
     [{"res": "err", "err": "message must be a JSON object", "erc": 400}] * 3),
    ("binary frame", b'[{"typ":"sys","act":"hbt","cid":"b"}]',
     [{"res": "err", "err": "binary frames are not supported", "erc": 400}]),
    ("unknown typ", '[{"typ":"zzz","act":"rea","cid":"c1"}]',
     [{"cid": "c1", "res": "err", "err": 'unknown type "zzz"', "erc": 400}]),
    ("unknown act", '[{"typ":"obj","act":"zzz","cid":"c2"}]',
     [{"typ": "obj", "act": "zzz", "cid": "c2", "res": "err",
       "err": 'unknown action "zzz" for type obj', "erc": 400}]),
    ("aut as json", '[{"typ":"sys","act":"aut","cid":"c3"}]',
     [{"typ": "sys", "act": "aut", "cid": "c3", "res": "err",
       "err": 'unknown action "aut" for type sys', "erc": 400}]),
    ("id not a string", '[{"typ":"obj","act":"rea","rea":"r","id":5,"cid":"c4"}]',
     [{"typ": "obj", "act": "rea", "cid": "c4", "res": "err", "err": "id must be a string",
       "erc": 400}]),
    ("loc not numbers", '[{"typ":"obj","act":"cre","rea":"r","id":"x","loc":{"lon":"a"},'
     '"cid":"c5"}]',
     [{"typ": "obj", "act": "cre", "cid": "c5", "res": "err",
       "err": "loc.lon must be a finite number", "erc": 400}]),
    ("tds not strings", '[{"typ":"obj","act":"cre","rea":"r","id":"x","tds":[1],"cid":"c6"}]',
     [{"typ": "obj", "act": "cre", "cid": "c6", "res": "err",
       "err": "tds must be a list of strings", "erc": 400}]),
    ("dat not an object", '[{"typ":"obj","act":"cre","rea":"r","id":"x","dat":[1],"cid":7}]',
     [{"typ": "obj", "act": "cre", "cid": 7, "res": "err", "err": "dat must be an object",
       "erc": 400}]),
    ("cid a bool", '[{"typ":"sys","act":"hbt","cid":true}]',
     [{"act": "hbt", "res": "err", "err": "cid must be a string or an integer", "erc": 400}]),
    ("bad set has no cid", '[{"typ":"obj","act":"set","rea":"nowhere","id":"x"}]',
     [{"typ": "obj", "act": "set", "res": "err", "err": "unknown realm nowhere", "erc": 404}]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "expected"), [(f, e) for _, f, e in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
async def test_malformed_input_gets_400_and_the_connection_keeps_working(
    client: RawClient, frame: str | bytes, expected: list[dict[str, Any]]
) -> None:
    start = len(client.received)
    await client.send(frame)
    end = await client.marker()
    errors = client.received[start:end]
    assert len(errors) == len(expected)
    for got, want in zip(errors, expected, strict=True):
        assert {key: got.get(key) for key in want} == want
        assert set(got) <= {"typ", "act", "cid", "res", "err", "erc"}
        assert isinstance(got["err"], str)
        assert got["err"]
    await client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "after"})  # still working
    assert not client.closed


async def test_bad_messages_do_not_stop_the_rest_of_their_frame(client: RawClient) -> None:
    await client.send(
        [
            "oops",
            {"typ": "obj", "act": "cre", "rea": "r", "id": "a", "cid": "ok-1"},
            {"typ": "obj", "act": "upd", "rea": "r", "id": "missing", "cid": "nf"},
            {"typ": "obj", "act": "rea", "rea": "r", "id": "a", "cid": "ok-2"},
        ]
    )
    assert (await client.reply("ok-2"))["dat"]["id"] == "a"
    assert (await client.reply("ok-1"))["res"] == "suc"
    missing = await client.reply("nf")
    assert (missing["erc"], missing["err"]) == (404, "unknown object missing")


async def test_heartbeat_echoes_its_cid(client: RawClient) -> None:
    await client.send([{"typ": "sys", "act": "hbt", "cid": "heartbeat-1"}])
    assert await client.reply("heartbeat-1") == {
        "typ": "sys",
        "act": "hbt",
        "cid": "heartbeat-1",
        "res": "suc",
    }


STATS_FIELDS = {
    "version",
    "uptime",
    "connections",
    "authenticatedConnections",
    "providers",
    "subscriptions",
    "realms",
    "objects",
    "connectedObjects",
    "messagesIn",
    "messagesOut",
    "sendQueueHighWater",
}


async def test_stats_report_the_documented_fields(
    server: HivekitServer, client: RawClient, token: Mint
) -> None:
    for object_id in ("p/1", "q/1"):
        await client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": object_id})
    await client.ok(subscribe_msg("r"))
    unauthenticated = await RawClient.open(server.ws_url)
    provider = await RawClient.open(server.ws_url, token("p", dpv={"r": ["p/*"]}))

    stats = await client.ok({"typ": "sys", "act": "sta"})
    assert set(stats) >= STATS_FIELDS
    assert stats["version"] == client.received[0]["dat"]["version"]
    assert isinstance(stats["uptime"], int | float)
    assert stats["uptime"] >= 0
    assert stats["connections"] == 3
    assert stats["authenticatedConnections"] == 2
    assert stats["providers"] == 1
    assert stats["realms"] == 1
    assert stats["objects"] == 2
    assert stats["connectedObjects"] == 1
    assert stats["pubsubSubscriptions"] == 1
    assert isinstance(stats["sendQueueHighWater"], int)
    await client.ok({"typ": "sys", "act": "hbt"})
    later = await client.ok({"typ": "sys", "act": "sta"})
    assert later["messagesIn"] >= stats["messagesIn"] + 2
    assert later["messagesOut"] > stats["messagesOut"]

    await provider.close()
    await unauthenticated.close()
    await client.wait_for(lambda m: m.get("act") == "pub" and m["dat"]["dat"]["cst"] == "dis")
    after = await client.ok({"typ": "sys", "act": "sta"})
    assert (after["connections"], after["providers"], after["connectedObjects"]) == (1, 0, 0)


async def test_presence_explain_and_count(
    server: HivekitServer, client: RawClient, token: Mint
) -> None:
    for object_id in ("dev/1", "dev/2", "other"):
        await client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": object_id})
    await client.ok(subscribe_msg("r"))
    started = time.time()
    provider = await RawClient.open(
        server.ws_url, token("device-1", jti="token-1", dpv={"r": ["dev/1"]})
    )
    explain = {"typ": "sys", "act": "pre", "rea": "r", "id": "dev/1"}
    connected = await client.ok(explain)
    assert set(connected) == {"cst", "providers", "connectedSince", "lastSeen"}
    assert connected["cst"] == "con"
    [entry] = connected["providers"]
    assert {key: entry[key] for key in ("sub", "jti", "node")} == {
        "sub": "device-1",
        "jti": "token-1",
        "node": server.node_id,
    }
    assert set(entry) == {"sub", "jti", "node", "since"}
    assert started - 1 <= _epoch(entry["since"]) <= time.time() + 1
    assert _epoch(connected["connectedSince"]) <= _epoch(connected["lastSeen"])

    never = await client.ok({**explain, "id": "dev/2"})
    assert never["cst"] == "dis"
    assert never["providers"] == []
    assert "connectedSince" not in never
    assert "lastReason" not in never

    count = {"typ": "sys", "act": "pre", "rea": "r", "dat": {"idp": "dev/*"}}
    assert await client.ok(count) == {"connected": 1, "disconnected": 1}
    assert await client.ok({**count, "dat": {}}) == {"connected": 1, "disconnected": 2}

    await provider.close()
    await client.wait_for(lambda m: m.get("act") == "pub" and m["dat"]["dat"]["cst"] == "dis")
    gone = await client.ok(explain)
    assert gone["cst"] == "dis"
    assert gone["providers"] == []
    assert gone["lastReason"] == "closed"
    assert "connectedSince" not in gone
    assert _epoch(gone["lastDisconnectedAt"]) >= _epoch(connected["connectedSince"])
    assert await client.ok(count) == {"connected": 0, "disconnected": 2}

    unknown = await client.request({**explain, "id": "nope"})
    assert (unknown["erc"], unknown["err"]) == (404, "unknown object nope")
    no_realm = await client.request({**explain, "rea": "nowhere"})
    assert (no_realm["erc"], no_realm["err"]) == (404, "unknown realm nowhere")
