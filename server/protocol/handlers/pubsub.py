"""Realm pub/sub requests (protocol.md §6.4); the routing itself is `server.model.pubsub_routes`.

Subscribing needs R on something in the realm (each push is filtered by R on the
published id); publishing needs U on the published id, taken literally, and goes through
the log so that every node's subscribers get it.
"""

from __future__ import annotations

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
from server.protocol.context import HubContext
from server.protocol.handlers.checks import denied, known_realm, required_id

"""Published by the server for every presence transition (protocol.md §8); clients may
subscribe to it but not publish it."""


def subscribe(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    realm = known_realm(hub.realms, request.id)
    event, pattern = _options(request, publishing=False)
    if not session.permissions.has_any(realm.id, "R"):
        raise denied("R", realm.id)
    limit = hub.settings.limits.max_pubsub_subscriptions
    if (realm.id, event, pattern) not in session.pubsub and len(session.pubsub) >= limit:
        raise WireError(429, f"too many pub/sub subscriptions (limit {limit})")
    hub.pubsub.subscribe(session, realm.id, event, pattern)
    return success(request)


def unsubscribe(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    realm_id = required_id(request.id, "id")
    event, pattern = _options(request, publishing=False)
    hub.pubsub.unsubscribe(session, realm_id, event, pattern)
    return success(request)


def publish(hub: HubContext, session: Session, request: Request, now: float) -> Message:
    realm = known_realm(hub.realms, request.id)
    event, object_id = _options(request, publishing=True)
    if event == PRESENCE_EVENT:
        raise WireError(403, f"{PRESENCE_EVENT} is published by the server only")
    if not session.permissions.allows("U", realm.id, object_id):
        raise denied("U", realm.id, object_id)
    hub.log.publish(realm.id, event, object_id, request.dat.get("dat"))
    return success(request)


def _options(request: Request, *, publishing: bool) -> tuple[str, str]:
    options = require_object(request.dat, "dat")
    event = options.get("eve")
    if not isinstance(event, str) or not event:
        raise WireError(400, "dat.eve must be a non-empty string")
    id_pattern = options.get("idp", None if publishing else "*")
    if not isinstance(id_pattern, str):
        raise WireError(400, "dat.idp must be a string")
    check_id(id_pattern, "dat.idp")
    return event, id_pattern
