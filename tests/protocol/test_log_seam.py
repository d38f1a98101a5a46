"""Handlers decide, the log applies: state changes only while a change is applied.

The hub's docstring: a handler validates a request against the state it sees and commits
a change; only `Hub.apply` changes state, in log order. The writes for storage the hub
appends show when its state changes, so every one must be appended while the log is
applying a change (`RecordingLog.outside` holds those that were not).

Appending gives a ticket (`server.protocol.log_seam`): settled at once on one node; held
until applied in a cluster, which `HeldLog` stands in for here (the JetStream log's side
of the seam, without NATS): a request waits with its own tickets only, and when the log
refuses its change the hub decides it again on the newer state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.model.changes import Change, ObjectPut, ProviderUp, RealmPut
from server.protocol.hub import Hub
from server.protocol.log_seam import APPLIED
from server.stores.writes import DeleteRevocation
from tests.conftest import mint
from tests.protocol.driver import PROPERTY, HubDriver, Message, obj, realm_create
from tests.protocol.test_check_order import messages

WRITES: list[Message] = [
    realm_create("r"),
    realm_create("q", lab="q"),
    {"typ": "rea", "act": "upd", "id": "r", "dat": {"k": 1}},
    {"typ": "rea", "act": "del", "id": "q"},
    {"typ": "rea", "act": "del", "id": "r"},
    obj("cre", "r", "o", dat={"k": 1}),
    obj("cre", "r", "p"),
    obj("set", "q", "o", loc={"lon": 1, "lat": 1}),
    obj("upd", "r", "o", lab="moved"),
    obj("del", "r", "o"),
    obj("del", "r", "p"),
    {"typ": "sub", "act": "cre", "id": "s", "rea": "r", "dat": {"exe": True}},
    {"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e", "idp": "o"}},
    {"typ": "adm", "act": "rev", "dat": {"jti": "gone", "exp": 0}},
    {"typ": "adm", "act": "rvl"},
    {"typ": "adm", "act": "dis", "dat": {"sub": "device"}},
]
"""Messages that mostly succeed, so that the property sees many writes."""


steps = st.tuples(st.sampled_from(range(3)), st.one_of(st.sampled_from(WRITES), messages))


def test_every_storage_write_happens_while_a_change_is_applied() -> None:
    writes = 0

    @settings(PROPERTY, max_examples=50)
    @given(st.lists(steps, min_size=5, max_size=20))
    def check(plan: list[tuple[int, Message]]) -> None:
        nonlocal writes
        driver = HubDriver()
        device = mint("device", dpv={"r": ["*"]})
        clients = [
            driver.connect(sub="keeper"),
            driver.connect(mint("admin", adm=True)),
            driver.connect(device),
        ]
        clients[0].send(realm_create("r"), obj("cre", "r", "o"))
        writes -= len(driver.written)
        for who, message in plan:
            if clients[who].closing is not None:  # kicked: it comes back
                clients[who] = driver.connect(device)
            clients[who].send(message)
            driver.run_timers()
        # Forgetting revocations whose tokens have all expired is the one exception: each
        # node does it by itself (`server.model.revocations`), it is not a change.
        assert [w for w in driver.log.outside if not isinstance(w, DeleteRevocation)] == []
        writes += len(driver.written)

    check()
    assert writes > 50  # the plans made writes of their own


def test_a_frame_commits_its_changes_in_array_order() -> None:
    driver = HubDriver()
    client = driver.connect()
    client.send(
        realm_create("r"),
        obj("cre", "r", "b"),
        obj("cre", "r", "a"),
        obj("set", "r", "b", dat={"k": 1}),
    )
    assert [
        (type(c).__name__, getattr(c, "id", None))
        for c in driver.log.changes
        if isinstance(c, RealmPut | ObjectPut)
    ] == [("RealmPut", None), ("ObjectPut", "b"), ("ObjectPut", "a"), ("ObjectPut", "b")]
    assert list(driver.hub.realms["r"].objects) == ["b", "a"]


@dataclass
class HeldTicket:
    change: Change
    settled: bool = False


class HeldLog:
    """A log whose changes wait until the test settles them, as a cluster log's do."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.held: list[HeldTicket] = []

    def append(self, change: Change) -> HeldTicket:
        ticket = HeldTicket(change)
        self.held.append(ticket)
        return ticket

    def publish(self, realm_id: str, event: str, object_id: str, payload: Any) -> None:
        self.hub.deliver_publish(realm_id, event, object_id, payload)

    def settle(self, ticket: HeldTicket) -> None:
        self.hub.apply(ticket.change)
        ticket.settled = True


