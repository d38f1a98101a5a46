"""Object and realm subscription requests (protocol.md §6.3).

The index of who watches what is `server.model.subscription_index`.

``dat.typ`` picks the kind: ``obj`` (the default) watches objects, ``rea`` one realm's
data, ``sys`` the realm list. A subscription id is the session's own. An object
subscription created with ``exe`` or updated gets its held set as ``ful``, in a later
frame than the reply (`FULL_PUSH_DELAY`).
"""

from __future__ import annotations

from typing import Any

from hivectl.core.wire import Message, Request, WireError, require_object, success
from server.model.session import Session
from server.model.subscription_index import ObjectOptions, ObjectSubscription, parse_options
from server.protocol.checks import Target
from server.protocol.context import SubscriptionsContext

FULL_PUSH_DELAY = 0.005
"""Seconds between a subscription's reply and its ``ful`` push: clients attach their
listener only once the reply is processed, so the push must come in a later frame. The hub
keeps the time (`Hub.send_full`) and the shell asks it when (`Hub.next_deadline`); a push
whose reply still waits for durability waits behind it."""


def object_options(request: Request) -> ObjectOptions:
    """``dat`` of an object subscription, read before its right is checked
    (`server.protocol.checks`)."""
    return _parsed(require_object(request.dat, "dat") if request.dat is not None else {})


def create_subscription(
    hub: SubscriptionsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    limit = hub.settings.limits.max_subscriptions
    if len(session.subscriptions) >= limit:
        raise WireError(429, f"too many subscriptions (limit {limit})")
    if target.kind == "sys":
        hub.subscriptions.watch_realms(session, target.id)
    elif target.kind == "rea":
        hub.subscriptions.watch_realm(session, target.id, target.realm.id)
    else:
        options: ObjectOptions = target.body
        subscription = hub.subscriptions.subscribe(session, target.id, target.realm, options)
        if options.execute:
            hub.send_full(subscription, now + FULL_PUSH_DELAY)
    return success(request)


def update_subscription(
    hub: SubscriptionsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    subscription = target.subscription
    patch = require_object(request.dat, "dat") if request.dat is not None else {}
    if isinstance(subscription, ObjectSubscription):
        options = _parsed(patch, subscription.options)
        hub.subscriptions.update(subscription, options)
        hub.send_full(subscription, now + FULL_PUSH_DELAY)
    return success(request)


def delete_subscription(
    hub: SubscriptionsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    hub.subscriptions.unsubscribe(target.subscription)
    return success(request)


def _parsed(patch: dict[str, Any], current: ObjectOptions | None = None) -> ObjectOptions:
    try:
        return parse_options(patch, current)
    except ValueError as exc:
        raise WireError(400, str(exc)) from None
