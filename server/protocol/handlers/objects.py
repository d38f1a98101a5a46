"""Object requests (protocol.md §6.2).

``cre`` on an existing id succeeds and updates (clients rely on it), so it needs U as well
as C there; ``set`` is ``upd`` that may create, without a reply. ``cst`` is never written
by clients: reads and lists take it from the presence engine (`Hub.status`).
"""

from __future__ import annotations

from typing import Any

from hivectl.core.filters import all_match, parse_filters
from hivectl.core.geo import parse_shape
from hivectl.core.wire import (
    Message,
    Request,
    WireError,
    merge_data,
    normalize_location,
    require_object,
    success,
)
from server.model.changes import ObjectPut, ObjectRemoved
from server.model.records import ObjectRecord, compact_dat
from server.model.session import Session
from server.protocol.checks import Target
from server.protocol.context import ObjectsContext


def rights_to_create(exists: bool) -> str:
    """``cre`` on an existing id updates it, so it needs U there as well as C."""
    return "CU" if exists else "C"


def rights_to_set(exists: bool) -> str:
    """``set`` on a new id creates it, so it needs C there as well as U."""
    return "U" if exists else "CU"


def create_object(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    _write_object(hub, target, request, now)
    return success(request)


def update_object(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    _write_object(hub, target, request, now)
    return success(request)


def set_object(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> None:
    _write_object(hub, target, request, now)


def read_object(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    realm, record = target.realm, target.record
    assert record is not None, "the route requires the object to exist"
    return success(request, record.to_wire(hub.status(realm.id, record.id)))


def list_objects(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    realm = target.realm
    options = require_object(request.dat, "dat") if request.dat is not None else {}
    try:
        filters = parse_filters(options.get("atr", []))
        shape = parse_shape(options["sha"]) if options.get("sha") is not None else None
    except ValueError as exc:
        raise WireError(400, str(exc)) from None
    fields = options.get("fie")
    if fields is not None and (
        not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
    ):
        raise WireError(400, "fie must be a list of strings")
    permissions = session.permissions
    listed: dict[str, Any] = {}
    for record in realm.objects.values():
        if not permissions.allows("R", realm.id, record.id):
            continue
        status = hub.status(realm.id, record.id)
        if filters and not all_match(filters, record.id, record.lab, status, record.dat):
            continue
        if shape is not None and not shape.contains(record.loc.lon, record.loc.lat):
            continue
        entry: dict[str, Any] = {"id": record.id, "lab": record.lab, "cst": status}
        if fields is not None:
            dat = record.dat  # parsed once, not per field
            entry["dat"] = {key: dat[key] for key in fields if key in dat}
        listed[record.id] = entry
    return success(request, listed)


def delete_object(
    hub: ObjectsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    hub.commit(ObjectRemoved(target.realm.id, target.id, now))
    return success(request)


def _write_object(hub: ObjectsContext, target: Target, request: Request, now: float) -> None:
    """Create or update with the merge rules of ``upd``; validates before it commits."""
    realm, object_id = target.realm, target.id
    patch = require_object(request.dat, "dat") if request.dat is not None else None
    current = target.record or ObjectRecord(object_id)
    location = current.loc if request.loc is None else normalize_location(request.loc, now)
    hub.commit(
        ObjectPut(
            realm.id,
            object_id,
            current.lab if request.lab is None else request.lab,
            location,
            current.dat_json if patch is None else compact_dat(merge_data(current.dat, patch)),
            current.tds if request.tds is None else tuple(request.tds),
            realm.incarnation,
            now,
        )
    )
