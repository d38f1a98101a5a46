"""Output at fleet scale over real sockets: large initial states and bursts reach readers that
keep reading, whatever their size; a reader that stops is closed 4008 with little held for it;
a gateway's message rate grows with the objects it provides.

A *steady slow reader* here is a real WebSocket client with a small receive buffer that takes
one frame at a time and pauses between frames, so the server's send buffer fills and drains
over and over, as with a phone on a slow network.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.io.app import HivekitServer
from server.io.transport import WRITE_HIGH_WATER
from server.model.session import FRAME_MESSAGES, Session
from tests.conftest import Mint, mint, running
from tests.server.inprocess import bare_hub, take_sent
from tests.server.wsutil import RawClient, subscribe_msg, until

Message = dict[str, Any]

FAST_SETUP = {"limits.messages_per_second": 1_000_000, "limits.burst": 1_000_000}
PAD = "x" * 150
"""Object data that makes each object about 300 bytes on the wire."""


class SlowReader:
    """A client with a 16 KiB receive buffer that reads one frame, then waits `pause`."""

    def __init__(self, ws: ClientConnection, pause: float) -> None:
        self.ws = ws
        self.pause = pause
        self.frames: list[list[Message]] = []
        self.messages: list[Message] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, pause: float = 0.01) -> SlowReader:
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        ws = await connect(url, sock=sock, proxy=None, max_size=None, max_queue=1)
        await ws.send(f"Bearer {token}")
        assert orjson.loads(await ws.recv())[0]["res"] == "suc"
        return cls(ws, pause)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                value = orjson.loads(frame)
                self.frames.append(value)
                self.messages.extend(value)
                await asyncio.sleep(self.pause)
        except ConnectionClosed:
            pass

    async def send(self, *messages: Message) -> None:
        await self.ws.send(orjson.dumps(list(messages)).decode())

    def replied(self, cid: str) -> bool:
        return any(m.get("cid") == cid and m.get("res") == "suc" for m in self.messages)

    def held(self, sub_id: str) -> dict[str, Message]:
        """The object subscription's set as a Hivekit client keeps it."""
        held: dict[str, Message] = {}
        for message in self.messages:
            if message.get("typ") == "sub" and message.get("id") == sub_id and "obj" in message:
                if message["uty"] == "ful":
                    held.clear()
                held.update(message["obj"]["cre"])
                held.update(message["obj"]["upd"])
                for oid in message["obj"]["del"]:
                    held.pop(oid, None)
        return held

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code if self.task.done() else None

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def fill_realm(client: RawClient, realm: str, count: int, prefix: str = "o/") -> list[str]:
    """Create `realm` with `count` objects in frames of 200 ``set`` messages (under 64 KiB)."""
    await client.ok({"typ": "rea", "act": "cre", "id": realm})
    ids = [f"{prefix}{n:06}" for n in range(count)]
    for start in range(0, count, 200):
        await client.send(
            [
                {"typ": "obj", "act": "set", "rea": realm, "id": oid, "dat": {"pad": PAD}}
                for oid in ids[start : start + 200]
            ]
        )
    counts = await client.ok({"typ": "sys", "act": "pre", "rea": realm, "dat": {"idp": "*"}})
    assert counts["connected"] + counts["disconnected"] == count
    return ids


def subscriber_session(server: HivekitServer) -> Session:
    [session] = [s for s in server.hub.sessions.values() if s.subscriptions]
    return session


def whole_realm(realm: str, sub_id: str = "all", *, exe: bool = True) -> Message:
    return {
        "typ": "sub",
        "act": "cre",
        "id": sub_id,
        "rea": realm,
        "dat": {"typ": "obj", "sty": "rea", "exe": exe},
        "cid": f"sub-{sub_id}",
    }


# -- initial state of any size ------------------------------------------------------------


