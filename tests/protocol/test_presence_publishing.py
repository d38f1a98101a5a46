"""Every presence transition is published and recorded.

The rule (`server.protocol.hub`): every presence transition the engine returns is
published as ``connectionStatusChanged`` in its realm and recorded in the ledger. The
driver's `RecordingEngine` gives the transitions, a watcher subscribed to the event gives
what was published, the hub's writes for storage (`HubDriver.written`) what was recorded.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from server.model.presence import LedgerEntry, NodeLost, ProviderUp, StatusChanged
from server.stores.writes import PutLedger
from tests.conftest import mint
from tests.protocol.driver import (
    PROPERTY,
    Client,
    HubDriver,
    obj,
    presence_events,
    realm_create,
    watch_presence,
)


class World:
    """Realms r1 and r2, a controller that writes, a watcher of every presence event."""

    def __init__(self, **overrides: Any) -> None:
        self.driver = HubDriver(**overrides)
        self.control = self.driver.connect(sub="control")
        self.watcher = self.driver.connect(sub="watcher")
        for realm in ("r1", "r2"):
            self.create_realm(realm)

    def create_realm(self, realm: str) -> None:
        assert [m["res"] for m in self.control.send(realm_create(realm, 1))] == ["suc"]
        assert [m["res"] for m in self.watcher.send(watch_presence(realm, cid=1))] == ["suc"]

    def step(self, action: Any) -> tuple[list[StatusChanged], list[tuple[str, str, str]]]:
        """Run `action`; the transitions it caused and the events the watcher received.

        Checks on the way that each transition was recorded: one ledger write each, in
        order, showing that transition.
        """
        engine, written = self.driver.engine, self.driver.written
        self.watcher.take()
        transitions, writes = len(engine.transitions), len(written)
        action()
        self.driver.flush()  # as the shell does after each unit of work
        caused = engine.transitions[transitions:]
        recorded = [w for w in written[writes:] if isinstance(w, PutLedger)]
        assert [(w.realm_id, w.object_id) for w in recorded] == [(t.realm, t.id) for t in caused]
        for write, transition in zip(recorded, caused, strict=True):
            assert shows(write.entry, transition), (write.entry, transition)
        return caused, presence_events(self.watcher.take())


def shows(entry: LedgerEntry, transition: StatusChanged) -> bool:
    if transition.status == "con":
        return entry.connected_since == transition.at
    return (entry.last_disconnected_at, entry.last_reason) == (transition.at, transition.reason)


def as_events(transitions: list[StatusChanged]) -> list[tuple[str, str, str]]:
    return [(t.realm, t.id, t.status) for t in transitions]


def test_a_provider_coming_and_going_publishes_and_records_each_transition() -> None:
    world = World()
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"), obj("cre", "r1", "b"), obj("cre", "r2", "a"))
    device: list[Client] = []

    caused, events = world.step(lambda: device.append(driver.connect(dpv={"r1": ["*"]})))
    assert events == as_events(caused) == [("r1", "a", "con"), ("r1", "b", "con")]

    driver.advance(5)
    caused, events = world.step(lambda: driver.close(device[0]))
    assert events == as_events(caused) == [("r1", "a", "dis"), ("r1", "b", "dis")]
    ledger = driver.hub.engine.ledger("r1", "a")
    assert ledger is not None
    assert (ledger.last_disconnected_at, ledger.last_reason) == (driver.now, "closed")


def test_creating_under_a_live_provider_publishes_con_and_deleting_publishes_nothing() -> None:
    world = World()
    world.driver.connect(dpv={"r1": ["a*"]})
    caused, events = world.step(lambda: world.control.send(obj("cre", "r1", "a1")))
    assert events == as_events(caused) == [("r1", "a1", "con")]
    caused, events = world.step(lambda: world.control.send(obj("cre", "r1", "b1")))
    assert events == as_events(caused) == []  # nobody covers it: nothing to publish
    caused, events = world.step(lambda: world.control.send(obj("del", "r1", "a1")))
    assert events == as_events(caused) == []


def test_only_transitions_publish_not_a_second_provider() -> None:
    world = World()
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"))
    first = driver.connect(dpv={"r1": ["a"]})
    second: list[Client] = []
    caused, events = world.step(lambda: second.append(driver.connect(dpv={"*": ["*"]})))
    assert events == caused == []
    caused, events = world.step(lambda: driver.close(first))
    assert events == caused == []
    caused, events = world.step(lambda: driver.close(second[0]))
    assert events == as_events(caused) == [("r1", "a", "dis")]


def test_a_refresh_publishes_only_the_difference() -> None:
    world = World()
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"), obj("cre", "r1", "b"), obj("cre", "r2", "c"))
    device = driver.connect(mint("device", dpv={"r1": ["a", "b"]}))
    caused, events = world.step(lambda: device.bearer(mint("device", dpv={"*": ["b", "c"]})))
    assert events == as_events(caused) == [("r1", "a", "dis"), ("r2", "c", "con")]
    assert caused[0].reason == "reauth"


def test_with_grace_the_dis_is_published_by_the_tick_that_ends_it() -> None:
    world = World(**{"presence.grace": 3.0})
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"), obj("cre", "r1", "b"))
    device = driver.connect(dpv={"r1": ["*"]})
    caused, events = world.step(lambda: driver.close(device))
    assert events == caused == []
    caused, events = world.step(lambda: driver.tick(driver.advance(2.9)))
    assert events == caused == []
    caused, events = world.step(lambda: driver.tick(driver.advance(0.1)))
    assert events == as_events(caused) == [("r1", "a", "dis"), ("r1", "b", "dis")]


def test_a_provider_back_within_grace_publishes_nothing_at_all() -> None:
    world = World(**{"presence.grace": 3.0})
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"))
    driver.close(driver.connect(dpv={"r1": ["a"]}))
    driver.advance(1)

    def back_then_tick() -> None:
        driver.connect(dpv={"r1": ["*"]})
        driver.tick(driver.advance(5))

    caused, events = world.step(back_then_tick)
    assert events == caused == []


def test_a_realm_created_later_is_covered_by_a_star_realm_pattern() -> None:
    world = World()
    world.driver.connect(dpv={"*": ["o"]})

    def new_realm_and_object() -> None:
        world.create_realm("r3")
        world.control.send(obj("cre", "r3", "o"))

    caused, events = world.step(new_realm_and_object)
    assert events == as_events(caused) == [("r3", "o", "con")]


def test_changes_applied_from_the_log_publish_too_a_lost_node() -> None:
    """In a cluster, other nodes' providers and their loss arrive as applied changes."""
    world = World()
    driver = world.driver
    world.control.send(obj("cre", "r1", "a"), obj("cre", "r2", "b"))
    remote = ProviderUp("m:1", "m", "gateway", None, (("*", "*"),), driver.now)
    caused, events = world.step(lambda: driver.apply(remote))
    assert events == as_events(caused) == [("r1", "a", "con"), ("r2", "b", "con")]
    caused, events = world.step(lambda: driver.apply(NodeLost("m", driver.advance(1))))
    assert events == as_events(caused) == [("r1", "a", "dis"), ("r2", "b", "dis")]
    assert {t.reason for t in caused} == {"node_lost"}


