"""The client's public API: realms, objects, pub/sub and system queries.

Names follow Hivekit's own clients (``client.realm.get``, ``realm.object.create``,
``realm.pubsub.subscribe``) in Python spelling. Every call is one request on the
shared `Connection`; pub/sub and object/realm subscriptions are remembered and
re-created, with the same ids, after the connection comes back.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from hivectl.client.connection import CloseInfo, Connection, call_soon
from hivectl.client.objects import HiveObject
from hivectl.client.subscriptions import (
    ChangeCallback,
    ObjectSubscription,
    RealmListCallback,
    RealmSubscription,
    SubscriptionRegistry,
    realm_list_handler,
    scope_of,
)
from hivectl.core.wire import (
    REALM_LIST,
    object_subscription,
    presence_filter,
    pubsub_event,
    pubsub_filter,
    realm_data_subscription,
    realm_list_subscription,
    request,
)

PubSubCallback = Callable[[Any, str], Any]
"""Called with (payload, object id) for each event delivered to a subscription."""
RealmCallback = Callable[["Realm"], Any]
"""Called with the realm (its ``lab`` and ``dat`` just updated) after each update."""


class HivekitClient:
    """Connect, authenticate, and act on realms. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        reconnect: bool = True,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
        stable_after: float = 10.0,
        request_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Reconnects wait a jittered, doubling delay from `reconnect_delay` up to
        `max_reconnect_delay`, reset only by a connection that held `stable_after` seconds
        (`hivectl.client.backoff` says why). `tls` verifies a ``wss://`` server against a
        private CA (`hivectl.core.tls.client_context`); by default the system's trust store
        does."""
        self.connection = Connection(
            url,
            token,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            stable_after=stable_after,
            request_timeout=request_timeout,
            tls=tls,
        )
        self.realm = RealmApi(self.connection)
        self.system = SystemApi(self.connection)
        self.admin = AdminApi(self.connection)

    async def __aenter__(self) -> HivekitClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        await self.connection.open()

    async def close(self) -> None:
        await self.connection.close()

    async def authenticate(self, token: str) -> None:
        """Swap the token on the live connection (token refresh)."""
        await self.connection.authenticate(token)

    @property
    def connection_status(self) -> str:
        return self.connection.status

    def on_connection_status(self, callback: Callable[[str], Any]) -> None:
        """Called with "connected", "reconnecting" or "disconnected" on every change."""
        self.connection.on_status(callback)

    @property
    def last_close(self) -> CloseInfo | None:
        """The last loss the client did not ask for: close code, reason, next attempt."""
        return self.connection.last_close

    def on_close(self, callback: Callable[[CloseInfo], Any]) -> None:
        """Called with a `CloseInfo` on every loss the client did not ask for (a close by
        the server, a dead socket, a failed reconnect), before the wait for the next try."""
        self.connection.on_close(callback)


class RealmApi:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._pubsub = PubSubRegistry(connection)
        self._subscriptions = SubscriptionRegistry(connection)

    def handle(self, realm_id: str, lab: str = "", dat: dict[str, Any] | None = None) -> Realm:
        """A realm handle without a round trip (for realms known to exist)."""
        return Realm(self._connection, self._pubsub, self._subscriptions, realm_id, lab, dat or {})

    async def subscribe(self, on_change: RealmListCallback) -> RealmSubscription:
        """Realm list events: ``on_change(realm_id, "created" | "updated" | "deleted")``."""
        subscription = RealmSubscription(
            self._subscriptions,
            REALM_LIST,
            realm_list_subscription(),
            realm_list_handler(on_change),
        )
        await self._subscriptions.open(subscription)
        return subscription

    async def get(self, realm_id: str) -> Realm:
        value = await self._connection.request(request("rea", "rea", id=realm_id))
        return self.handle(realm_id, value.get("lab", ""), value.get("dat") or {})

    async def create(
        self, realm_id: str, lab: str = "", dat: Mapping[str, Any] | None = None
    ) -> Realm:
        await self._connection.request(request("rea", "cre", id=realm_id, lab=lab, dat=_opt(dat)))
        return self.handle(realm_id, lab, dict(dat or {}))

    async def list(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await self._connection.request(request("rea", "lis"))
        return result

    async def update(
        self, realm_id: str, lab: str | None = None, dat: Mapping[str, Any] | None = None
    ) -> None:
        await self._connection.request(request("rea", "upd", id=realm_id, lab=lab, dat=_opt(dat)))

    async def delete(self, realm_id: str) -> None:
        await self._connection.request(request("rea", "del", id=realm_id))


class Realm:
    def __init__(
        self,
        connection: Connection,
        pubsub: PubSubRegistry,
        subscriptions: SubscriptionRegistry,
        realm_id: str,
        lab: str,
        dat: dict[str, Any],
    ) -> None:
        self.id = realm_id
        self.lab = lab
        self.dat = dat
        self.object = ObjectApi(connection, subscriptions, realm_id)
        self.pubsub = RealmPubSub(pubsub, realm_id)
        self._subscriptions = subscriptions

    async def subscribe(self, on_change: RealmCallback) -> RealmSubscription:
        """Follow this realm's updates: ``lab`` and ``dat`` change, then ``on_change(realm)``."""

        def updated(message: dict[str, Any]) -> None:
            body = message.get("rea") or {}
            self.lab = body.get("lab", "")
            self.dat = dict(body.get("dat") or {})
            call_soon(on_change, self)

        subscription = RealmSubscription(
            self._subscriptions, self.id, realm_data_subscription(), updated
        )
        await self._subscriptions.open(subscription)
        return subscription

    def __repr__(self) -> str:
        return f"Realm({self.id!r})"