async def test_a_steady_slow_reader_gets_an_initial_state_far_larger_than_its_queue(
    token: Mint,
) -> None:
    limits = {"limits.send_queue_bytes": 64 * 1024, "limits.send_queue_max_bytes": 512 * 1024}
    async with running({**FAST_SETUP, **limits}) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        ids = await fill_realm(admin, "r", 20_000)  # about 6 MB as one state
        reader = await SlowReader.open(server.ws_url, token("reader"))
        await reader.send(whole_realm("r"))
        await until(lambda: len(reader.held("all")) == len(ids), "full state", timeout=60)
        assert reader.close_code is None
        assert set(reader.held("all")) == set(ids)
        pushes = [m for m in reader.messages if m.get("typ") == "sub" and "obj" in m]
        assert pushes[0]["uty"] == "ful"
        assert {p["uty"] for p in pushes[1:]} == {"dta"}
        assert subscriber_session(server).queue_high_water < 512 * 1024
        await reader.close()
        await admin.close()


async def test_a_connection_gone_before_its_initial_state_leaves_the_others_streams_alone(
    token: Mint,
) -> None:
    """A client that subscribes with ``exe`` and is gone before its ``ful`` is due gets
    nothing, and the next subscriber's initial state still streams."""
    async with running(FAST_SETUP) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        ids = await fill_realm(admin, "r", 100)
        for attempt in range(5):
            gone = await RawClient.open(server.ws_url, token(f"gone{attempt}"))
            await gone.send([whole_realm("r")])
            await gone.close()
        reader = await SlowReader.open(server.ws_url, token("reader"), pause=0)
        await reader.send(whole_realm("r"))
        await until(lambda: set(reader.held("all")) == set(ids), "the full state")
        await until(lambda: not server.hub.streaming, "no stream left")
        await reader.close()
        await admin.close()


async def test_changes_during_a_streamed_state_leave_the_reader_with_the_servers_set(
    token: Mint,
) -> None:
    async with running(FAST_SETUP) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        ids = await fill_realm(admin, "r", 5_000)
        reader = await SlowReader.open(server.ws_url, token("reader"), pause=0.02)
        await reader.send(whole_realm("r"))
        await until(lambda: bool(reader.held("all")), "the first push")
        await admin.send([{"typ": "obj", "act": "del", "rea": "r", "id": oid} for oid in ids[::7]])
        await admin.send(
            [
                {"typ": "obj", "act": "set", "rea": "r", "id": oid, "dat": {"v": 2}}
                for oid in ids[3::11]
            ]
        )
        await admin.send(
            [{"typ": "obj", "act": "set", "rea": "r", "id": f"new/{n}"} for n in range(50)]
        )
        await admin.marker()
        listed = await admin.ok({"typ": "obj", "act": "lis", "rea": "r"})
        expected = {
            oid: await admin.ok({"typ": "obj", "act": "rea", "rea": "r", "id": oid})
            for oid in list(listed)[::97]
        }
        await until(lambda: set(reader.held("all")) == set(listed), "the server's set", timeout=30)
        held = reader.held("all")
        for oid, body in expected.items():
            assert held[oid] == body
        await reader.close()
        await admin.close()


async def test_a_reader_that_stops_during_its_initial_state_is_closed_4008_holding_little(
    token: Mint,
) -> None:
    async with running({**FAST_SETUP, "limits.send_stall_timeout": 0.5}) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        await fill_realm(admin, "r", 20_000)
        reader = await SlowReader.open(server.ws_url, token("reader"))
        reader.task.cancel()  # reads nothing from here on
        await reader.send(whole_realm("r"))
        await until(lambda: any(s.subscriptions for s in server.hub.sessions.values()), "sub")
        session = subscriber_session(server)
        await until(lambda: session.closing is not None, "condemned", timeout=10)
        # Not the whole state: what one buffer and one more chunk hold.
        assert session.queue_high_water < WRITE_HIGH_WATER + 512 * 1024
        reader.pause = 0.0
        reader.task = asyncio.create_task(reader._read())  # it reads again: what was queued
        await asyncio.wait_for(reader.task, 10)
        assert (reader.ws.close_code, reader.ws.close_reason) == (4008, "slow consumer")
        await admin.ok({"typ": "sys", "act": "hbt"})  # the server goes on
        await admin.close()
        assert server.slow_consumers == 1
        await until(lambda: server.closes[4008, "server"] == 1, "close counted")


