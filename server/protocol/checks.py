"""The checks a request passes before its handler acts, and the one order they run in.

Every route of the hub's dispatch table (`server.protocol.hub`) declares what it needs
checked as a `Route`, data rather than code, and `resolve` runs those checks for every
route in the order below. The first that fails is the answer; if none does, the handler
is given the `Target` the checks found (the realm, the object record, the parsed body, the
subscription) and only acts. Keeping the order in one function is what makes it the same
for every route, and a declaration is short enough to read against protocol.md. Nothing
is written before the handler runs, so a failed check changes nothing.

Before the route is known, the hub has checked what every message needs: rate limit
(429), envelope (400, `hivectl.core.wire.parse_request`), authenticated (401), and that
the action is one clients send (400: ``sys``/``aut`` as JSON). Then, for the route:

====  =======================  ==========================  ====================================
step  check                    declared by (`Route`)       failure
====  =======================  ==========================  ====================================
1     the session's            ``subscription``            400 ``id is required``
      subscription is named
2     ``dat.typ`` picks the    ``kinds``                   400 ``dat must be an object``,
      declaration                                          ``dat.typ must be obj, rea or sys``
3     the realm is named and   ``realm``, ``lookup``       400 ``realm id is required``
      exists                                               (``<field> is required`` without
                                                           lookup), 404 ``unknown realm <id>``
4     the object is named      ``object``                  400 ``id is required``
5     the body is read         ``body_before_permission``  400 (the route's text); 403
6     permission               ``right``                   403 ``permission denied: <letter>
                                                           on <realm>[/<id>]``; `NOT_ADMIN`
7     the object exists        ``exists``                  404 ``unknown object <id>``,
                                                           ``unknown subscription <id>``
8     conflict                 ``conflict``                409 ``realm with id <id> already
                                                           exists``, ``subscription <id>
                                                           already exists``
====  =======================  ==========================  ====================================

After step 8 the handler reads the rest of its body (400) and holds its quotas (429 too
many subscriptions) before it commits anything.

Steps 3, 6, 7 and 8 are the hub's documented order: realm, permission, object, conflict.
Step 4 sits between the realm and the permission because there is no right to check on
an object nobody named (object requests have always answered an unknown realm before a
missing id). Steps 1, 2 and 5 are the places where a route reads something earlier; each
is declared on the routes that need it, and keeps the answers those routes gave before
their checks were declared:

* A subscription id names one of the session's own subscriptions, not anything in a realm,
  so it is read before anything else (``sub`` ``cre``, ``upd``, ``del``); ``upd`` and
  ``del`` declare no realm, so they never look at ``rea`` (the hub's second refinement).
* ``sub`` ``cre``: ``dat.typ`` decides whether there is a realm to check at all (a
  realm-list subscription has none), so ``dat`` is read before the realm.
* `Route.body_before_permission`: ``rea`` ``pub`` checks U on the id its body names
  (``dat.idp``) and refuses the server's own presence event there (403, before U);
  ``rea`` ``sub``, and ``sub`` ``cre`` of objects, have always answered a malformed body
  (400) before a missing right (403).

A right is one of four scopes (`Scope`), mirroring `hivectl.core.permissions`: the
letter over the whole realm (``realm``), on anything in it (``any``), on the named object
(``object``; none named, nothing to check), or the token's admin grant (``admin``). Its
letters may depend on whether the named object exists (``obj`` ``cre`` on an existing id
updates it, so it needs U as well as C); they are checked in the order given and the first
missing one is named.

``obj`` ``set`` is the hot path (providers' location updates) and is declared `Route.lean`:
`resolve` takes it on a short path of its own through the same steps (3, 4, 6): walking
every step made the hub's work per ``set`` 3.5% larger than when the handler checked for
itself (instructions, under callgrind), the short path 1.6%. The tests hold the two paths
to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hivectl.core.wire import Request, WireError, require_object
from server.model.records import ObjectRecord, RealmRecord
from server.model.session import Session
from server.model.subscription_index import Subscription

NOT_ADMIN = "permission denied: admin operations need a token with the adm claim"

Scope = Literal["realm", "any", "object", "admin"]
Letters = str | Callable[[bool], str]
"""Letters to hold, or a pure function from whether the named object exists to them."""


@dataclass(frozen=True, slots=True)
class Right:
    """The permission a route needs: each of `letters`, at `scope` (see the module doc)."""

    scope: Scope
    letters: Letters = ""
    by_existence: tuple[str, str] = field(init=False, repr=False, compare=False)
    """The letters for an object that does not exist and for one that does: `letters` is
    pure, so it is asked once here rather than on every request."""

    def __post_init__(self) -> None:
        letters = self.letters
        both = (letters, letters) if isinstance(letters, str) else (letters(False), letters(True))
        object.__setattr__(self, "by_existence", both)


ADMIN = Right("admin")


@dataclass(frozen=True, slots=True)
class Route:
    """What one route needs checked, by step of the module doc's table."""

    subscription: bool = False
    """``id`` names one of the session's own subscriptions (step 1); with `exists` it must
    be one (step 7), with `conflict` ``"new subscription"`` it must not (step 8)."""
    kinds: Mapping[str, Route] | None = None
    """The declaration to go on with, by ``dat.typ`` (the first one when ``dat`` has no
    ``typ``); steps 3 to 8 are the chosen one's."""
    realm: Literal["rea", "id"] | None = None
    """The field that names the realm."""
    lookup: bool = True
    """Whether the realm must exist (404 otherwise): creating one or leaving its pub/sub
    only needs it named."""
    object: Literal["id", "id?", "dat.idp"] | None = None
    """Where the object is named: ``id`` (required), ``id?`` (optional: none named, no
    object to check) or ``dat.idp``, which `body_before_permission` validates."""
    body_before_permission: Callable[[Request], Any] | None = None
    """Parses ``dat`` at step 5 (a `WireError` refuses); its result is `Target.body`."""
    right: Right | None = None
    exists: bool = False
    """The named object (or subscription) must exist (step 7)."""
    conflict: Literal["new realm", "new subscription"] | None = None
    lean: bool = False
    """Take the short path (the hot path's: a provider's ``set``), which knows one shape
    only: a realm in ``rea`` that must exist, an object in ``id``, a right on it. Steps 3, 4
    and 6 in the same order, with the same answers, less generic work per message."""

    def __post_init__(self) -> None:
        """Refuse a declaration `resolve` could not check as written."""
        right = self.right
        if right is not None and right.scope != "admin" and self.realm is None:
            raise ValueError("a right in a realm needs the route to name the realm")
        if right is not None and callable(right.letters) and right.scope != "object":
            raise ValueError("letters that depend on the object are for a right on the object")
        if self.object is not None and self.realm is None:
            raise ValueError("an object is named in a realm")
        if self.lean and (
            (self.realm, self.lookup, self.object) != ("rea", True, "id")
            or right is None
            or right.scope != "object"
            or (self.subscription, self.kinds, self.body_before_permission) != (False, None, None)
            or (self.exists, self.conflict) != (False, None)
        ):
            raise ValueError("a lean route names a realm in rea, an object in id, a right on it")


