"""The asyncio side of `hivectl watch realm`: one client, two subscriptions, a `WatchState`.

* ``connectionStatusChanged`` pub/sub on the id pattern: every event becomes a `WatchEvent`
  handed to ``on_event`` (the CLI prints a JSON line, or the live view picks it up).
* An object subscription on the whole realm with ``exe:true``: the current set, kept live,
  gives the online/total counts and the labels. Its pushes and the events travel separately,
  so an event also updates the status it knows at once.

It subscribes to the events first, then asks for the set, so no event falls between the two.
A realm that does not exist yet is waited for (a realm-list subscription announces it), so
``watch`` can be started before the simulator creates it. The client reconnects by itself after a
server restart and re-creates both subscriptions with the same ids (the fresh ``ful`` push
replaces the set); events published while it was away are not replayed. When the token was
minted here, a fresh one is minted for every reconnect, so a long watch outlives any token.
Every loss of the link (with the server's close code and reason, and when the next dial is)
goes into the state and to ``on_close``, so the CLI can say it.

Why an object disconnected (``closed``, ``timeout``, ``node_lost``...) is not in the event
(protocol.md §6.4: ``{"cst":"dis"}``), but the server's presence ledger has it: for each
``dis`` event the watcher asks ``pre`` for the object's ``lastReason``, the questions of one
burst batched into one frame, before it hands the events out, in order. The questions are
kept under `REASON_LOOKUPS_PER_S` (burst `REASON_LOOKUP_BURST`), well inside the server's
per-connection rate limit: beyond it (a gateway of 50,000 objects leaving) events go out at
once with the reason unknown (None) rather than late or rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any

from hivectl.client import (
    CloseInfo,
    HivekitClient,
    HivekitError,
    ObjectSubscription,
    Realm,
    RealmSubscription,
    SubscriptionChange,
)
from hivectl.client.errors import ConnectionLost
from hivectl.core.wire import PRESENCE_EVENT, request
from hivectl.watch.state import WatchEvent, WatchState

REALM_POLL_S = 1.0
REASON_LOOKUPS_PER_S = 100.0
REASON_LOOKUP_BURST = 200.0
MAX_BATCH = 500
"""Events handed out per round, and so ``pre`` questions per frame at most."""


class LookupBudget:
    """A token bucket for reason lookups (pure: time passed in)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, wanted: int, now: float) -> int:
        """How many of `wanted` lookups may go now (each one spends a token)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


class RealmWatcher:
    def __init__(
        self,
        url: str,
        token: str,
        realm: str,
        *,
        pattern: str = "*",
        limit: int = 20,
        count: int | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
        fresh_token: Callable[[], str] | None = None,
        on_close: Callable[[CloseInfo], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state = WatchState(realm, pattern=pattern, limit=limit)
        self.client = HivekitClient(url, token, tls=tls)
        self.count = count
        self.counted = asyncio.Event()
        """Set once `count` events were handed out (none are handed out after that)."""
        self._stopped = asyncio.Event()
        self._arrived: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()
        self._budget = LookupBudget(REASON_LOOKUPS_PER_S, REASON_LOOKUP_BURST, time.monotonic())
        self._on_event = on_event
        self._fresh_token = fresh_token
        self._on_close = on_close

    def stop(self) -> None:
        """End the watch (Ctrl-C, a reader that went away); callable from any callback."""
        self._stopped.set()

    async def run(self) -> str:
        """Watch until `stop` or `count` events: ``"stopped"`` or ``"counted"``. Bound it
        with ``asyncio.timeout`` for a ``--timeout``."""
        await self.client.connect()
        self.client.on_connection_status(self._on_link)
        self.client.on_close(self._on_lost)
        handing_out = asyncio.create_task(self._hand_out())
        subscribing = asyncio.create_task(self._subscribe())
        stopping = asyncio.create_task(self._stopped.wait())
        try:
            await asyncio.wait([subscribing, stopping], return_when=asyncio.FIRST_COMPLETED)
            if subscribing.done() and subscribing.result():
                await _first(self._stopped, self.counted)
        finally:
            for task in (handing_out, subscribing, stopping):
                task.cancel()
            await self.client.close()
        return "counted" if self.counted.is_set() else "stopped"

    async def _subscribe(self) -> bool:
        """Wait for the realm, subscribe to events then to the set; False if stopped first."""
        realm = await self._realm()
        if realm is None:
            return False
        await realm.pubsub.subscribe(
            PRESENCE_EVENT, self._on_presence, id_pattern=self.state.pattern.text
        )
        while not self._stopped.is_set():
            try:
                await realm.object.subscribe(execute_immediately=True, on_change=self._on_change)
            except TimeoutError:  # the link went before the set came: ask again
                continue
            self.state.link = "connected"
            return True
        return False

    async def _realm(self) -> Realm | None:
        """The realm, once it exists (None if stopped before): a realm-list subscription
        says when it is created, a poll every `REALM_POLL_S` covers a push missed between
        the first look and the subscription."""
        created = asyncio.Event()

        def on_realm(realm_id: str, action: str) -> None:
            if realm_id == self.state.realm and action == "created":
                created.set()

        listing: RealmSubscription | None = None
        try:
            while not self._stopped.is_set():
                try:
                    return await self.client.realm.get(self.state.realm)
                except HivekitError as exc:
                    if exc.code != 404:
                        raise
                self.state.link = "waiting for realm"
                if listing is None:
                    listing = await self.client.realm.subscribe(on_realm)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(self._stopped, created), REALM_POLL_S)
            return None
        finally:
            if listing is not None:
                await listing.close()

    def _on_presence(self, data: Any, object_id: str) -> None:
        cst = data.get("cst") if isinstance(data, dict) else None
        if cst in ("con", "dis"):
            self._arrived.put_nowait((object_id, cst, time.time()))

    async def _hand_out(self) -> None:
        """Events in the order they came, each ``dis`` with its reason when the budget
        allows asking for it."""
        while True:
            batch = [await self._arrived.get()]
            while len(batch) < MAX_BATCH and not self._arrived.empty():
                batch.append(self._arrived.get_nowait())
            reasons = await self._reasons([oid for oid, cst, _ in batch if cst == "dis"])
            for object_id, cst, at in batch:
                if self.counted.is_set() or self._stopped.is_set():
                    return
                reason = reasons.get(object_id) if cst == "dis" else None
                event = self.state.record(object_id, cst, at, reason)
                if self._on_event is not None:
                    self._on_event(event)
                if self.count is not None and self.state.total_events >= self.count:
                    self.counted.set()

    async def _reasons(self, object_ids: list[str]) -> dict[str, str]:
        """``lastReason`` of as many of `object_ids` as the budget allows, in one frame."""
        unique = list(dict.fromkeys(object_ids))
        asked = unique[: self._budget.take(len(unique), time.monotonic())]
        if not asked:
            return {}
        realm = self.state.realm
        messages = [request("sys", "pre", rea=realm, id=oid) for oid in asked]
        try:
            answers = await self.client.connection.request_batch(messages)
        except (ConnectionLost, TimeoutError):
            return {}
        return {
            oid: answer["lastReason"]
            for oid, answer in zip(asked, answers, strict=True)
            if isinstance(answer, dict) and isinstance(answer.get("lastReason"), str)
        }

    def _on_change(self, subscription: ObjectSubscription, change: SubscriptionChange) -> None:
        if change.kind == "ful":
            self.state.replace_objects(
                {oid: (obj.lab, obj.cst) for oid, obj in subscription.objects.items()}
            )
        else:
            changed = {**change.created, **change.updated}
            self.state.update_objects(
                {oid: (obj.lab, obj.cst) for oid, obj in changed.items()}, change.deleted
            )

    def _on_lost(self, info: CloseInfo) -> None:
        retry_at = None if info.retry_in_s is None else time.time() + info.retry_in_s
        cause = info.cause if info.uptime_s is None else f"{info.cause} after {info.uptime_s:.1f}s"
        self.state.record_close(cause, retry_at)
        if self._on_close is not None:
            self._on_close(info)

    def _on_link(self, status: str) -> None:
        if status == "reconnecting" and self._fresh_token is not None:
            self.client.connection.token = self._fresh_token()
        self.state.link = status


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as one of `events` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