# -- bursts the server makes ------------------------------------------------------------


async def test_a_burst_larger_than_the_queue_reaches_a_steady_reader_complete(
    token: Mint,
) -> None:
    async with running({**FAST_SETUP, "limits.send_queue_bytes": 64 * 1024}) as server:
        admin = await RawClient.open(server.ws_url, token("admin"))
        ids = await fill_realm(admin, "r", 4_000, prefix="fleet/")
        gateway = await RawClient.open(server.ws_url, token("gateway", dpv={"r": ["fleet/*"]}))
        await until(lambda: server.hub.engine.connected_objects == len(ids), "all connected")
        reader = await SlowReader.open(server.ws_url, token("reader"), pause=0.005)
        await reader.send({**subscribe_msg("r"), "cid": "ps"}, whole_realm("r", exe=False))
        await until(lambda: reader.replied("ps") and reader.replied("sub-all"), "subscribed")
        await gateway.close()  # 4,000 transitions at once: about 1.5 MB for this reader

        def statuses() -> set[str]:
            return {
                m["dat"]["idp"]
                for m in reader.messages
                if m.get("act") == "pub" and m["dat"]["dat"] == {"cst": "dis"}
            }

        await until(lambda: statuses() == set(ids), "every transition", timeout=30)

        def updated() -> list[str]:
            subs = (m for m in reader.messages if m.get("typ") == "sub" and "obj" in m)
            return [oid for m in subs for oid in m["obj"]["upd"]]

        await until(lambda: len(updated()) == len(ids), "one update per object", timeout=30)
        assert sorted(updated()) == ids
        assert reader.close_code is None
        assert max(len(frame) for frame in reader.frames) <= FRAME_MESSAGES
        await reader.close()
        await admin.close()


# -- gateways ---------------------------------------------------------------------------


def rate_limited(client: RawClient) -> int:
    return sum(1 for m in client.received if m.get("erc") == 429)


async def test_a_gateways_rate_grows_with_its_objects_and_a_riders_does_not(
    token: Mint,
) -> None:
    async with running({}) as server:  # the default limits: 1,000/s, burst 2,000, 2 per object
        admin = await RawClient.open(server.ws_url, token("admin"))
        await admin.ok({"typ": "rea", "act": "cre", "id": "r"})
        ids = [f"fleet/{n:05}" for n in range(4_000)]
        for start in range(0, len(ids), 500):
            await admin.send(
                [
                    {"typ": "obj", "act": "set", "rea": "r", "id": oid}
                    for oid in ids[start : start + 500]
                ]
            )
            await asyncio.sleep(0.5)  # under the admin's own 1,000 messages per second
        await admin.marker()
        gateway = await RawClient.open(server.ws_url, token("gateway", dpv={"r": ["fleet/*"]}))
        rider = await RawClient.open(server.ws_url, token("rider", dpv={"r": ["fleet/00000"]}))

        def updates(of: list[str]) -> list[Message]:
            return [
                {"typ": "obj", "act": "set", "rea": "r", "id": oid, "loc": {"lon": 1, "lat": 2}}
                for oid in of
            ]

        # Each of its 4,000 objects once, at once: over a rider's burst, within the gateway's.
        for start in range(0, len(ids), 500):
            await gateway.send(updates(ids[start : start + 500]))
        await gateway.marker()
        assert rate_limited(gateway) == 0
        for _ in range(6):
            await rider.send(updates(["fleet/00000"] * 500))
        await rider.marker()
        assert rate_limited(rider) > 0
        for client in (gateway, rider, admin):
            await client.close()


