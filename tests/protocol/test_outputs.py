"""What the hub puts out, read where the shell pulls it: frames and deadlines.

The hub never calls the shell back (`server.protocol.hub`): it keeps each connection's
output until the shell takes it (`Hub.outgoing`, `Hub.take_frames`), and says when it next
needs the time (`Hub.next_deadline`), which the shell answers with `Hub.tick`. These tests
step the hub by hand and read those outputs directly.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.model.presence import Tick
from server.protocol.handlers.subscriptions import FULL_PUSH_DELAY
from server.protocol.hub import TICK_RETRY
from tests.conftest import mint
from tests.protocol.driver import HubDriver, obj, realm_create, subscribe
from tests.protocol.test_log_seam import held


def decoded(frames: list[bytes]) -> list[Any]:
    return [message for frame in frames for message in orjson.loads(frame)]


def watching(driver: HubDriver) -> Any:
    """A client with objects ``a`` and ``b`` in realm ``r``, nothing taken yet."""
    client = driver.connect()
    client.send(realm_create("r"), obj("cre", "r", "a"), obj("cre", "r", "b"))
    return client


def test_nothing_leaves_the_hub_until_the_shell_takes_it() -> None:
    driver = HubDriver()
    client = driver.connect()
    hub = driver.hub
    hub.handle_frame(client.session, '[{"typ": "sys", "act": "hbt", "cid": 1}]', driver.now)
    assert client.take() == []
    assert list(hub.outbound.ready) == [client.session]
    assert decoded(hub.take_frames(client.session)) == [
        {"typ": "sys", "act": "hbt", "cid": 1, "res": "suc"}
    ]
    assert hub.take_frames(client.session) == [] and not hub.outbound.ready


def test_an_executed_subscription_s_full_state_waits_for_the_tick_at_its_deadline() -> None:
    driver = HubDriver()
    client = watching(driver)
    hub = driver.hub
    now = driver.now
    assert hub.next_deadline() is None
    reply = client.send(subscribe("s", "r", cid=1, exe=True))
    assert [m.get("res") for m in reply] == ["suc"]
    assert hub.next_deadline() == now + FULL_PUSH_DELAY
    hub.tick(now + FULL_PUSH_DELAY / 2)
    assert not hub.streaming and hub.next_deadline() == now + FULL_PUSH_DELAY
    hub.tick(now + FULL_PUSH_DELAY)
    assert hub.next_deadline() is None
    while hub.streaming:
        hub.pump(lambda session: True)
        driver.flush()
    pushes = client.take()
    assert pushes[0]["uty"] == "ful" and pushes[0]["id"] == "s"
    assert sorted(pushes[0]["obj"]["cre"]) == ["a", "b"]
    assert [m["uty"] for m in pushes[1:]] == ["dta"] * (len(pushes) - 1)


def test_a_full_state_due_while_its_reply_is_held_comes_after_the_reply() -> None:
    driver = HubDriver()
    client = watching(driver)
    hub = driver.hub
    now = driver.now
    hub.handle_frame(
        client.session, orjson.dumps([subscribe("s", "r", cid=1, exe=True)]).decode(), now
    )
    hub.outbound.hold(client.session)  # as the shell does while a write becomes durable
    due = now + FULL_PUSH_DELAY
    hub.tick(due)
    assert not hub.streaming
    assert hub.next_deadline() == due + FULL_PUSH_DELAY
    assert hub.outbound.release(client.session)
    driver.flush()
    assert [m.get("res") for m in client.take()] == ["suc"]
    hub.tick(due + FULL_PUSH_DELAY)
    while hub.streaming:
        hub.pump(lambda session: True)
        driver.flush()
    assert client.take()[0]["uty"] == "ful"


def test_a_connection_gone_before_its_full_state_is_due_gets_nothing() -> None:
    driver = HubDriver()
    client = watching(driver)
    client.send(subscribe("s", "r", cid=1, exe=True))
    driver.close(client)
    driver.hub.tick(driver.now + FULL_PUSH_DELAY)
    assert not driver.hub.streaming and not driver.hub.outbound.ready
    assert driver.hub.next_deadline() is None


def test_a_tick_goes_to_the_log_only_once_a_grace_period_is_over() -> None:
    driver = HubDriver(**{"presence.grace": 5.0})
    watching(driver)
    device = driver.connect(mint("device", dpv={"r": ["*"]}))
    driver.close(device)
    closed = driver.now
    assert driver.hub.next_deadline() == closed + 5.0
    driver.tick(closed + 4.0)
    assert not [c for c in driver.log.changes if isinstance(c, Tick)]
    driver.tick(closed + 5.0)
    assert [c for c in driver.log.changes if isinstance(c, Tick)] == [Tick(closed + 5.0)]
    assert driver.hub.next_deadline() is None


def test_a_tick_that_has_not_come_back_from_the_log_is_proposed_again_after_a_while() -> None:
    driver = HubDriver(**{"presence.grace": 5.0})
    watching(driver)
    device = driver.connect(mint("device", dpv={"r": ["*"]}))
    driver.close(device)
    log = held(driver)
    due = driver.now + 5.0
    driver.hub.tick(due)
    assert [type(t.change) for t in log.held] == [Tick]
    assert driver.hub.next_deadline() == due + TICK_RETRY
    driver.hub.tick(due + TICK_RETRY / 2)
    assert len(log.held) == 1
    driver.hub.tick(due + TICK_RETRY)
    assert [t.change for t in log.held] == [Tick(due), Tick(due + TICK_RETRY)]
    log.settle(log.held[0])
    assert driver.hub.engine.next_deadline() is None
    assert driver.hub.next_deadline() is None
