"""A subscriber process for *scale*: one realm-wide subscriber, apart from the load generator.

Ten subscribers that each receive a full state of 100,000 objects (one frame of 16 MB from
today's server) or 100,000 pushes would, in one process, take turns at parsing: the last
would wait for the other nine, and its time would be the load generator's, not the
server's. So each runs in a process of its own, started by the load generator
(`hivectl.bench.scenarios.scale`) with the pattern of `hivectl.bench.provider`:

* the load generator writes one JSON line to stdin: ``{"url", "token", "realm", "mode",
  "expected", "wait_s"}``; ``mode`` is ``full`` (hold the realm's full state with ``exe``)
  or ``transitions`` (see every object of a gateway go: a ``connectionStatusChanged``
  ``dis`` event and an ``upd`` push with ``cst: dis`` for each);
* the process connects and authenticates (for ``transitions`` it also subscribes), then
  prints ``{"ready": true}`` (or ``{"error": ...}``);
* on a line ``go`` it starts (``full``: sends the subscription) and waits up to ``wait_s``;
  then it prints one JSON line: ``done_at`` (when it had everything, on the machine's
  monotonic clock, which the load generator shares; null if never), what it counted, the
  code the server closed it with (null if open) and its own CPU seconds.

Pushes are read as bytes (no UTF-8 decoding into a str first) and parsed with orjson; the
parse is nearly all of a subscriber's CPU: about 0.6 s for 50,000 ``dis`` events and
50,000 ``upd`` pushes on the development machine.

A server may queue a close (4008, slow consumer) right behind the frame that completes a
subscriber: it holds everything and is dropped all the same, so after completing the
process gives the close `LINGER_S` to show.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from hivectl.bench.flavors import SetupError, open_ws
from hivectl.core.wire import (
    PRESENCE_EVENT,
    bearer,
    is_publication,
    is_subscription_push,
    object_subscription,
    pubsub_filter,
    request,
)

SUBSCRIPTION = "scale"
REPLY_TIMEOUT_S = 30.0
LINGER_S = 0.5
NO_CLOSE_CODE = 1006
"""The close code when the connection ended without a close frame."""


async def authenticated(url: str, token: str) -> ClientConnection:
    """A connection whose ``Bearer`` frame was accepted."""
    ws = await open_ws(url)
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            await ws.send(bearer(token))
            (reply,) = orjson.loads(await ws.recv())
        if reply.get("res") != "suc":
            raise SetupError(f"the server refused the bench's token: {reply.get('err')}")
    except BaseException:
        await ws.close()
        raise
    return ws


def close_code(ws: ClientConnection) -> int | None:
    """The code of the close frame the server sent, None while it sent none."""
    received = ws.protocol.close_rcvd
    return None if received is None else received.code


async def _subscribe_both(ws: ClientConnection, realm: str) -> None:
    """The presence events of the whole realm, and an object subscription over it."""
    requests = [
        request("rea", "sub", id=realm, dat=pubsub_filter(PRESENCE_EVENT, "*"), cid=1),
        request("sub", "cre", id=SUBSCRIPTION, rea=realm, dat=object_subscription(), cid=2),
    ]
    await ws.send(orjson.dumps(requests).decode())
    waiting = {1, 2}
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        while waiting:
            for reply in orjson.loads(await ws.recv()):
                if reply.get("cid") in waiting:
                    if reply.get("res") != "suc":
                        raise SetupError(f"cannot subscribe: {reply.get('err')}")
                    waiting.discard(reply["cid"])


async def hold_full_state(ws: ClientConnection, realm: str, expected: int, held: set[str]) -> None:
    """Subscribe with ``exe``; done once the ids of ``ful`` and ``cre`` pushes number N."""
    subscription = request(
        "sub", "cre", id=SUBSCRIPTION, rea=realm, dat=object_subscription(exe=True), cid=1
    )
    await ws.send(orjson.dumps([subscription]).decode())
    while len(held) < expected:
        for message in orjson.loads(await ws.recv(decode=False)):
            if message.get("cid") == 1 and message.get("res") != "suc":
                raise SetupError(f"cannot subscribe: {message.get('err')}")
            if is_subscription_push(message) and message.get("id") == SUBSCRIPTION:
                held.update(message.get("obj", {}).get("cre", ()))


async def see_transitions(
    ws: ClientConnection, expected: int, events: set[str], updates: set[str]
) -> None:
    """Done once `expected` objects each sent a ``dis`` event and an ``upd`` with ``dis``."""
    while len(events) < expected or len(updates) < expected:
        for message in orjson.loads(await ws.recv(decode=False)):
            if is_publication(message):
                event = message["dat"]
                if event.get("eve") == PRESENCE_EVENT and event["dat"]["cst"] == "dis":
                    events.add(event["idp"])
            elif is_subscription_push(message):
                for object_id, entry in message.get("obj", {}).get("upd", {}).items():
                    if entry.get("cst") == "dis":
                        updates.add(object_id)


async def subscribe(order: dict[str, Any]) -> dict[str, Any]:
    """Everything after the order: ready, ``go``, the wait, the outcome."""
    ws = await authenticated(order["url"], order["token"])
    try:
        if order["mode"] == "transitions":
            await _subscribe_both(ws, order["realm"])
        print(orjson.dumps({"ready": True}).decode(), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        cpu = time.process_time()
        expected = int(order["expected"])
        held: set[str] = set()
        events: set[str] = set()
        updates: set[str] = set()
        done_at = None
        try:
            async with asyncio.timeout(float(order["wait_s"])):
                if order["mode"] == "full":
                    await hold_full_state(ws, order["realm"], expected, held)
                else:
                    await see_transitions(ws, expected, events, updates)
                done_at = time.monotonic()
        except (TimeoutError, ConnectionClosed):
            pass
        counts = (
            {"held": len(held)}
            if order["mode"] == "full"
            else {"events": len(events), "updates": len(updates)}
        )
        if done_at is not None and close_code(ws) is None:
            await asyncio.sleep(LINGER_S)
        code = close_code(ws)
        if code is None and ws.close_code is not None:
            code = NO_CLOSE_CODE  # ended without the server's close frame
        return {
            "done_at": done_at,
            **counts,
            "close": code,
            "cpu_s": round(time.process_time() - cpu, 3),
        }
    finally:
        await ws.close()


def main() -> int:
    order: dict[str, Any] = orjson.loads(sys.stdin.readline())
    try:
        outcome = asyncio.run(subscribe(order))
    except (SetupError, OSError, WebSocketException, TimeoutError) as exc:
        outcome = {"error": repr(exc)}
    print(orjson.dumps(outcome).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