async def test_limits_rates_set_the_base_rate_by_sub_pattern(token: Mint) -> None:
    rates = [{"sub": "bridge-*", "messages_per_second": 1, "burst": 5}]
    async with running({"limits.rates": rates}) as server:
        bridge = await RawClient.open(server.ws_url, token("bridge-7"))
        other = await RawClient.open(server.ws_url, token("rider-7"))
        heartbeats = [{"typ": "sys", "act": "hbt", "cid": f"h{n}"} for n in range(10)]
        for client in (bridge, other):
            await client.send(heartbeats)
            await client.marker()
        assert rate_limited(bridge) >= 4
        assert rate_limited(other) == 0
        await bridge.close()
        await other.close()


# -- frames ------------------------------------------------------------------------------


def frame(messages: list[Message]) -> str:
    return orjson.dumps(messages).decode()


def test_a_burst_waits_as_frames_and_a_held_sessions_own_replies_wait_for_the_shell() -> None:
    """Outboxes are encoded a frame at a time as they fill, so a burst waits as bytes; a
    session the shell holds (its replies may acknowledge a write still to be made durable)
    gives up nothing until the shell lets it go."""
    hub = bare_hub()
    writer = hub.new_session("w")
    watcher = hub.new_session("v")
    assert hub.authenticate(writer, mint("writer"), 0.0)
    assert hub.authenticate(watcher, mint("watcher"), 0.0)
    hub.handle_frame(writer, frame([{"typ": "rea", "act": "cre", "id": "r", "cid": "r"}]), 0.0)
    hub.handle_frame(watcher, frame([whole_realm("r", exe=False)]), 0.0)
    take_sent(hub)
    creates = [
        {"typ": "obj", "act": "cre", "rea": "r", "id": f"o{n}", "cid": n} for n in range(600)
    ]
    hub.handle_frame(writer, frame(creates), 1.0)
    assert watcher.frames is not None and len(watcher.frames) == 1  # spilled as bytes
    assert len(watcher.outbox) == 100
    hub.outbound.hold(writer)  # as the shell does while the writes become durable
    frames = [(session.conn_id, len(orjson.loads(data))) for session, data in hub.outgoing()]
    assert frames == [("v", FRAME_MESSAGES), ("v", 100)]
    assert hub.take_frames(writer) == []
    assert hub.outbound.release(writer)
    frames = [(session.conn_id, len(orjson.loads(data))) for session, data in hub.outgoing()]
    assert frames == [("w", FRAME_MESSAGES), ("w", 100)]
    assert hub.messages_out == 1 + 1 + 1 + 1 + 600 + 600  # two aut, rea cre, sub cre, 1200


def test_pushes_behind_a_held_reply_wait_with_it_even_past_a_frame() -> None:
    hub = bare_hub()
    writer = hub.new_session("w")
    assert hub.authenticate(writer, mint("writer"), 0.0)
    hub.handle_frame(writer, frame([{"typ": "rea", "act": "cre", "id": "r", "cid": "r"}]), 0.0)
    hub.handle_frame(writer, frame([whole_realm("r", exe=False)]), 0.0)
    take_sent(hub)
    hub.handle_frame(
        writer, frame([{"typ": "obj", "act": "cre", "rea": "r", "id": "a", "cid": 1}]), 1.0
    )
    hub.outbound.hold(writer)
    other = hub.new_session("o")
    assert hub.authenticate(other, mint("other"), 1.0)
    creates = [{"typ": "obj", "act": "cre", "rea": "r", "id": f"o{n}"} for n in range(700)]
    hub.handle_frame(other, frame(creates), 1.0)  # 700 pushes to the held writer
    assert set(take_sent(hub)) == {"o"}
    assert writer.frames is not None and len(writer.frames) == 1  # bytes, still held
    assert hub.outbound.release(writer)
    assert len(take_sent(hub)["w"]) == 2 + 700