class ObjectApi:
    def __init__(
        self, connection: Connection, subscriptions: SubscriptionRegistry, realm_id: str
    ) -> None:
        self._connection = connection
        self._subscriptions = subscriptions
        self._realm = realm_id

    def _write(
        self,
        act: str,
        object_id: str,
        label: str | None,
        location: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        task_ids: Sequence[str] | None,
    ) -> dict[str, Any]:
        """A write message: only the fields given are sent (``dat`` merges key by key)."""
        return request(
            "obj",
            act,
            rea=self._realm,
            id=object_id,
            lab=label,
            loc=_opt(location),
            dat=_opt(data),
            tds=None if task_ids is None else list(task_ids),
        )

    async def create(
        self,
        object_id: str,
        *,
        label: str | None = None,
        location: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> None:
        """Create the object (an existing one is updated, as Hivekit's clients expect)."""
        await self._connection.request(
            self._write("cre", object_id, label, location, data, task_ids)
        )

    async def update(
        self,
        object_id: str,
        *,
        label: str | None = None,
        location: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> None:
        """Update an existing object (404 otherwise)."""
        await self._connection.request(
            self._write("upd", object_id, label, location, data, task_ids)
        )

    async def set(
        self,
        object_id: str,
        *,
        label: str | None = None,
        location: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> None:
        """Upsert without a reply: returns once the frame is sent."""
        await self._connection.send(
            [self._write("set", object_id, label, location, data, task_ids)]
        )

    async def get(self, object_id: str) -> HiveObject:
        value = await self._connection.request(request("obj", "rea", rea=self._realm, id=object_id))
        return HiveObject.from_wire(value)

    async def list(
        self,
        *,
        filters: Sequence[str] | None = None,
        shape: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        options: dict[str, Any] = {}
        if filters is not None:
            options["atr"] = list(filters)
        if shape is not None:
            options["sha"] = dict(shape)
        if fields is not None:
            options["fie"] = list(fields)
        message = request("obj", "lis", rea=self._realm, dat=options or None)
        result: dict[str, dict[str, Any]] = await self._connection.request(message)
        return result

    async def delete(self, object_id: str) -> None:
        await self._connection.request(request("obj", "del", rea=self._realm, id=object_id))

    async def subscribe(
        self,
        *,
        where: Sequence[str] = (),
        shape: Mapping[str, Any] | None = None,
        scope: str | None = None,
        target: Mapping[str, Any] | None = None,
        execute_immediately: bool = False,
        on_change: ChangeCallback | None = None,
        subscription_id: str | None = None,
    ) -> ObjectSubscription:
        """A live set of the realm's objects that match; see `ObjectSubscription`.

        The scope follows from the arguments unless given: ``target={"id", "r"}`` is
        ``tar`` (objects within r metres of that object), a ``shape`` is ``rec``, ``cir``
        or ``pol`` by its keys, neither is the whole realm (``rea``). ``where`` holds
        attribute filters (``'type="rider"'``), all of which must hold. With
        ``execute_immediately`` this returns once ``objects`` holds the whole current set,
        however many pushes the server sends it in (`hivectl.client.subscriptions`).
        """
        options = object_subscription(
            scope or scope_of(shape, target) or "rea",
            atr=where,
            sha=shape,
            sta=target,
            exe=execute_immediately,
        )
        subscription = ObjectSubscription(
            self._subscriptions,
            self._realm,
            subscription_id or self._subscriptions.new_id(),
            options,
            on_change,
        )
        await self._subscriptions.open(subscription)
        if execute_immediately:
            await self._subscriptions.initial_state(subscription)
        return subscription


class PubSubRegistry:
    """Every pub/sub subscription of the client, re-created after a reconnect."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._callbacks: dict[tuple[str, str, str], list[PubSubCallback]] = {}
        connection.on_push("pub", self._on_push)
        connection.on_restore(self._restore)

    async def subscribe(
        self, realm_id: str, event: str, callback: PubSubCallback, id_pattern: str
    ) -> None:
        key = (realm_id, event, id_pattern)
        if key not in self._callbacks:
            await self._connection.request(_pubsub_message("sub", key))
        self._callbacks.setdefault(key, []).append(callback)

    async def unsubscribe(self, realm_id: str, event: str, id_pattern: str) -> None:
        key = (realm_id, event, id_pattern)
        if self._callbacks.pop(key, None) is not None:
            await self._connection.request(_pubsub_message("uns", key))

    async def publish(self, realm_id: str, event: str, object_id: str, data: Any) -> None:
        await self._connection.request(
            request("rea", "pub", id=realm_id, dat=pubsub_event(event, object_id, data))
        )

    def _on_push(self, message: dict[str, Any]) -> None:
        body = message.get("dat") or {}
        key = (message.get("rea", ""), body.get("eve", ""), message.get("sid", ""))
        for callback in list(self._callbacks.get(key, ())):
            call_soon(callback, body.get("dat"), body.get("idp", ""))

    async def _restore(self) -> None:
        for key in list(self._callbacks):
            await self._connection.request(_pubsub_message("sub", key))


def _pubsub_message(act: str, key: tuple[str, str, str]) -> dict[str, Any]:
    realm_id, event, id_pattern = key
    return request("rea", act, id=realm_id, dat=pubsub_filter(event, id_pattern))


class RealmPubSub:
    def __init__(self, registry: PubSubRegistry, realm_id: str) -> None:
        self._registry = registry
        self._realm = realm_id

    async def subscribe(self, event: str, callback: PubSubCallback, id_pattern: str = "*") -> None:
        await self._registry.subscribe(self._realm, event, callback, id_pattern)

    async def unsubscribe(self, event: str, id_pattern: str = "*") -> None:
        await self._registry.unsubscribe(self._realm, event, id_pattern)

    async def publish(self, event: str, object_id: str, data: Any = None) -> None:
        await self._registry.publish(self._realm, event, object_id, data)


class SystemApi:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._connection.request(request("sys", "sta"))
        return result

    async def heartbeat(self) -> None:
        await self._connection.request(request("sys", "hbt"))

    async def presence(self, realm_id: str, object_id: str) -> dict[str, Any]:
        """Why an object is online: providers and the presence ledger."""
        result: dict[str, Any] = await self._connection.request(
            request("sys", "pre", rea=realm_id, id=object_id)
        )
        return result

    async def presence_count(self, realm_id: str, id_pattern: str = "*") -> dict[str, int]:
        result: dict[str, int] = await self._connection.request(
            request("sys", "pre", rea=realm_id, dat=presence_filter(id_pattern))
        )
        return result


class AdminApi:
    """Operator requests (``typ:"adm"``, README "Operating"); the token needs ``adm: true``.

    In a cluster `connections`, `disconnect` and `cluster_status` cover every node; their
    answers say which nodes did not answer (``unanswered``).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def connections(
        self, *, realm: str | None = None, sub: str | None = None, node: str | None = None
    ) -> dict[str, Any]:
        """``{"connections": [...], "unanswered": [...]}``; `sub` is an id pattern."""
        return await self.request("con", realm=realm, sub=sub, node=node)

    async def disconnect(
        self,
        *,
        conn: str | None = None,
        sub: str | None = None,
        jti: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Close the connections named by one of `conn`, `sub`, `jti` (close code 4003)."""
        return await self.request("dis", conn=conn, sub=sub, jti=jti, reason=reason)

    async def revoke(
        self,
        *,
        jti: str | None = None,
        sub: str | None = None,
        issued_before: float | None = None,
    ) -> dict[str, Any]:
        """Refuse the token `jti`, or every token of `sub` issued before a time (default now)."""
        return await self.request("rev", jti=jti, sub=sub, issuedBefore=issued_before)

    async def revocations(self) -> dict[str, Any]:
        return await self.request("rvl")

    async def cluster_status(self) -> dict[str, Any]:
        """Every node (lease, log state and position), the stream and NATS servers; on a
        server that is no cluster, ``mode: "embedded"`` and that node alone."""
        return await self.request("cst")

    async def request(self, act: str, **options: Any) -> dict[str, Any]:
        """One ``adm`` request; options that are None are left out."""
        dat = {key: value for key, value in options.items() if value is not None}
        result: dict[str, Any] = await self._connection.request(request("adm", act, dat=dat))
        return result


def _opt(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None