def held(driver: HubDriver) -> HeldLog:
    log = HeldLog(driver.hub)
    driver.hub.log = log
    return log


def test_on_one_node_a_ticket_is_settled_as_the_change_is_appended() -> None:
    driver = HubDriver()
    client = driver.connect()
    assert client.send(realm_create("r", cid=1)) == [
        {"typ": "rea", "act": "cre", "cid": 1, "res": "suc"}
    ]
    assert driver.hub.take_pending() is None and driver.hub.tickets == []
    assert driver.log.append(RealmPut("q", "", {}, "q1", driver.now)) is APPLIED


def test_a_request_waits_with_its_own_tickets_and_the_rest_of_its_frame() -> None:
    driver = HubDriver()
    client = driver.connect()
    log = held(driver)
    rest = [{"typ": "sys", "act": "hbt", "cid": 2}]
    assert client.send(realm_create("r", cid=1), *rest) == []  # nothing leaves yet
    pending = driver.hub.take_pending()
    assert pending is not None
    assert (pending.item["cid"], pending.rest, pending.tickets) == (1, rest, log.held)
    assert pending.reply == {"typ": "rea", "act": "cre", "cid": 1, "res": "suc"}
    assert "r" not in driver.hub.realms  # decided, not applied
    log.settle(log.held[0])
    assert driver.hub.realms["r"].id == "r"


def test_changes_appended_by_other_work_are_not_a_request_s_to_wait_for() -> None:
    driver = HubDriver()
    client = driver.connect()
    device = driver.connect(mint("device", dpv={"r": ["*"]}))
    log = held(driver)
    driver.close(device)  # its provider goes down: a change nobody waits for
    client.send(realm_create("r", cid=1))
    pending = driver.hub.take_pending()
    assert pending is not None
    assert [type(t.change).__name__ for t in log.held] == ["ProviderDown", "RealmPut"]
    assert pending.tickets == log.held[1:]


def test_a_bearer_frame_s_provider_registration_is_a_ticket_the_shell_takes() -> None:
    driver = HubDriver()
    log = held(driver)
    client = driver.open()
    assert client.bearer(mint("device", dpv={"r": ["*"]}))[0]["res"] == "suc"
    (ticket,) = driver.hub.take_tickets()
    assert ticket is log.held[0] and isinstance(log.held[0].change, ProviderUp)
    assert driver.hub.take_tickets() == []


def test_on_a_conflict_the_hub_decides_the_request_again_on_the_newer_state() -> None:
    driver = HubDriver()
    client = driver.connect()
    log = held(driver)
    client.send(realm_create("r", cid=1), {"typ": "sys", "act": "hbt", "cid": 2})
    pending = driver.hub.take_pending()
    assert pending is not None
    driver.apply(RealmPut("r", "theirs", {}, "r1", driver.now))  # another node stored r first
    driver.hub.decide_again(pending, driver.now)
    driver.flush()
    assert client.take() == [
        {
            "typ": "rea",
            "act": "cre",
            "cid": 1,
            "res": "err",
            "err": "realm with id r already exists",
            "erc": 409,
        },
        {"typ": "sys", "act": "hbt", "cid": 2, "res": "suc"},
    ]
    assert driver.hub.realms["r"].lab == "theirs" and len(log.held) == 1
