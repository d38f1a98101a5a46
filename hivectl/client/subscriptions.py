"""Live subscriptions (protocol.md §6.3): object sets that follow the server, realm events.

An `ObjectSubscription` is a live dictionary. The server pushes ``ful`` (the whole set:
replace) and ``dta`` (``cre``/``upd`` entries replace the client's copy, ``del`` ids
leave); `ObjectSubscription.objects` applies each push as it arrives, then the
``on_change`` callback sees what the push changed as a `SubscriptionChange`.

Subscription ids are chosen here (or by the caller) and belong to the connection. After
an unexpected close the connection reconnects and calls `SubscriptionRegistry.restore`,
which re-creates every live subscription with the same id. Object subscriptions are
re-created with ``exe:true``: the fresh ``ful`` replaces whatever the client held, so
changes made while it was away are neither missed nor applied twice. Realm subscriptions
carry events, not state: events during the gap are lost.

The whole initial state, when subscribing returns. A server may send a large state in
pieces: a ``ful`` push, then ``dta`` pushes with the rest in ``cre`` (hivectl does, 500
objects each, as the client reads them), and nothing on the wire says "that was the last
piece". What orders it: a connection's initial states are sent one after the other, each
whole before the next begins. So once the ``ful`` has come, the client opens a *probe*, a
second subscription with ``exe`` whose set is empty (a ``tar`` scope around an object that
does not exist: it costs the server nothing), and waits for the probe's ``ful``: when it
comes, every piece of the first state has come before it. The probe is then deleted. This
is a reading of the protocol as it is (protocol.md §6.3), not an extension of it; against a
server that sends the state whole, the probe's ``ful`` simply follows at once. A probe the
server refuses (the subscription limit reached) leaves the client with the ``ful`` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hivectl.client.connection import Connection, call_soon
from hivectl.client.errors import ConnectionLost, HivekitError
from hivectl.client.objects import HiveObject
from hivectl.core.wire import (
    is_full_state,
    is_realm_list_push,
    object_scope,
    object_subscription,
    request,
    with_initial_state,
)

REALM_ACTIONS = {"cre": "created", "upd": "updated", "del": "deleted"}


@dataclass(frozen=True)
class SubscriptionChange:
    """What one push did to a subscription's set: ``kind`` is ``ful`` (a replacement) or
    ``dta`` (a delta)."""

    kind: str
    created: dict[str, HiveObject]
    updated: dict[str, HiveObject]
    deleted: list[str]


ChangeCallback = Callable[["ObjectSubscription", SubscriptionChange], Any]
"""Called with (subscription, change) after each push has been applied to ``objects``."""
RealmListCallback = Callable[[str, str], Any]
"""Called with (realm id, "created" | "updated" | "deleted") for each realm event."""


class _Live(Protocol):
    id: str

    def create_message(self, *, restoring: bool) -> dict[str, Any]: ...

    def apply(self, message: dict[str, Any]) -> None: ...


class SubscriptionRegistry:
    """The connection's live subscriptions by id: routes ``sub`` pushes, restores them."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._live: dict[str, _Live] = {}
        connection.on_push("sub", self._on_push)
        connection.on_restore(self.restore)

    @staticmethod
    def new_id() -> str:
        return f"sub-{secrets.token_hex(6)}"

    async def open(self, subscription: _Live) -> None:
        """Register, then create on the server (so that no early push is missed)."""
        if subscription.id in self._live:
            raise ValueError(f"subscription id {subscription.id} is already in use")
        self._live[subscription.id] = subscription
        try:
            await self._connection.request(subscription.create_message(restoring=False))
        except BaseException:
            del self._live[subscription.id]
            raise

    async def request(self, message: dict[str, Any]) -> Any:
        return await self._connection.request(message)

    async def close(self, sub_id: str, realm_id: str) -> None:
        """End a subscription; the server forgets it anyway when the connection is gone."""
        if self._live.pop(sub_id, None) is None:
            return
        with contextlib.suppress(ConnectionLost):
            await self._connection.request(request("sub", "del", id=sub_id, rea=realm_id))

    async def initial_state(self, subscription: ObjectSubscription) -> None:
        """Return once `subscription` (created with ``exe``) holds its whole initial state
        (see the module docstring). If it does not come within the connection's request
        timeout, the subscription is ended and TimeoutError raised: no half-filled set is
        handed out, and none is left behind on the server."""
        try:
            async with asyncio.timeout(self._connection.request_timeout):
                await subscription.full_received.wait()
                await self._after_what_is_queued(subscription.realm_id)
        except BaseException:
            await self.close(subscription.id, subscription.realm_id)
            raise

    async def _after_what_is_queued(self, realm_id: str) -> None:
        """Return once the initial states asked for so far have all been received."""
        probe = _Probe(self.new_id(), realm_id)
        try:
            await self.open(probe)
        except HivekitError:
            return
        try:
            await probe.done.wait()
        finally:
            await self.close(probe.id, probe.realm_id)

    async def restore(self) -> None:
        for subscription in list(self._live.values()):
            await self._connection.request(subscription.create_message(restoring=True))

    def _on_push(self, message: dict[str, Any]) -> None:
        subscription = self._live.get(message.get("id", ""))
        if subscription is not None:
            subscription.apply(message)


