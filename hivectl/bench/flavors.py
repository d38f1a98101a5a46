"""The two protocols the load generator speaks: Hivekit (hivectl) and the baseline's.

A scenario is written once against `Flavor`; each flavor says how a provider registers, how
a watcher and a subscriber subscribe, what a location update looks like and how to read
what the server pushes. The load generator speaks on raw `websockets` connections rather
than `hivectl.client`, so that it spends as little as possible per message: it is usually
the first to run out of CPU.

Both flavors connect the same way (`open_ws`): no compression offered, no client-side
keepalive (the server pings; a silent client must be one that stops answering). Both
authenticate every connection with a JWT signed with the flavor's key, and a provider's
token is the same in both: ``sub`` and ``dpv`` naming its object, ``iat``, ``exp``, and a
``jti`` that makes each (object, serial) a token of its own -- a new rider's, when the
serial is new -- so both servers verify the same bytes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Data

from hivectl.bench.baseline import ACCEPTED
from hivectl.bench.plan import REALM
from hivectl.core.tokens import SigningKey, mint_token
from hivectl.core.wire import (
    PRESENCE_EVENT,
    bearer,
    is_authentication,
    is_publication,
    is_subscription_push,
    object_subscription,
    pubsub_filter,
    request,
)
from hivectl.sim.ledger import Status

TOKEN_TTL_S = 3600.0
SETUP_BATCH = 500
"""Objects created per frame during setup (under `limits.max_messages_per_frame`)."""
OPEN_TIMEOUT_S = 30.0


async def open_ws(url: str) -> ClientConnection:
    return await connect(
        url,
        proxy=None,
        compression=None,
        ping_interval=None,
        max_size=None,
        open_timeout=OPEN_TIMEOUT_S,
    )


class SetupError(Exception):
    """The server refused what a scenario needs before it starts."""


def key_line(key: SigningKey) -> bytes:
    """The signing key as one JSON line, for a pipe to a load process (never its argv)."""
    secret = key.key.decode() if isinstance(key.key, bytes) else key.key
    return orjson.dumps({"algorithm": key.algorithm, "key": secret, "kid": key.kid}) + b"\n"


def key_from(given: Any) -> SigningKey:
    """The key `key_line` wrote, parsed; ValueError when it is not one."""
    if not isinstance(given, dict) or not isinstance(given.get("key"), str):
        raise ValueError("a signing key is a JSON object with a key")
    return SigningKey(given.get("algorithm", "HS256"), given["key"], given.get("kid"))


def flavor_named(name: str, key: SigningKey) -> Flavor:
    return Baseline(key) if name == "baseline" else Hivectl(key)


def provider_claims(object_id: str, serial: int) -> dict[str, Any]:
    """A provider's claims for both servers: hivectl reads ``dpv``, the baseline ``sub``."""
    return {"sub": object_id, "dpv": {REALM: [object_id]}, "jti": f"{object_id}#{serial}"}


class Flavor(Protocol):
    name: str
    key: SigningKey

    async def prepare(self, url: str, object_ids: Sequence[str]) -> None:
        """Create what providers and updates need (hivectl: the realm and the objects)."""

    def hello(self, object_id: str, serial: int = 0) -> str:
        """A provider's first message, with a token of its own for each `serial`; made
        before any timing starts (minting is the load side's cost, not the server's)."""

    def hellos(self, object_ids: Sequence[str]) -> list[str]:
        """Each provider's first message (serial 0)."""

    def accepted(self, reply: Data) -> bool:
        """Whether the first reply to a hello registers the provider."""

    async def watch(self, url: str) -> ClientConnection:
        """A connection subscribed to presence events, once the subscription is confirmed."""

    def presence(self, frame: Data) -> Iterator[tuple[str, Status]]:
        """(object id, ``con``/``dis``) for each presence event in a pushed frame."""

    async def subscribe(self, url: str) -> ClientConnection:
        """A connection that receives every location update of the realm."""

    def update(self, object_id: str, due: float, step: int) -> str:
        """A location update carrying `due` (when it was scheduled) for latency."""

    def update_times(self, frame: Data) -> list[float]:
        """The `due` time of every update delivered in a pushed frame."""

    def ingest_token(self) -> str:
        """A token for the ingest benchmark (hivectl only)."""


def _token(claims: dict[str, Any], key: SigningKey) -> str:
    return mint_token(claims, key, now=time.time(), ttl=TOKEN_TTL_S)


def _location(step: int) -> dict[str, float]:
    return {"lon": -0.1 + (step % 1000) / 1e5, "lat": 51.5}