class Target:
    """What the checks found, for the handler: it need not look again, nor check again.

    Only what the route declares is set (`resolve`); a handler that read anything else
    would fail loudly (AttributeError) rather than act on something nobody checked.
    """

    __slots__ = ("body", "id", "kind", "realm", "record", "subscription")

    id: str
    """The request's ``id`` (set when it has one; every route that reads it requires it)."""
    realm: RealmRecord
    """The realm named by `Route.realm`, which exists (`Route.lookup`)."""
    record: ObjectRecord | None
    """The record of the object named by `Route.object`; None when there is none (yet)."""
    body: Any
    """What `Route.body_before_permission` parsed."""
    subscription: Subscription
    """The session's subscription named by ``id`` (`Route.subscription` and `Route.exists`)."""
    kind: str
    """The `Route.kinds` key that ``dat.typ`` chose."""


def resolve(
    route: Route, request: Request, session: Session, realms: Mapping[str, RealmRecord]
) -> Target | WireError:
    """Run `route`'s checks on `request` in the order of the module doc.

    Reads the session's permissions, admin grant and subscriptions, and `realms`; changes
    nothing. The answer is the first failure, or what the handler acts on.
    """
    target = Target()
    realm: RealmRecord | None
    realm_id: str | None
    if route.lean:
        realm_id = request.rea
        if realm_id is None:
            return WireError(400, "realm id is required")
        realm = realms.get(realm_id)
        if realm is None:
            return WireError(404, f"unknown realm {realm_id}")
        object_id = request.id
        if object_id is None:
            return WireError(400, "id is required")
        record = realm.objects.get(object_id)
        right = route.right
        assert right is not None  # `Route.__post_init__`: a lean route has one
        allows = session.permissions.allows
        for letter in right.by_existence[record is not None]:
            if not allows(letter, realm_id, object_id):
                return _denied(letter, f"{realm_id}/{object_id}")
        target.realm, target.id, target.record = realm, object_id, record
        return target
    named = request.id
    if named is not None:
        target.id = named
    sub_id: str | None = None
    if route.subscription:
        if named is None:
            return WireError(400, "id is required")
        sub_id = named
    if route.kinds is not None:
        try:
            target.kind = kind = _kind(route.kinds, request)
        except WireError as exc:
            return exc
        route = route.kinds[kind]
    realm = realm_id = None
    realm_field = route.realm
    if realm_field is not None:
        realm_id = request.rea if realm_field == "rea" else named
        if route.lookup:
            if realm_id is None:
                return WireError(400, "realm id is required")
            realm = realms.get(realm_id)
            if realm is None:
                return WireError(404, f"unknown realm {realm_id}")
            target.realm = realm
        elif realm_id is None:
            return WireError(400, f"{realm_field} is required")
    where = route.object
    object_id = named if where == "id" or where == "id?" else None
    if object_id is None and where == "id":
        return WireError(400, "id is required")
    parse = route.body_before_permission
    if parse is not None:
        try:
            target.body = parse(request)
        except WireError as exc:
            return exc
        if where == "dat.idp":
            object_id = request.dat["idp"]
    record = None
    if where is not None:
        if object_id is not None and realm is not None:
            record = realm.objects.get(object_id)
        target.record = record
    right = route.right
    if right is not None:
        letters = right.by_existence[record is not None]
        if right.scope == "object":
            if object_id is not None and realm_id is not None:
                allows = session.permissions.allows
                for letter in letters:
                    if not allows(letter, realm_id, object_id):
                        return _denied(letter, f"{realm_id}/{object_id}")
        else:
            refusal = _refusal(right.scope, letters, session, realm_id)
            if refusal is not None:
                return refusal
    if route.exists:
        if sub_id is not None:
            subscription = session.subscriptions.get(sub_id)
            if subscription is None:
                return WireError(404, f"unknown subscription {sub_id}")
            target.subscription = subscription
        elif object_id is not None and record is None:
            return WireError(404, f"unknown object {object_id}")
    conflict = route.conflict
    if conflict == "new realm" and realm_id in realms:
        return WireError(409, f"realm with id {realm_id} already exists")
    if conflict == "new subscription" and sub_id in session.subscriptions:
        return WireError(409, f"subscription {sub_id} already exists")
    return target


def _kind(kinds: Mapping[str, Route], request: Request) -> str:
    options = require_object(request.dat, "dat") if request.dat is not None else {}
    names = list(kinds)
    kind = options.get("typ", names[0])
    if not isinstance(kind, str) or kind not in kinds:
        raise WireError(400, f"dat.typ must be {', '.join(names[:-1])} or {names[-1]}")
    return kind


def _refusal(
    scope: Scope, letters: str, session: Session, realm_id: str | None
) -> WireError | None:
    if scope == "admin":
        claims = session.claims
        return None if claims is not None and claims.adm else WireError(403, NOT_ADMIN)
    assert realm_id is not None, "a right in a realm needs the route to name the realm"
    permissions = session.permissions
    for letter in letters:
        held = (
            permissions.allows_realm(letter, realm_id)
            if scope == "realm"
            else permissions.has_any(realm_id, letter)
        )
        if not held:
            return _denied(letter, realm_id)
    return None


def _denied(letter: str, where: str) -> WireError:
    return WireError(403, f"permission denied: {letter} on {where}")