class ObjectSubscription:
    """The objects of a realm that match a scope and filters, kept current by the server."""

    def __init__(
        self,
        registry: SubscriptionRegistry,
        realm_id: str,
        sub_id: str,
        options: dict[str, Any],
        on_change: ChangeCallback | None,
    ) -> None:
        self.id = sub_id
        self.realm_id = realm_id
        self.objects: dict[str, HiveObject] = {}
        self.full_received = asyncio.Event()
        """Set by the first ``ful`` push."""
        self._registry = registry
        self._options = options
        self._on_change = on_change

    def __repr__(self) -> str:
        return (
            f"ObjectSubscription({self.id!r}, realm={self.realm_id!r}, {len(self.objects)} objects)"
        )

    async def update(
        self,
        *,
        where: Sequence[str] | None = None,
        shape: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> None:
        """Change filters, shape or target (what is not given stays); a ``ful`` push follows."""
        patch = object_scope(atr=where, sha=shape, sta=target, sty=scope_of(shape, target))
        await self._registry.request(
            request("sub", "upd", id=self.id, rea=self.realm_id, dat=patch)
        )
        self._options.update(patch)

    async def close(self) -> None:
        await self._registry.close(self.id, self.realm_id)

    def create_message(self, *, restoring: bool) -> dict[str, Any]:
        options = with_initial_state(self._options) if restoring else self._options
        return request("sub", "cre", id=self.id, rea=self.realm_id, dat=options)

    def apply(self, message: dict[str, Any]) -> None:
        body = message.get("obj") or {}
        change = SubscriptionChange(
            kind="ful" if is_full_state(message) else "dta",
            created=_objects(body.get("cre")),
            updated=_objects(body.get("upd")),
            deleted=list(body.get("del") or ()),
        )
        if change.kind == "ful":
            self.objects.clear()
            self.full_received.set()
        self.objects.update(change.created)
        self.objects.update(change.updated)
        for object_id in change.deleted:
            self.objects.pop(object_id, None)
        if self._on_change is not None:
            call_soon(self._on_change, self, change)


class _Probe:
    """An ``exe`` subscription that holds nothing: its ``ful`` marks the end of the initial
    states asked for before it (`SubscriptionRegistry.initial_state`)."""

    def __init__(self, sub_id: str, realm_id: str) -> None:
        self.id = sub_id
        self.realm_id = realm_id
        self.done = asyncio.Event()

    def create_message(self, *, restoring: bool) -> dict[str, Any]:
        nowhere = {"id": f"hivectl-probe/{secrets.token_hex(8)}", "r": 1}
        options = object_subscription("tar", sta=nowhere, exe=True)
        return request("sub", "cre", id=self.id, rea=self.realm_id, dat=options)

    def apply(self, message: dict[str, Any]) -> None:
        if is_full_state(message):
            self.done.set()


class RealmSubscription:
    """Realm events: the realm list (``rea:"sys"``) or one realm's data, as `options`
    (`hivectl.core.wire.realm_list_subscription` or ``realm_data_subscription``) say."""

    def __init__(
        self,
        registry: SubscriptionRegistry,
        realm_id: str,
        options: dict[str, str],
        on_push: Callable[[dict[str, Any]], None],
    ) -> None:
        self.id = registry.new_id()
        self.realm_id = realm_id
        self._registry = registry
        self._options = options
        self._on_push = on_push

    async def close(self) -> None:
        await self._registry.close(self.id, self.realm_id)

    def create_message(self, *, restoring: bool) -> dict[str, Any]:
        return request("sub", "cre", id=self.id, rea=self.realm_id, dat=self._options)

    def apply(self, message: dict[str, Any]) -> None:
        self._on_push(message)


def scope_of(shape: Mapping[str, Any] | None, target: Mapping[str, Any] | None) -> str | None:
    """The ``sty`` that a `shape` or `target` asks for, so callers need not name it: a
    target is ``tar``, a shape ``pol``, ``cir`` or ``rec`` by its keys, neither None."""
    if target is not None:
        return "tar"
    if shape is None:
        return None
    if "points" in shape:
        return "pol"
    return "cir" if "r" in shape else "rec"


def realm_list_handler(on_change: RealmListCallback) -> Callable[[dict[str, Any]], None]:
    def handle(message: dict[str, Any]) -> None:
        if not is_realm_list_push(message):
            return
        event = message["dat"]
        action = REALM_ACTIONS.get(event.get("act", ""), event.get("act", ""))
        call_soon(on_change, event.get("id", ""), action)

    return handle


def _objects(entries: Mapping[str, Any] | None) -> dict[str, HiveObject]:
    return {oid: HiveObject.from_wire(value) for oid, value in (entries or {}).items()}
