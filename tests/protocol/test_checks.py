"""`server.protocol.checks.resolve`, fed its inputs directly: one or more tests per rule of
the module's table, and that the lean path answers as the generic one.

The hub's answers for pairs of failures, route by route, are pinned in
`tests.protocol.test_check_order`; these tests pin the function's own rules, on
declarations made for the test, without a hub.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hivectl.core.permissions import Permissions, ProviderPatterns
from hivectl.core.tokens import Claims
from hivectl.core.wire import Request, WireError, parse_request, require_object
from server.model.records import ObjectRecord, RealmRecord
from server.model.session import Session
from server.model.subscription_index import RealmSubscription
from server.protocol.checks import ADMIN, NOT_ADMIN, Right, Route, Target, resolve
from server.protocol.hub import _HANDLERS
from tests.protocol.driver import PROPERTY

EVERYTHING: dict[str, dict[str, str]] | None = None
"""A token without ``per``: every right everywhere."""


def realms(*objects: str) -> dict[str, RealmRecord]:
    """Realm ``r`` holding `objects`."""
    realm = RealmRecord("r")
    for object_id in objects:
        realm.objects[object_id] = ObjectRecord(object_id)
    return {"r": realm}


def session(
    per: dict[str, dict[str, str]] | None = EVERYTHING, *, adm: bool = False, subs: str = ""
) -> Session:
    """A session holding `per` (and the admin grant), with subscriptions named in `subs`."""
    result = Session("t", None)
    permissions = Permissions.unrestricted() if per is None else Permissions.parse(per)
    result.permissions = permissions
    result.claims = Claims(
        None, None, None, None, None, permissions, ProviderPatterns.empty(), {}, adm=adm
    )
    for sub_id in subs:
        result.subscriptions[sub_id] = RealmSubscription(result, sub_id, None)
    return result


def request(**fields: Any) -> Request:
    return parse_request({"typ": "obj", "act": "rea", **fields})


def refused(
    route: Route,
    message: Request,
    who: Session | None = None,
    state: dict[str, RealmRecord] | None = None,
) -> tuple[int, str]:
    answer = resolve(route, message, who or session(), realms() if state is None else state)
    assert isinstance(answer, WireError), answer
    return answer.code, answer.text


def found(
    route: Route,
    message: Request,
    who: Session | None = None,
    state: dict[str, RealmRecord] | None = None,
) -> Target:
    answer = resolve(route, message, who or session(), realms() if state is None else state)
    assert isinstance(answer, Target), (answer.code, answer.text)
    return answer


OBJECT_READ = Route(realm="rea", object="id", right=Right("object", "R"), exists=True)


def parse_dat(message: Request) -> dict[str, Any]:
    return require_object(message.dat, "dat")


def parse_dat_or_refuse(message: Request) -> dict[str, Any]:
    """A body parser that refuses with 403 when ``dat.no`` is set, like ``rea`` ``pub``'s
    server-only event."""
    body = parse_dat(message)
    if body.get("no"):
        raise WireError(403, "not this one")
    return body


# -- step 1: the session's subscription is named -------------------------------------------


def test_a_subscription_route_needs_the_id_before_anything_else() -> None:
    route = Route(subscription=True, kinds={"obj": Route(realm="rea")})
    assert refused(route, request(rea="x", dat=5)) == (400, "id is required")


# -- step 2: dat.typ picks the declaration -------------------------------------------------

KINDS = Route(
    subscription=True,
    kinds={
        "obj": Route(realm="rea", right=Right("any", "R")),
        "sys": Route(),
    },
)


def test_the_kind_is_read_before_the_realm() -> None:
    assert refused(KINDS, request(id="s", rea="x", dat=5)) == (400, "dat must be an object")
    assert refused(KINDS, request(id="s", rea="x", dat={"typ": "nope"})) == (
        400,
        "dat.typ must be obj or sys",
    )
    assert refused(KINDS, request(id="s", rea="x", dat={"typ": ["obj"]})) == (
        400,
        "dat.typ must be obj or sys",
    )


def test_the_chosen_kind_declares_the_rest() -> None:
    nobody = session({})
    chosen = found(KINDS, request(id="s", rea="x", dat={"typ": "sys"}), nobody)
    assert chosen.kind == "sys"
    assert refused(KINDS, request(id="s", rea="x", dat={"typ": "obj"}), nobody) == (
        404,
        "unknown realm x",
    )


def test_without_dat_typ_the_first_kind_is_chosen() -> None:
    assert found(KINDS, request(id="s", rea="r")).kind == "obj"
    assert found(KINDS, request(id="s", rea="r", dat={})).kind == "obj"


# -- step 3: the realm is named and exists --------------------------------------------------


def test_a_realm_that_must_exist_is_required_then_looked_up() -> None:
    for field in ("rea", "id"):
        route = Route(realm=field)
        assert refused(route, request()) == (400, "realm id is required")
        assert refused(route, request(**{field: "x"})) == (404, "unknown realm x")
        assert found(route, request(**{field: "r"})).realm.id == "r"


def test_a_realm_that_is_only_named_is_required_by_its_field_name() -> None:
    route = Route(realm="id", lookup=False)
    assert refused(route, request()) == (400, "id is required")
    target = found(route, request(id="x"))
    assert target.id == "x"
    assert not hasattr(target, "realm")  # nothing looked up, nothing to hand over


def test_the_realm_comes_before_the_object_name_and_the_body() -> None:
    route = Route(realm="rea", object="id", body_before_permission=parse_dat)
    assert refused(route, request(rea="x", dat=5)) == (404, "unknown realm x")


# -- step 4: the object is named ------------------------------------------------------------


def test_a_required_object_id_comes_before_the_body_and_the_permission() -> None:
    route = Route(
        realm="rea", object="id", body_before_permission=parse_dat, right=Right("object", "R")
    )
    assert refused(route, request(rea="r", dat=5), session({})) == (400, "id is required")


def test_an_optional_object_id_absent_skips_the_object_checks() -> None:
    route = Route(realm="rea", object="id?", right=Right("object", "R"), exists=True)
    target = found(route, request(rea="r"), session({}))
    assert target.record is None
    assert refused(route, request(rea="r", id="o"), session({})) == (
        403,
        "permission denied: R on r/o",
    )


# -- step 5: the body is read before the permission ------------------------------------------


def test_a_body_read_early_answers_before_the_permission() -> None:
    route = Route(realm="rea", body_before_permission=parse_dat, right=Right("any", "R"))
    assert refused(route, request(rea="r", dat=5), session({})) == (400, "dat must be an object")
    assert found(route, request(rea="r", dat={"k": 1})).body == {"k": 1}


def test_a_body_read_early_may_refuse_with_403_before_the_right() -> None:
    route = Route(
        realm="id",
        object="dat.idp",
        body_before_permission=parse_dat_or_refuse,
        right=Right("object", "U"),
    )
    message = request(id="r", dat={"idp": "o", "no": True})
    assert refused(route, message, session({})) == (403, "not this one")


def test_an_object_named_in_the_body_is_the_one_the_right_is_on() -> None:
    route = Route(
        realm="id", object="dat.idp", body_before_permission=parse_dat, right=Right("object", "U")
    )
    writer = session({"r": {"mine": "U"}})
    assert refused(route, request(id="r", dat={"idp": "other"}), writer) == (
        403,
        "permission denied: U on r/other",
    )
    assert found(route, request(id="r", dat={"idp": "mine"}), writer).body == {"idp": "mine"}


# -- step 6: permission ----------------------------------------------------------------------


def test_a_realm_wide_right_needs_the_letter_on_every_id() -> None:
    route = Route(realm="id", right=Right("realm", "U"))
    assert refused(route, request(id="r"), session({"r": {"o*": "U"}})) == (
        403,
        "permission denied: U on r",
    )
    assert found(route, request(id="r"), session({"r": {"*": "U"}})).realm.id == "r"


def test_a_right_on_any_object_needs_the_letter_somewhere_in_the_realm() -> None:
    route = Route(realm="id", right=Right("any", "R"))
    assert found(route, request(id="r"), session({"r": {"o*": "R"}})).realm.id == "r"
    assert refused(route, request(id="r"), session({"r": {"o*": "U"}})) == (
        403,
        "permission denied: R on r",
    )


def test_a_right_on_the_object_names_the_object() -> None:
    route = Route(realm="rea", object="id", right=Right("object", "D"))
    assert refused(route, request(rea="r", id="o"), session({"r": {"p": "D"}})) == (
        403,
        "permission denied: D on r/o",
    )


def test_letters_may_depend_on_whether_the_object_exists() -> None:
    route = Route(
        realm="rea", object="id", right=Right("object", lambda exists: "U" if exists else "CU")
    )
    updater = session({"r": {"*": "U"}})
    assert found(route, request(rea="r", id="o"), updater, realms("o")).id == "o"
    assert refused(route, request(rea="r", id="o"), updater, realms()) == (
        403,
        "permission denied: C on r/o",
    )


def test_the_first_missing_letter_is_named() -> None:
    route = Route(realm="rea", object="id", right=Right("object", "CUD"))
    assert refused(route, request(rea="r", id="o"), session({"r": {"*": "CD"}})) == (
        403,
        "permission denied: U on r/o",
    )


def test_the_admin_right_is_the_tokens_grant() -> None:
    route = Route(right=ADMIN)
    assert refused(route, request(), session()) == (403, NOT_ADMIN)
    found(route, request(), session({}, adm=True))
    nobody = Session("t", None)  # not authenticated: no claims at all
    assert refused(route, request(), nobody) == (403, NOT_ADMIN)


# -- step 7: the object exists ----------------------------------------------------------------


def test_the_object_must_exist_after_the_permission() -> None:
    assert refused(OBJECT_READ, request(rea="r", id="o"), session({})) == (
        403,
        "permission denied: R on r/o",
    )
    assert refused(OBJECT_READ, request(rea="r", id="o")) == (404, "unknown object o")
    target = found(OBJECT_READ, request(rea="r", id="o"), state=realms("o"))
    assert target.record is not None and target.record.id == "o"


def test_the_sessions_subscription_must_exist() -> None:
    route = Route(subscription=True, exists=True)
    assert refused(route, request(id="s", rea="x")) == (404, "unknown subscription s")
    owner = session(subs="s")
    assert found(route, request(id="s", rea="x"), owner).subscription is owner.subscriptions["s"]


# -- step 8: conflict -------------------------------------------------------------------------


def test_a_new_realm_must_not_exist_yet_after_the_permission() -> None:
    route = Route(realm="id", lookup=False, right=Right("realm", "C"), conflict="new realm")
    assert refused(route, request(id="r"), session({"*": {"*": "R"}})) == (
        403,
        "permission denied: C on r",
    )
    assert refused(route, request(id="r")) == (409, "realm with id r already exists")
    assert found(route, request(id="x")).id == "x"


def test_a_new_subscription_id_must_be_new_after_the_permission() -> None:
    route = Route(
        subscription=True,
        kinds={"obj": Route(realm="rea", right=Right("any", "R"), conflict="new subscription")},
    )
    taken = session(subs="s")
    assert refused(route, request(id="s", rea="r"), taken) == (409, "subscription s already exists")
    assert refused(route, request(id="s", rea="r"), session({}, subs="s")) == (
        403,
        "permission denied: R on r",
    )


# -- what resolve is --------------------------------------------------------------------------


def test_resolve_changes_nothing() -> None:
    state = realms("o")
    who = session(subs="s")
    before = (dict(state), dict(state["r"].objects), dict(who.subscriptions), dict(who.pubsub))
    for route, _ in _HANDLERS.values():
        for message in (request(id="o", rea="r", dat={"typ": "obj"}), request(id="s")):
            resolve(route, message, who, state)
    after = (dict(state), dict(state["r"].objects), dict(who.subscriptions), dict(who.pubsub))
    assert after == before


@pytest.mark.parametrize(
    "route",
    [
        {"right": Right("realm", "R")},
        {"right": Right("realm", lambda exists: "C"), "realm": "id"},
        {"object": "id"},
        {"lean": True, "realm": "rea", "object": "id"},
        {"lean": True, "realm": "rea", "object": "id", "right": Right("object"), "exists": True},
    ],
    ids=["right without realm", "letters off the object", "no realm", "lean, no right", "lean+"],
)
def test_a_declaration_resolve_could_not_check_as_written_is_refused(
    route: dict[str, Any],
) -> None:
    with pytest.raises(ValueError):
        Route(**route)


# -- the lean path ------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=300)
@given(
    rea=st.sampled_from([None, "r", "x"]),
    object_id=st.sampled_from([None, "o", "new"]),
    per=st.sampled_from(
        [None, {}, {"r": {"*": "U"}}, {"r": {"*": "CU"}}, {"r": {"o": "U", "new": "C"}}]
    ),
    letters=st.sampled_from(["U", "CU", "exists"]),
)
def test_the_lean_path_answers_as_the_generic_one(
    rea: str | None, object_id: str | None, per: dict[str, dict[str, str]] | None, letters: str
) -> None:
    right = Right(
        "object", (lambda exists: "U" if exists else "CU") if letters == "exists" else letters
    )
    generic = Route(realm="rea", object="id", right=right)
    lean = Route(realm="rea", object="id", right=right, lean=True)
    fields = {key: value for key, value in (("rea", rea), ("id", object_id)) if value is not None}
    message = request(**fields)
    who, state = session(per), realms("o")
    answers = [resolve(route, message, who, state) for route in (generic, lean)]

    def seen(answer: Target | WireError) -> tuple[Any, ...]:
        if isinstance(answer, WireError):
            return (answer.code, answer.text)
        return (answer.realm, answer.id, answer.record)

    assert seen(answers[0]) == seen(answers[1])


def test_set_is_declared_lean() -> None:
    route, _ = _HANDLERS[("obj", "set")]
    assert route.lean
