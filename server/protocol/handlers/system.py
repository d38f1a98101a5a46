"""System requests (protocol.md §6.5): heartbeat, server stats and presence queries.

A presence query for one object needs R on it and explains why it is online or not; a
count over an id pattern counts only the objects the session may read.
"""

from __future__ import annotations

from typing import Any

from hivectl.core.wire import (
    Message,
    Request,
    WireError,
    check_id,
    iso8601,
    require_object,
    success,
)
from server.model.session import Session
from server.protocol.checks import Target
from server.protocol.context import SystemContext


def heartbeat(
    hub: SystemContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    return success(request)


def stats(
    hub: SystemContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    return success(request, hub.stats(now))


def presence_query(
    hub: SystemContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    realm, record = target.realm, target.record
    if record is None:  # no object named (one named must exist): a count
        options = require_object(request.dat, "dat") if request.dat is not None else {}
        pattern = options.get("idp", "*")
        if not isinstance(pattern, str):
            raise WireError(400, "dat.idp must be a string")
        check_id(pattern, "dat.idp")
        permissions = session.permissions
        connected, disconnected = hub.engine.count(
            realm.id, pattern, lambda object_id: permissions.allows("R", realm.id, object_id)
        )
        return success(request, {"connected": connected, "disconnected": disconnected})
    explanation = hub.engine.explain(realm.id, record.id, now)
    if explanation is None:
        raise WireError(404, f"unknown object {record.id}")
    ledger = explanation.ledger
    last_seen = max(ledger.last_seen or 0.0, record.updated_at) or None
    result: dict[str, Any] = {
        "cst": explanation.status,
        "providers": [
            _drop_none({"sub": p.sub, "jti": p.jti, "node": p.node, "since": iso8601(p.since)})
            for p in explanation.providers
        ],
    }
    times = {
        "connectedSince": ledger.connected_since if explanation.status == "con" else None,
        "lastSeen": last_seen,
        "lastDisconnectedAt": ledger.last_disconnected_at,
        "graceUntil": explanation.grace_until,
    }
    result.update({key: iso8601(value) for key, value in times.items() if value is not None})
    if ledger.last_reason is not None:
        result["lastReason"] = ledger.last_reason
    return success(request, result)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
