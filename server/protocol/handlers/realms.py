"""Realm requests (protocol.md §6.1).

Realm actions need their letter over the whole realm (`Permissions.allows_realm`), except
``lis``, which lists the realms the session has any right in. A new realm gets a new
incarnation, which updates keep: objects name the realm life they were written to.
"""

from __future__ import annotations

import secrets

from hivectl.core.wire import Message, Request, merge_data, require_object, success
from server.model.changes import RealmPut, RealmRemoved
from server.model.session import Session
from server.protocol.checks import Target
from server.protocol.context import RealmsContext


def create_realm(
    hub: RealmsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    data = require_object(request.dat, "dat") if request.dat is not None else {}
    incarnation = secrets.token_hex(8)
    hub.commit(RealmPut(target.id, request.lab or "", merge_data({}, data), incarnation, now))
    return success(request)


def read_realm(
    hub: RealmsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    return success(request, target.realm.to_wire())


def list_realms(
    hub: RealmsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    permissions = session.permissions
    listed = {
        realm.id: {"id": realm.id, "lab": realm.lab}
        for realm in hub.realms.values()
        if permissions.has_any(realm.id)
    }
    return success(request, listed)


def update_realm(
    hub: RealmsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    realm = target.realm
    patch = require_object(request.dat, "dat") if request.dat is not None else None
    label = realm.lab if request.lab is None else request.lab
    data = realm.dat if patch is None else merge_data(realm.dat, patch)
    hub.commit(RealmPut(realm.id, label, data, realm.incarnation, now))
    return success(request)


def delete_realm(
    hub: RealmsContext, session: Session, request: Request, target: Target, now: float
) -> Message:
    hub.commit(RealmRemoved(target.realm.id, now))
    return success(request)
