"""What several kinds of request check, each failure as the `WireError` that answers it.

Handlers run these in the order the hub's rules give (`server.protocol.hub`): the realm exists,
then the permission, then the object; a failure raises before anything is committed, so
it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from hivectl.core.permissions import Permissions
from hivectl.core.wire import Request, WireError
from server.model.records import RealmRecord
from server.model.session import Session


def required_id(value: str | None, what: str) -> str:
    if value is None:
        raise WireError(400, f"{what} is required")
    return value


def known_realm(realms: Mapping[str, RealmRecord], realm_id: str | None) -> RealmRecord:
    if realm_id is None:
        raise WireError(400, "realm id is required")
    realm = realms.get(realm_id)
    if realm is None:
        raise WireError(404, f"unknown realm {realm_id}")
    return realm


def denied(letter: str, realm: str, object_id: str | None = None) -> WireError:
    where = realm if object_id is None else f"{realm}/{object_id}"
    return WireError(403, f"permission denied: {letter} on {where}")


def check_rights(session: Session, realm_id: str, object_id: str, letters: str) -> None:
    permissions: Permissions = session.permissions
    for letter in letters:
        if not permissions.allows(letter, realm_id, object_id):
            raise denied(letter, realm_id, object_id)


def known_object(
    realms: Mapping[str, RealmRecord], session: Session, request: Request, letter: str
) -> tuple[RealmRecord, str]:
    """The realm and id of the existing object `request` names, which `session` may act on
    with `letter` (the permission is checked before the object's existence: 403 before 404)."""
    realm = known_realm(realms, request.rea)
    object_id = required_id(request.id, "id")
    check_rights(session, realm.id, object_id, letter)
    if object_id not in realm.objects:
        raise WireError(404, f"unknown object {object_id}")
    return realm, object_id
