"""What the hub appends for storage (`Hub.writes`, `server.stores.writes`), read as values.

The hub holds no store: each change it applies appends the writes that make storage
follow, in the order they happen, and the shell drains them (`HubDriver.written` here).
A refused request changes nothing, so it writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from server.model.presence import LedgerEntry
from server.stores.writes import DeleteRealm, PutLedger, PutObject, PutRevocation, Write
from tests.conftest import mint
from tests.protocol.driver import Client, HubDriver, Message, obj, realm_create


def written(driver: HubDriver, action: Callable[[], object]) -> list[Write]:
    """The writes `action` made, drained as the shell drains them."""
    before = len(driver.written)
    action()
    driver.flush()
    return driver.written[before:]


def world() -> tuple[HubDriver, Client]:
    """Realm ``r`` made by an unrestricted connection, nothing in it."""
    driver = HubDriver()
    owner = driver.connect(sub="owner")
    assert [m["res"] for m in owner.send(realm_create("r", 1))] == ["suc"]
    return driver, owner


def test_creating_an_object_nobody_provides_writes_the_object() -> None:
    driver, owner = world()
    writes = written(driver, lambda: owner.send(obj("cre", "r", "o", 1)))
    assert writes == [PutObject("r", driver.hub.realms["r"].objects["o"])]


def test_creating_an_object_under_a_live_provider_writes_the_object_then_its_ledger() -> None:
    driver, owner = world()
    driver.connect(dpv={"r": ["o*"]})
    writes = written(driver, lambda: owner.send(obj("cre", "r", "o1", 1)))
    assert writes == [
        PutObject("r", driver.hub.realms["r"].objects["o1"]),
        PutLedger("r", "o1", LedgerEntry(driver.now, driver.now, None, None)),
    ]


def test_a_provider_closing_writes_one_ledger_per_transition() -> None:
    driver, owner = world()
    owner.send(obj("cre", "r", "a"), obj("cre", "r", "b"), obj("cre", "r", "c"))
    device = driver.connect(dpv={"r": ["a", "b"]})
    since = driver.now
    driver.advance(5)
    writes = written(driver, lambda: driver.close(device))
    transitions = driver.engine.transitions[-2:]
    assert [(t.realm, t.id, t.status) for t in transitions] == [
        ("r", "a", "dis"),
        ("r", "b", "dis"),
    ]
    assert writes == [
        PutLedger("r", object_id, LedgerEntry(since, driver.now, driver.now, "closed"))
        for object_id in ("a", "b")
    ]


def test_a_revocation_writes_the_revocation_then_the_ledgers_of_what_it_ends() -> None:
    driver, owner = world()
    owner.send(obj("cre", "r", "o"))
    admin = driver.connect(mint("admin", adm=True))
    driver.connect(mint("device", jti="j1", dpv={"r": ["o"]}))
    since = driver.now
    revoke: Message = {"typ": "adm", "act": "rev", "dat": {"jti": "j1"}, "cid": 1}
    writes = written(driver, lambda: admin.send(revoke))
    (revocation,) = driver.hub.revocations
    assert revocation.jti == "j1"
    assert writes == [
        PutRevocation(revocation),
        PutLedger("r", "o", LedgerEntry(since, driver.now, driver.now, "revoked")),
    ]


def test_deleting_a_realm_writes_its_deletion_alone() -> None:
    """Its objects and their ledgers go with it in storage: nothing is written for them,
    not even for an object whose presence ends with the realm."""
    driver, owner = world()
    owner.send(obj("cre", "r", "o"), obj("cre", "r", "p"))
    driver.connect(dpv={"r": ["*"]})
    writes = written(driver, lambda: owner.send({"typ": "rea", "act": "del", "id": "r"}))
    assert writes == [DeleteRealm("r")]


def test_a_refused_request_writes_nothing() -> None:
    driver, owner = world()
    owner.send(obj("cre", "r", "o"))
    reader = driver.connect(mint("reader", per={"*": {"*": "R"}}))
    refused = {
        403: (reader, obj("upd", "r", "o", 1, lab="x")),
        404: (owner, obj("upd", "r", "missing", 1, lab="x")),
        409: (owner, realm_create("r", 1)),
    }
    for code, (client, message) in refused.items():
        before = len(driver.written)
        replies = client.send(message)  # drained after, as the shell does
        assert [m.get("erc") for m in replies] == [code], replies
        assert driver.written[before:] == [], code
