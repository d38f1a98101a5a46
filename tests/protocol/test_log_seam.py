"""Handlers decide, the log applies: state changes only while a change is applied.

The hub's docstring: a handler validates a request against the state it sees and commits
a change; only `Hub.apply` changes state, in log order. What the hub hands to storage
shows when its state changes, so every storage write must happen while the log is
applying a change (`RecordingLog.applying`).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.model.changes import ObjectPut, RealmPut
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
        writes -= len(driver.storage.writes)
        for who, message in plan:
            if clients[who].closing is not None:  # kicked: it comes back
                clients[who] = driver.connect(device)
            clients[who].send(message)
            driver.run_timers()
        # Forgetting revocations whose tokens have all expired is the one exception: each
        # node does it by itself (`server.model.revocations`), it is not a change.
        assert [w for w in driver.storage.outside_log if w[0] != "delete_revocation"] == []
        writes += len(driver.storage.writes)

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
