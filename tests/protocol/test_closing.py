"""Who decides that a connection must go, and how the shell learns it.

The rule (`server.protocol.hub`): the hub decides when a connection must go (too many
rate-limited messages: 4029; a Bearer over ``max_connections_per_sub``: 1008) by setting
`Session.closing`; from then on it ignores that connection's frames, and the shell closes
it. A connection other than the one being handled (an operator's disconnect, a revoked
token: 4003) is also put in `Hub.condemned`, which the shell drains after each unit of work.
"""

from __future__ import annotations

from hivectl.core.wire import CLOSE_KICKED, CLOSE_POLICY, CLOSE_RATE_LIMITED
from tests.conftest import mint
from tests.protocol.driver import (
    Client,
    HubDriver,
    heartbeat,
    obj,
    presence_events,
    realm_create,
    watch_presence,
)


def assert_ignored(driver: HubDriver, client: Client) -> None:
    """A condemned connection's frames and Bearer frames get nothing and change nothing."""
    before = driver.snapshot()
    assert client.send(heartbeat("late"), realm_create("late", "late")) == []
    assert client.bearer(mint("someone-else")) == []
    assert driver.snapshot() == before


def test_a_client_that_keeps_going_over_the_rate_is_condemned_with_4029() -> None:
    driver = HubDriver(**{"limits.messages_per_second": 10, "limits.burst": 5})
    client = driver.connect()
    driver.advance(1.0)  # the budget the Bearer frame took is back
    answer = client.send(*(heartbeat(n) for n in range(20)))
    # 5 within the burst, then a 429 each until more than `burst` within a second: the
    # sixth rejection condemns the connection and the rest of the frame goes unanswered.
    assert [(m["cid"], m["res"]) for m in answer] == [(n, "suc") for n in range(5)] + [
        (n, "err") for n in range(5, 11)
    ]
    assert {m["erc"] for m in answer[5:]} == {429}
    assert client.closing == (CLOSE_RATE_LIMITED, "rate limited")
    assert client.session not in driver.hub.condemned  # the connection being handled
    assert_ignored(driver, client)


def test_429s_alone_do_not_condemn_a_client_that_slows_down() -> None:
    driver = HubDriver(**{"limits.messages_per_second": 10, "limits.burst": 5})
    client = driver.connect()
    driver.advance(1.0)
    answer = client.send(*(heartbeat(n) for n in range(8)))
    assert [m["res"] for m in answer] == ["suc"] * 5 + ["err"] * 3
    assert client.closing is None
    driver.advance(1.0)
    assert [m["res"] for m in client.send(heartbeat("later"))] == ["suc"]


def test_a_bearer_frame_over_the_rate_gets_a_429_and_counts_towards_4029() -> None:
    driver = HubDriver(**{"limits.messages_per_second": 1, "limits.burst": 1})
    client = driver.open()
    token = mint()
    assert [m["res"] for m in client.bearer(token)] == ["suc"]
    answers = [client.bearer(token) for _ in range(3)]
    assert [[(m["act"], m["erc"]) for m in answer] for answer in answers] == [
        [("aut", 429)],
        [("aut", 429)],
        [],  # condemned by the second rejection: ignored
    ]
    assert client.closing == (CLOSE_RATE_LIMITED, "rate limited")
    assert client.session not in driver.hub.condemned


def test_a_bearer_over_max_connections_per_sub_fails_and_condemns_with_1008() -> None:
    driver = HubDriver(**{"limits.max_connections_per_sub": 1})
    first = driver.connect(sub="alice")
    second = driver.open()
    assert second.bearer(mint("alice")) == [
        {
            "typ": "sys",
            "act": "aut",
            "res": "err",
            "err": "too many connections for sub alice (limit 1)",
            "erc": 401,
        }
    ]
    assert second.closing == (CLOSE_POLICY, "too many connections for this sub")
    assert not second.session.authenticated
    assert second.session not in driver.hub.condemned  # the connection being handled
    assert first.closing is None
    assert_ignored(driver, second)

    driver.close(second)
    driver.close(first)
    driver.connect(sub="alice")  # the place is free again


def test_a_refresh_to_a_full_sub_condemns_the_connection_but_keeps_its_claims() -> None:
    driver = HubDriver(**{"limits.max_connections_per_sub": 1})
    driver.connect(sub="alice")
    bob = driver.connect(sub="bob")
    (reply,) = bob.bearer(mint("alice"))
    assert reply["erc"] == 401
    assert bob.closing is not None and bob.closing[0] == CLOSE_POLICY
    assert bob.session.sub == "bob"


def test_an_operators_disconnect_condemns_the_other_connection_with_4003() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    watcher = driver.connect(sub="watcher")
    device = driver.connect(mint("device", dpv={"r": ["*"]}))
    bystander = driver.connect(sub="bystander")
    admin.send(realm_create("r"), obj("cre", "r", "o"))
    watcher.send(watch_presence("r"))
    watcher.take()

    (reply,) = admin.send(
        {"typ": "adm", "act": "dis", "dat": {"sub": "device", "reason": "stolen"}, "cid": 1}
    )

    assert reply["res"] == "suc"
    assert [entry["sub"] for entry in reply["dat"]["disconnected"]] == ["device"]
    assert device.closing == (CLOSE_KICKED, "kicked: stolen")
    assert list(driver.hub.condemned) == [device.session]
    assert driver.hub.take_condemned() == [device.session]  # what the shell drains
    assert driver.hub.take_condemned() == []
    assert bystander.closing is None and admin.closing is None
    # Its presence ends now, not when the socket is gone.
    assert presence_events(watcher.take()) == [("r", "o", "dis")]
    ledger = driver.hub.engine.ledger("r", "o")
    assert ledger is not None and ledger.last_reason == "kicked"
    assert_ignored(driver, device)


def test_condemned_sessions_leave_the_list_when_closed() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    device = driver.connect(sub="device")
    admin.send({"typ": "adm", "act": "dis", "dat": {"conn": device.session.conn_id}, "cid": 1})
    assert device.session in driver.hub.condemned
    driver.close(device)  # the socket went before the shell drained the list
    assert driver.hub.take_condemned() == []
