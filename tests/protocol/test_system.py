"""System messages on the hub (protocol.md §6.5): the heartbeat, the stats and presence's
explanation and count.

Moved from `tests.server.test_ws_protocol`, with the same messages and assertions; time is
the driver's, so a moment the server stamps is checked against the driver's clock.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.conftest import mint
from tests.protocol.driver import Client, HubDriver, watch_presence

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _epoch(text: str) -> float:
    assert ISO.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def driver() -> HubDriver:
    return HubDriver()


@pytest.fixture
def client(driver: HubDriver) -> Client:
    client = driver.connect(mint("admin"))
    client.ok({"typ": "rea", "act": "cre", "id": "r"})
    return client


def test_heartbeat_echoes_its_cid(client: Client) -> None:
    client.send({"typ": "sys", "act": "hbt", "cid": "heartbeat-1"})
    assert client.reply("heartbeat-1") == {
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


def test_stats_report_the_documented_fields(driver: HubDriver, client: Client) -> None:
    for object_id in ("p/1", "q/1"):
        client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": object_id})
    client.ok(watch_presence("r"))
    unauthenticated = driver.open()
    provider = driver.connect(mint("p", dpv={"r": ["p/*"]}))

    stats = client.ok({"typ": "sys", "act": "sta"})
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
    client.ok({"typ": "sys", "act": "hbt"})
    later = client.ok({"typ": "sys", "act": "sta"})
    assert later["messagesIn"] >= stats["messagesIn"] + 2
    assert later["messagesOut"] > stats["messagesOut"]

    driver.close(provider)
    driver.close(unauthenticated)
    assert any(m.get("act") == "pub" and m["dat"]["dat"]["cst"] == "dis" for m in client.received)
    after = client.ok({"typ": "sys", "act": "sta"})
    assert (after["connections"], after["providers"], after["connectedObjects"]) == (1, 0, 0)


def test_presence_explain_and_count(driver: HubDriver, client: Client) -> None:
    for object_id in ("dev/1", "dev/2", "other"):
        client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": object_id})
    client.ok(watch_presence("r"))
    started = driver.now
    provider = driver.connect(mint("device-1", jti="token-1", dpv={"r": ["dev/1"]}))
    explain = {"typ": "sys", "act": "pre", "rea": "r", "id": "dev/1"}
    connected = client.ok(explain)
    assert set(connected) == {"cst", "providers", "connectedSince", "lastSeen"}
    assert connected["cst"] == "con"
    [entry] = connected["providers"]
    assert {key: entry[key] for key in ("sub", "jti", "node")} == {
        "sub": "device-1",
        "jti": "token-1",
        "node": driver.hub.node_id,
    }
    assert set(entry) == {"sub", "jti", "node", "since"}
    assert started - 1 <= _epoch(entry["since"]) <= driver.now + 1
    assert _epoch(connected["connectedSince"]) <= _epoch(connected["lastSeen"])

    never = client.ok({**explain, "id": "dev/2"})
    assert never["cst"] == "dis"
    assert never["providers"] == []
    assert "connectedSince" not in never
    assert "lastReason" not in never

    count = {"typ": "sys", "act": "pre", "rea": "r", "dat": {"idp": "dev/*"}}
    assert client.ok(count) == {"connected": 1, "disconnected": 1}
    assert client.ok({**count, "dat": {}}) == {"connected": 1, "disconnected": 2}

    driver.close(provider)
    assert any(m.get("act") == "pub" and m["dat"]["dat"]["cst"] == "dis" for m in client.received)
    gone = client.ok(explain)
    assert gone["cst"] == "dis"
    assert gone["providers"] == []
    assert gone["lastReason"] == "closed"
    assert "connectedSince" not in gone
    assert _epoch(gone["lastDisconnectedAt"]) >= _epoch(connected["connectedSince"])
    assert client.ok(count) == {"connected": 0, "disconnected": 2}

    unknown = client.request({**explain, "id": "nope"})
    assert (unknown["erc"], unknown["err"]) == (404, "unknown object nope")
    no_realm = client.request({**explain, "rea": "nowhere"})
    assert (no_realm["erc"], no_realm["err"]) == (404, "unknown realm nowhere")