class Hivectl:
    """Hivekit: Bearer tokens with ``dpv``, presence by pub/sub, updates by ``set``."""

    name = "hivectl"

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self._cids = itertools.count(1)

    def _token(self, claims: dict[str, Any]) -> str:
        return _token(claims, self.key)

    def ingest_token(self) -> str:
        return self._token({"sub": "bench-admin"})

    async def _admin(self, url: str) -> ClientConnection:
        """A connection whose token has no ``per``: it may do everything."""
        ws = await open_ws(url)
        await ws.send(bearer(self.ingest_token()))
        if not self.accepted(await ws.recv()):
            await ws.close()
            raise SetupError("the server refused the bench's token (is the secret the same?)")
        return ws

    async def _call(self, ws: ClientConnection, messages: list[dict[str, Any]]) -> list[Any]:
        """Send one frame of requests; return their replies once all have come."""
        waiting = {}
        for message in messages:
            message["cid"] = cid = next(self._cids)
            waiting[cid] = message
        await ws.send(orjson.dumps(messages).decode())
        replies = []
        while waiting:
            for reply in orjson.loads(await ws.recv()):
                if waiting.pop(reply.get("cid"), None) is not None:
                    replies.append(reply)
        return replies

    async def prepare(self, url: str, object_ids: Sequence[str]) -> None:
        ws = await self._admin(url)
        try:
            (realm,) = await self._call(ws, [request("rea", "cre", id=REALM)])
            if realm.get("res") != "suc" and realm.get("erc") != 409:
                raise SetupError(f"cannot create realm {REALM}: {realm.get('err')}")
            for start in range(0, len(object_ids), SETUP_BATCH):
                creates = [
                    request("obj", "cre", rea=REALM, id=object_id)
                    for object_id in object_ids[start : start + SETUP_BATCH]
                ]
                for reply in await self._call(ws, creates):
                    if reply.get("res") != "suc":
                        raise SetupError(f"cannot create objects: {reply.get('err')}")
        finally:
            await ws.close()

    def hello(self, object_id: str, serial: int = 0) -> str:
        return bearer(self._token(provider_claims(object_id, serial)))

    def hellos(self, object_ids: Sequence[str]) -> list[str]:
        return [self.hello(object_id) for object_id in object_ids]

    def accepted(self, reply: Data) -> bool:
        frame = orjson.loads(reply)
        return bool(frame) and is_authentication(frame[0]) and frame[0].get("res") == "suc"

    async def watch(self, url: str) -> ClientConnection:
        ws = await self._admin(url)
        options = pubsub_filter(PRESENCE_EVENT, "*")
        await self._subscribed(ws, request("rea", "sub", id=REALM, dat=options))
        return ws

    def presence(self, frame: Data) -> Iterator[tuple[str, Status]]:
        for message in orjson.loads(frame):
            if is_publication(message):
                event = message["dat"]
                if event.get("eve") == PRESENCE_EVENT:
                    yield event["idp"], event["dat"]["cst"]

    async def subscribe(self, url: str) -> ClientConnection:
        ws = await self._admin(url)
        options = object_subscription()
        await self._subscribed(ws, request("sub", "cre", id="fleet", rea=REALM, dat=options))
        return ws

    async def _subscribed(self, ws: ClientConnection, request: dict[str, Any]) -> None:
        (reply,) = await self._call(ws, [request])
        if reply.get("res") != "suc":
            await ws.close()
            raise SetupError(f"cannot subscribe: {reply.get('err')}")

    def update(self, object_id: str, due: float, step: int) -> str:
        message = request(
            "obj", "set", rea=REALM, id=object_id, loc=_location(step), dat={"due": due}
        )
        return orjson.dumps([message]).decode()

    def update_times(self, frame: Data) -> list[float]:
        times = []
        for message in orjson.loads(frame):
            if is_subscription_push(message):
                for change in ("cre", "upd"):
                    for entry in message.get("obj", {}).get(change, {}).values():
                        due = entry.get("dat", {}).get("due")
                        if due is not None:
                            times.append(float(due))
        return times


class Baseline:
    """The baseline's protocol (`hivectl.bench.baseline`): a hello with a token, then raw
    JSON."""

    name = "baseline"

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    async def prepare(self, url: str, object_ids: Sequence[str]) -> None:
        """Nothing: the baseline has no objects."""

    def hello(self, object_id: str, serial: int = 0) -> str:
        token = _token(provider_claims(object_id, serial), self.key)
        return orjson.dumps({"role": "provide", "token": token}).decode()

    def hellos(self, object_ids: Sequence[str]) -> list[str]:
        return [self.hello(object_id) for object_id in object_ids]

    def accepted(self, reply: Data) -> bool:
        return reply == ACCEPTED

    async def watch(self, url: str) -> ClientConnection:
        ws = await open_ws(url)
        token = _token({"sub": "bench-watcher"}, self.key)
        await ws.send(orjson.dumps({"role": "watch", "token": token}).decode())
        if not self.accepted(await ws.recv()):
            await ws.close()
            raise SetupError("the baseline refused a watcher (is the secret the same?)")
        return ws

    def presence(self, frame: Data) -> Iterator[tuple[str, Status]]:
        event = orjson.loads(frame)
        if "cst" in event:
            yield event["id"], event["cst"]

    subscribe = watch

    def update(self, object_id: str, due: float, step: int) -> str:
        return orjson.dumps({"id": object_id, "loc": _location(step), "due": due}).decode()

    def update_times(self, frame: Data) -> list[float]:
        due = orjson.loads(frame).get("due")
        return [] if due is None else [float(due)]

    def ingest_token(self) -> str:
        raise SetupError("the baseline has no storage: ingest runs against hivectl only")
