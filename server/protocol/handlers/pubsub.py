"""Realm pub/sub requests (protocol.md §6.4); the routing itself is `server.model.pubsub_routes`.

Subscribing needs R on something in the realm (each push is filtered by R on the
published id); publishing needs U on the published id, taken literally, and goes through
the log so that every node's subscribers get it. Both read ``dat`` before their right is
checked (`server.protocol.checks`): publishing names there the id the right is on.
"""

from __future__ import annotations

from typing import NamedTuple

from hivectl.core.wire import (
    PRESENCE_EVENT,
    Message,
    Request,
    WireError,
    check_id,
    require_object,
    success,
)
from server.model.session import Session
from server.protocol.checks import Target
from server.protocol.context import PubSubContext


class Channel(NamedTuple):
    """``dat``'s event and id: a pattern to subscribe with, or the id published on."""

    event: str
    idp: str


def subscribe(
    hub: PubSubContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    realm_id = target.realm.id
    event, pattern = target.body
    limit = hub.settings.limits.max_pubsub_subscriptions
    if (realm_id, event, pattern) not in session.pubsub and len(session.pubsub) >= limit:
        raise WireError(429, f"too many pub/sub subscriptions (limit {limit})")
    hub.pubsub.subscribe(session, realm_id, event, pattern)
    return success(request)


def unsubscribe(
    hub: PubSubContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    event, pattern = subscription_channel(request)
    hub.pubsub.unsubscribe(session, target.id, event, pattern)
    return success(request)


def publish(
    hub: PubSubContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    event, object_id = target.body
    hub.log.publish(target.realm.id, event, object_id, request.dat.get("dat"))
    return success(request)


def subscription_channel(request: Request) -> Channel:
    """``dat`` of ``sub`` and ``uns``: an event and an id pattern (every id by default)."""
    return _channel(request, publishing=False)


def publication_channel(request: Request) -> Channel:
    """``dat`` of ``pub``: an event clients may publish, and one id."""
    channel = _channel(request, publishing=True)
    if channel.event == PRESENCE_EVENT:
        raise WireError(403, f"{PRESENCE_EVENT} is published by the server only")
    return channel


def _channel(request: Request, *, publishing: bool) -> Channel:
    options = require_object(request.dat, "dat")
    event = options.get("eve")
    if not isinstance(event, str) or not event:
        raise WireError(400, "dat.eve must be a non-empty string")
    id_pattern = options.get("idp", None if publishing else "*")
    if not isinstance(id_pattern, str):
        raise WireError(400, "dat.idp must be a string")
    check_id(id_pattern, "dat.idp")
    return Channel(event, id_pattern)
