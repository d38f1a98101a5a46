"""Object and realm subscription requests (protocol.md §6.3).

The index of who watches what is `server.model.subscription_index`.

``dat.typ`` picks the kind: ``obj`` (the default) watches objects, ``rea`` one realm's
data, ``sys`` the realm list. A subscription id is the session's own. An object
subscription created with ``exe`` or updated gets its held set as ``ful``, in a later
frame than the reply (`FULL_PUSH_DELAY`).
"""

from __future__ import annotations

from hivectl.core.wire import Message, Request, WireError, require_object, success
from server.model.session import Session
from server.model.subscription_index import ObjectSubscription, Subscription, parse_options
from server.protocol.context import HubContext
from server.protocol.handlers.checks import denied, known_realm, required_id

FULL_PUSH_DELAY = 0.005
"""Seconds between a subscription's reply and its ``ful`` push: clients attach their
listener only once the reply is processed, so the push must come in a later frame."""


def create_subscription(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    sub_id = required_id(request.id, "id")
    options = require_object(request.dat, "dat") if request.dat is not None else {}
    kind = options.get("typ", "obj")
    if kind not in ("obj", "rea", "sys"):
        raise WireError(400, "dat.typ must be obj, rea or sys")
    if kind == "sys":
        _check_new(hub, session, sub_id)
        hub.subscriptions.watch_realms(session, sub_id)
        return success(request)
    realm = known_realm(hub.realms, request.rea)
    if kind == "rea":
        if not session.permissions.allows_realm("R", realm.id):
            raise denied("R", realm.id)
        _check_new(hub, session, sub_id)
        hub.subscriptions.watch_realm(session, sub_id, realm.id)
        return success(request)
    try:
        parsed = parse_options(options)
    except ValueError as exc:
        raise WireError(400, str(exc)) from None
    if not session.permissions.has_any(realm.id, "R"):
        raise denied("R", realm.id)
    _check_new(hub, session, sub_id)
    subscription = hub.subscriptions.subscribe(session, sub_id, realm, parsed)
    if parsed.execute:
        _push_full_later(hub, subscription)
    return success(request)


def update_subscription(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    subscription = _own(session, request)
    patch = require_object(request.dat, "dat") if request.dat is not None else {}
    if isinstance(subscription, ObjectSubscription):
        try:
            options = parse_options(patch, subscription.options)
        except ValueError as exc:
            raise WireError(400, str(exc)) from None
        hub.subscriptions.update(subscription, options)
        _push_full_later(hub, subscription)
    return success(request)


def delete_subscription(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    hub.subscriptions.unsubscribe(_own(session, request))
    return success(request)


def _check_new(hub: HubContext, session: Session, sub_id: str) -> None:
    if sub_id in session.subscriptions:
        raise WireError(409, f"subscription {sub_id} already exists")
    limit = hub.settings.limits.max_subscriptions
    if len(session.subscriptions) >= limit:
        raise WireError(429, f"too many subscriptions (limit {limit})")


def _own(session: Session, request: Request) -> Subscription:
    sub_id = required_id(request.id, "id")
    subscription: Subscription | None = session.subscriptions.get(sub_id)
    if subscription is None:
        raise WireError(404, f"unknown subscription {sub_id}")
    return subscription


def _push_full_later(hub: HubContext, subscription: ObjectSubscription) -> None:
    """Stream the held set, from a ``ful`` push on, in frames after the reply (see
    `FULL_PUSH_DELAY`)."""

    def push() -> None:
        session = subscription.session
        if session.outbox:  # the reply still waits for durability: stay behind it
            hub.schedule(FULL_PUSH_DELAY, push)
            return
        hub.stream(session, hub.subscriptions.full(subscription))

    hub.schedule(FULL_PUSH_DELAY, push)
