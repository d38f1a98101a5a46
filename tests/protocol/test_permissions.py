"""Permissions on the hub (protocol.md §7): every action allowed and denied per letter.

The world: realms ``r1`` and ``r2``, each with objects ``a/1``, ``a/2`` and ``b/1``, made by an
unrestricted admin. A denial must be ``res:"err"``, ``erc`` 403, ``permission denied: ...``,
must change nothing, and the connection must keep working.

Moved from `tests.server.test_ws_permissions`, with the same messages and assertions; one
allowed and one denied action through a real server stay there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import mint
from tests.protocol.driver import (
    Client,
    HubDriver,
    presence_events,
    pubsub_pushes,
    watch_event,
    watch_presence,
)

REALMS = ("r1", "r2")
OBJECTS = ("a/1", "a/2", "b/1")


@pytest.fixture
def driver() -> HubDriver:
    return HubDriver()


@pytest.fixture
def admin(driver: HubDriver) -> Client:
    client = driver.connect(mint("admin"))
    for realm in REALMS:
        client.ok({"typ": "rea", "act": "cre", "id": realm, "dat": {"v": 0}})
        for object_id in OBJECTS:
            client.ok({"typ": "obj", "act": "cre", "rea": realm, "id": object_id, "dat": {"v": 0}})
    return client


def _read(admin: Client, realm: str, object_id: str) -> dict[str, Any] | None:
    reply = admin.request({"typ": "obj", "act": "rea", "rea": realm, "id": object_id})
    return reply.get("dat") if reply["res"] == "suc" else None


def _realm(admin: Client, realm: str) -> dict[str, Any] | None:
    reply = admin.request({"typ": "rea", "act": "rea", "id": realm})
    return reply.get("dat") if reply["res"] == "suc" else None


@dataclass(frozen=True)
class Case:
    """One action: the letters it needs, where the grant goes, and how to see its effect."""

    name: str
    letters: str
    realm: str
    grant_id: str  # the id pattern the token's letters are granted on
    message: dict[str, Any]
    effect: Callable[[Client], Any]  # admin -> a value that the action changes
    denied_on: str  # what the 403 text names: "<realm>" or "<realm>/<id>"


def _obj(act: str, object_id: str, **fields: Any) -> dict[str, Any]:
    return {"typ": "obj", "act": act, "rea": "r1", "id": object_id, **fields}


CASES = [
    Case("obj cre", "C", "r1", "new/1", _obj("cre", "new/1"), lambda a: _read(a, "r1", "new/1"),
         "r1/new/1"),
    Case("obj cre existing", "CU", "r1", "a/1", _obj("cre", "a/1", dat={"v": 1}),
         lambda a: _read(a, "r1", "a/1"), "r1/a/1"),
    Case("obj upd", "U", "r1", "a/1", _obj("upd", "a/1", dat={"v": 1}),
         lambda a: _read(a, "r1", "a/1"), "r1/a/1"),
    Case("obj set existing", "U", "r1", "a/1", _obj("set", "a/1", dat={"v": 1}),
         lambda a: _read(a, "r1", "a/1"), "r1/a/1"),
    Case("obj set new", "CU", "r1", "new/1", _obj("set", "new/1"),
         lambda a: _read(a, "r1", "new/1"), "r1/new/1"),
    Case("obj rea", "R", "r1", "a/1", _obj("rea", "a/1"), lambda a: _read(a, "r1", "a/1"),
         "r1/a/1"),
    Case("obj del", "D", "r1", "a/1", _obj("del", "a/1"), lambda a: _read(a, "r1", "a/1"),
         "r1/a/1"),
    Case("rea cre", "C", "r3", "*", {"typ": "rea", "act": "cre", "id": "r3"},
         lambda a: _realm(a, "r3"), "r3"),
    Case("rea rea", "R", "r1", "*", {"typ": "rea", "act": "rea", "id": "r1"},
         lambda a: _realm(a, "r1"), "r1"),
    Case("rea upd", "U", "r1", "*", {"typ": "rea", "act": "upd", "id": "r1", "dat": {"v": 1}},
         lambda a: _realm(a, "r1"), "r1"),
    Case("rea del", "D", "r1", "*", {"typ": "rea", "act": "del", "id": "r1"},
         lambda a: _realm(a, "r1"), "r1"),
    Case("pub", "U", "r1", "a/1",
         {"typ": "rea", "act": "pub", "id": "r1", "dat": {"eve": "ping", "idp": "a/1"}},
         lambda a: None, "r1/a/1"),
    Case("sub", "R", "r1", "a/1", {"typ": "rea", "act": "sub", "id": "r1", "dat": {"eve": "e"}},
         lambda a: None, "r1"),
]  # fmt: skip


def _attempt(client: Client, message: dict[str, Any]) -> dict[str, Any] | None:
    """Send the action; the reply, or for a ``set`` the error it caused (None if none)."""
    if message["act"] != "set":
        return client.request(message)
    errors = [m for m in client.send(message) if m.get("res") == "err"]
    assert len(errors) <= 1
    return errors[0] if errors else None


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_action_allowed_with_exactly_its_letters(
    driver: HubDriver, admin: Client, case: Case
) -> None:
    before = case.effect(admin)
    client = driver.connect(mint("u", per={case.realm: {case.grant_id: case.letters}}))
    reply = _attempt(client, case.message)
    if case.message["act"] == "set":
        assert reply is None
    else:
        assert reply is not None
        assert reply["res"] == "suc", reply
    after = case.effect(admin)
    if case.name not in ("obj rea", "rea rea", "pub", "sub"):
        assert after != before  # the action took effect


DENIALS = [(case, letter) for case in CASES for letter in case.letters]


@pytest.mark.parametrize(
    ("case", "missing"), DENIALS, ids=[f"{c.name}-without-{m}" for c, m in DENIALS]
)
def test_action_denied_without_one_of_its_letters(
    driver: HubDriver, admin: Client, case: Case, missing: str
) -> None:
    before = case.effect(admin)
    others = "".join(letter for letter in "CRUD" if letter != missing)
    client = driver.connect(mint("u", per={case.realm: {case.grant_id: others}}))
    reply = _attempt(client, case.message)
    assert reply is not None
    assert reply["res"] == "err"
    assert reply["erc"] == 403
    assert reply["err"] == f"permission denied: {missing} on {case.denied_on}"
    if case.message["act"] == "set":
        assert "cid" not in reply
        assert (reply["typ"], reply["act"]) == ("obj", "set")
    assert case.effect(admin) == before  # nothing changed
    client.ok({"typ": "sys", "act": "hbt"})  # the connection keeps working


def test_realm_key_exact_and_wildcard(driver: HubDriver, admin: Client) -> None:
    everywhere = driver.connect(mint("u", per={"*": {"a/*": "R"}}))
    only_r1 = driver.connect(mint("u", per={"r1": {"a/1": "R"}}))
    for realm in REALMS:
        assert everywhere.ok(_read_msg(realm, "a/2"))["id"] == "a/2"
        denied = everywhere.request(_read_msg(realm, "b/1"))
        assert (denied["erc"], denied["err"]) == (403, f"permission denied: R on {realm}/b/1")
    assert only_r1.ok(_read_msg("r1", "a/1"))["id"] == "a/1"
    for realm, object_id in (("r1", "a/2"), ("r2", "a/1")):
        denied = only_r1.request(_read_msg(realm, object_id))
        assert denied["erc"] == 403
        assert denied["err"] == f"permission denied: R on {realm}/{object_id}"


def _read_msg(realm: str, object_id: str) -> dict[str, Any]:
    return {"typ": "obj", "act": "rea", "rea": realm, "id": object_id}


def test_realm_actions_need_rights_over_the_whole_realm(driver: HubDriver, admin: Client) -> None:
    client = driver.connect(mint("u", per={"r1": {"a/*": "CRUD"}}))
    for act, letter in (("rea", "R"), ("upd", "U"), ("del", "D")):
        reply = client.request({"typ": "rea", "act": act, "id": "r1"})
        assert (reply["erc"], reply["err"]) == (403, f"permission denied: {letter} on r1")
    reply = client.request({"typ": "rea", "act": "cre", "id": "r1x"})
    assert (reply["erc"], reply["err"]) == (403, "permission denied: C on r1x")
    # but object actions under a/* work
    client.ok({"typ": "obj", "act": "upd", "rea": "r1", "id": "a/2", "lab": "x"})
    # realm lis shows the realms where the token holds any letter
    assert client.ok({"typ": "rea", "act": "lis"}) == {"r1": {"id": "r1", "lab": ""}}
    wildcard = driver.connect(mint("u", per={"*": {"*": "R"}}))
    assert wildcard.ok({"typ": "rea", "act": "rea", "id": "r2"})["id"] == "r2"
    assert set(wildcard.ok({"typ": "rea", "act": "lis"})) == {"r1", "r2"}
    empty = driver.connect(mint("u", per={"r1": {"*": ""}}))
    assert empty.ok({"typ": "rea", "act": "lis"}) == {}


def test_unknown_realm_is_404_before_permissions(driver: HubDriver, admin: Client) -> None:
    client = driver.connect(mint("u", per={"r1": {"*": "R"}}))
    reply = client.request(_read_msg("nowhere", "a/1"))
    assert (reply["erc"], reply["err"]) == (404, "unknown realm nowhere")


def test_reader_without_r_sees_neither_events_nor_list_entries(
    driver: HubDriver, admin: Client
) -> None:
    reader = driver.connect(mint("reader", per={"r1": {"a/*": "R"}}))
    reader.ok(watch_presence("r1", "*"))
    admin.ok(watch_presence("r1"))
    provider = driver.connect(mint("gw", dpv={"r1": ["a/1", "b/1"], "r2": ["a/1"]}))
    # the admin sees both
    assert [cst for _, _, cst in presence_events(admin.take())] == ["con", "con"]
    assert presence_events(reader.received) == [("r1", "a/1", "con")]

    listed = reader.ok({"typ": "obj", "act": "lis", "rea": "r1"})
    assert listed == {
        "a/1": {"id": "a/1", "lab": "", "cst": "con"},
        "a/2": {"id": "a/2", "lab": "", "cst": "dis"},
    }
    count = reader.ok({"typ": "sys", "act": "pre", "rea": "r1", "dat": {"idp": "*"}})
    assert count == {"connected": 1, "disconnected": 1}
    denied = reader.request({"typ": "sys", "act": "pre", "rea": "r1", "id": "b/1"})
    assert (denied["erc"], denied["err"]) == (403, "permission denied: R on r1/b/1")

    driver.close(provider)
    assert [cst for _, _, cst in presence_events(admin.take())] == ["dis", "dis"]
    assert presence_events(reader.received) == [("r1", "a/1", "con"), ("r1", "a/1", "dis")]


def test_pubsub_pushes_are_filtered_by_read_rights(driver: HubDriver, admin: Client) -> None:
    reader = driver.connect(mint("reader", per={"r1": {"a/1": "R"}}))
    reader.ok(watch_event("r1", "news"))
    for object_id in ("b/1", "a/1"):
        admin.ok({"typ": "rea", "act": "pub", "id": "r1", "dat": {"eve": "news", "idp": object_id}})
    assert [m["dat"]["idp"] for m in pubsub_pushes(reader.received, "news")] == ["a/1"]
    no_read = driver.connect(mint("w", per={"r1": {"*": "CUD"}}))
    reply = no_read.request(watch_event("r1", "news"))
    assert (reply["erc"], reply["err"]) == (403, "permission denied: R on r1")


def test_required_permissions_make_a_token_without_per_powerless() -> None:
    driver = HubDriver(**{"auth.require_permissions": True})
    admin = driver.connect(mint("admin", per={"*": {"*": "CRUD"}}))
    admin.ok({"typ": "rea", "act": "cre", "id": "r"})
    admin.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "x"})

    bare = driver.connect(mint("bare"))  # authenticates...
    assert bare.ok({"typ": "rea", "act": "lis"}) == {}  # ...and may do nothing
    for message, text in (
        ({"typ": "rea", "act": "cre", "id": "s"}, "permission denied: C on s"),
        ({"typ": "rea", "act": "rea", "id": "r"}, "permission denied: R on r"),
        (_read_msg("r", "x"), "permission denied: R on r/x"),
        ({"typ": "obj", "act": "cre", "rea": "r", "id": "y"}, "permission denied: C on r/y"),
        (watch_presence("r"), "permission denied: R on r"),
    ):
        reply = bare.request(message)
        assert (reply["erc"], reply["err"]) == (403, text)
    assert bare.ok({"typ": "obj", "act": "lis", "rea": "r"}) == {}