# -- the property -----------------------------------------------------------------------

DPVS: list[dict[str, list[str]] | None] = [
    {"r1": ["*"]},
    {"r1": ["a*"]},
    {"*": ["b"]},
    {"r2": ["a1", "b"]},
    None,
]
OBJECTS = [(realm, oid) for realm in ("r1", "r2") for oid in ("a1", "a2", "b")]

steps = st.one_of(
    st.tuples(st.just("come or go"), st.integers(0, 2), st.integers(0, len(DPVS) - 1)),
    st.tuples(st.just("refresh"), st.integers(0, 2), st.integers(0, len(DPVS) - 1)),
    st.tuples(st.just("create"), st.integers(0, len(OBJECTS) - 1), st.just(0)),
    st.tuples(st.just("delete"), st.integers(0, len(OBJECTS) - 1), st.just(0)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 2.5]), st.just(0)),
    st.tuples(st.just("recreate r2"), st.just(0), st.just(0)),
)


@PROPERTY
@given(st.sampled_from([0.0, 2.0]), st.lists(steps, min_size=5, max_size=25))
def test_every_transition_is_published_and_recorded(grace: float, plan: list[Any]) -> None:
    world = World(**{"presence.grace": grace})
    driver = world.driver
    world.control.send(*(obj("cre", realm, oid) for realm, oid in OBJECTS[::2]))
    providers: dict[int, Client] = {}

    def run(kind: str, a: Any, b: Any) -> None:
        if kind == "come or go" and a in providers:
            driver.close(providers.pop(a), reason=("closed", "timeout")[b % 2])
        elif kind == "come or go":
            providers[a] = driver.connect(mint(f"p{a}", dpv=DPVS[b]))
        elif kind == "refresh" and a in providers:
            assert [m["res"] for m in providers[a].bearer(mint(f"p{a}", dpv=DPVS[b]))] == ["suc"]
        elif kind == "create":
            world.control.send(obj("cre", *OBJECTS[a]))
        elif kind == "delete":
            world.control.send(obj("del", *OBJECTS[a]))
        elif kind == "tick":
            driver.tick(driver.advance(a))
        elif kind == "recreate r2":
            world.control.send({"typ": "rea", "act": "del", "id": "r2"})
            world.create_realm("r2")

    for kind, a, b in plan:
        caused, events = world.step(partial(run, kind, a, b))
        assert events == as_events(caused), (kind, a, b)
