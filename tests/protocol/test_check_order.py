"""The hub's order of checks, and that a failed message changes nothing.

The rule (`server.protocol.hub`): rate limit (429), envelope (400), authenticated (401),
realm exists (404 ``unknown realm <id>``), permission (403), object exists (404),
conflict (409). For every pair of failures that can both apply to one message, the
earlier check's error is the answer; and whatever failed, the hub's state is as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import mint
from tests.protocol.driver import PROPERTY, Client, HubDriver, Message, obj, realm_create, subscribe

RATE = "rate limited (limit 1000 messages per second)"
UNAUTHENTICATED = "not authenticated"

TOKENS = {
    "all": {},  # no per: may do everything
    "none": {"per": {"elsewhere": {"*": "CRUD"}}},  # no right in r, nor in unknown realms
    "reader": {"per": {"*": {"*": "R"}}},
    "creator": {"per": {"r": {"*": "C"}}},
}


@dataclass(frozen=True)
class Case:
    who: str
    """A key of `TOKENS`, or ``unauth`` for a connection that sent no Bearer frame."""
    message: Message
    code: int
    text: str
    spent: bool = False
    """The connection has used up its message budget (the rate limit applies)."""
    before: list[Message] = field(default_factory=list)
    """Messages the same connection sends first (each must succeed)."""


def world() -> tuple[HubDriver, Client]:
    """Realm ``r`` holding object ``o``, made by an unrestricted connection."""
    driver = HubDriver()
    owner = driver.connect(sub="owner")
    replies = owner.send(realm_create("r", "r"), obj("cre", "r", "o", "o"))
    assert [m["res"] for m in replies] == ["suc", "suc"], replies
    return driver, owner


def connection(driver: HubDriver, who: str) -> Client:
    if who == "unauth":
        return driver.open()
    return driver.connect(mint(who, **TOKENS[who]))


def spend(driver: HubDriver, client: Client) -> None:
    """Use up the connection's message budget at the driver's time."""
    limiter = client.session.limiter
    assert limiter is not None
    while limiter.allow(driver.now):
        pass


def msg(typ: str, act: str, **fields: Any) -> Message:
    return {"typ": typ, "act": act, "cid": "c", **fields}


SYS_LIST = {"typ": "sys"}
"""``dat`` of a realm-list subscription, which needs no right in any realm."""

# Each case names the two (or more) failures that apply; the earlier check's error wins.
CASES: dict[str, Case] = {
    # rate limit (429) before everything else
    "429 over 400 (unknown type)": Case("all", msg("nope", "rea"), 429, RATE, spent=True),
    "429 over 400 (bad field)": Case(
        "all", msg("obj", "rea", rea="r", id=5), 429, RATE, spent=True
    ),
    "429 over 401": Case("unauth", msg("sys", "hbt"), 429, RATE, spent=True),
    "429 over 404 realm": Case("all", msg("obj", "rea", rea="x", id="o"), 429, RATE, spent=True),
    "429 over 403": Case("none", msg("rea", "del", id="r"), 429, RATE, spent=True),
    "429 over 404 object": Case(
        "all", msg("obj", "upd", rea="r", id="missing"), 429, RATE, spent=True
    ),
    "429 over 409": Case("all", msg("rea", "cre", id="r"), 429, RATE, spent=True),
    # envelope (400) before authentication and everything after
    "400 over 401 (unknown action)": Case(
        "unauth", msg("obj", "fly"), 400, 'unknown action "fly" for type obj'
    ),
    "400 over 401 (id not a string)": Case(
        "unauth", msg("obj", "rea", rea="r", id=5), 400, "id must be a string"
    ),
    "400 over 401 (cid)": Case(
        "unauth",
        {"typ": "sys", "act": "hbt", "cid": True},
        400,
        "cid must be a string or an integer",
    ),
    "400 over 404 realm": Case(
        "all", msg("obj", "rea", rea="x", id="o", lab=5), 400, "lab must be a string"
    ),
    "400 over 403": Case(
        "none", msg("obj", "upd", rea="r", id="o", tds="t"), 400, "tds must be a list of strings"
    ),
    "400 over 404 object": Case(
        "all", msg("obj", "upd", rea="r", id="missing", loc=[]), 400, "loc must be an object"
    ),
    "400 over 409": Case("all", msg("rea", "cre", id="r", lab=5), 400, "lab must be a string"),
    # authenticated (401) before realm, permission, object, conflict
    "401 over 404 realm": Case("unauth", msg("obj", "rea", rea="x", id="o"), 401, UNAUTHENTICATED),
    "401 over 403": Case("unauth", msg("rea", "del", id="r"), 401, UNAUTHENTICATED),
    "401 over 404 object": Case(
        "unauth", msg("obj", "rea", rea="r", id="missing"), 401, UNAUTHENTICATED
    ),
    "401 over 409": Case("unauth", msg("rea", "cre", id="r"), 401, UNAUTHENTICATED),
    # realm exists (404) before permission, object and conflict
    **{
        f"404 realm over 403 ({m['typ']} {m['act']})": Case("none", m, 404, "unknown realm x")
        for m in (
            msg("obj", "cre", rea="x", id="o"),
            msg("obj", "upd", rea="x", id="o"),
            msg("obj", "rea", rea="x", id="o"),
            msg("obj", "del", rea="x", id="o"),
            msg("obj", "lis", rea="x"),
            msg("rea", "rea", id="x"),
            msg("rea", "upd", id="x", lab="l"),
            msg("rea", "del", id="x"),
            msg("rea", "sub", id="x", dat={"eve": "e"}),
            msg("rea", "pub", id="x", dat={"eve": "e", "idp": "o"}),
            msg("sub", "cre", id="s", rea="x", dat={"typ": "obj"}),
            msg("sub", "cre", id="s", rea="x", dat={"typ": "rea"}),
            msg("sys", "pre", rea="x", id="o"),
        )
    },
    "404 realm over 403 (set, no cid)": Case(
        "none",
        {"typ": "obj", "act": "set", "rea": "x", "id": "o"},
        404,
        "unknown realm x",
    ),
    "404 realm over 404 object": Case(
        "all", msg("obj", "upd", rea="x", id="missing"), 404, "unknown realm x"
    ),
    "404 realm over 409 (subscription id taken)": Case(
        "all",
        msg("sub", "cre", id="s", rea="x", dat={"typ": "obj"}),
        404,
        "unknown realm x",
        before=[subscribe("s", "r", "first")],
    ),
    # permission (403) before object and conflict
    "403 over 404 object (rea)": Case(
        "none", msg("obj", "rea", rea="r", id="missing"), 403, "permission denied: R on r/missing"
    ),
    "403 over 404 object (upd)": Case(
        "reader", msg("obj", "upd", rea="r", id="missing"), 403, "permission denied: U on r/missing"
    ),
    "403 over 404 object (del)": Case(
        "reader", msg("obj", "del", rea="r", id="missing"), 403, "permission denied: D on r/missing"
    ),
    "403 over 404 object (pre)": Case(
        "none", msg("sys", "pre", rea="r", id="missing"), 403, "permission denied: R on r/missing"
    ),
    "403 over 409 (realm exists)": Case(
        "reader", msg("rea", "cre", id="r"), 403, "permission denied: C on r"
    ),
    "403 over 409 (subscription id taken)": Case(
        "none",
        msg("sub", "cre", id="s", rea="r", dat={"typ": "obj"}),
        403,
        "permission denied: R on r",
        before=[{"typ": "sub", "act": "cre", "id": "s", "rea": "sys", "dat": SYS_LIST, "cid": 1}],
    ),
    # one failure alone, for the checks the pairs above do not reach
    "403: cre on an existing object needs U too": Case(
        "creator", msg("obj", "cre", rea="r", id="o"), 403, "permission denied: U on r/o"
    ),
    "409 alone": Case("all", msg("rea", "cre", id="r"), 409, "realm with id r already exists"),
    "409 alone (subscription id taken)": Case(
        "all",
        msg("sub", "cre", id="s", rea="r", dat={"typ": "obj"}),
        409,
        "subscription s already exists",
        before=[subscribe("s", "r", "first")],
    ),
}

# The hub docstring's two refinements of the order.
CASES |= {
    "401 before the server-only action's 400 (sys aut sent as JSON)": Case(
        "unauth", msg("sys", "aut"), 401, "not authenticated"
    ),
    "400 for the server-only action once authenticated": Case(
        "all", msg("sys", "aut"), 400, 'unknown action "aut" for type sys'
    ),
    "sub upd names the session's subscription, not a realm": Case(
        "all", msg("sub", "upd", id="nosub", rea="x", dat={}), 404, "unknown subscription nosub"
    ),
    "sub del names the session's subscription, not a realm": Case(
        "all", msg("sub", "del", id="nosub", rea="x"), 404, "unknown subscription nosub"
    ),
}


@pytest.mark.parametrize(
    "case",
    CASES.values(),
    ids=list(CASES),
)
def test_the_earlier_check_wins_and_the_failure_changes_nothing(case: Case) -> None:
    driver, _ = world()
    client = connection(driver, case.who)
    for message in case.before:
        assert [m["res"] for m in client.send(message)] == ["suc"]
    if case.spent:
        spend(driver, client)
    before = driver.snapshot()

    answer = client.send(case.message)

    assert len(answer) == 1, answer
    (reply,) = answer
    assert (reply["res"], reply["erc"]) == ("err", case.code), reply
    assert reply["err"] == case.text
    cid = case.message.get("cid")
    assert reply.get("cid") == (cid if isinstance(cid, str) else None)  # a bad cid is not echoed
    assert driver.snapshot() == before


# -- a failure changes nothing, for any message ---------------------------------------------

ids = st.sampled_from(["r", "o", "x", "s", "*", "", 5, None])
datas = st.one_of(
    st.none(),
    st.integers(-5, 5),
    st.fixed_dictionaries(
        {},
        optional={
            "typ": st.sampled_from(["obj", "rea", "sys", "bad"]),
            "eve": st.sampled_from(["e", "connectionStatusChanged", ""]),
            "idp": ids,
            "sty": st.sampled_from(["rea", "rec", "tar"]),
            "atr": st.sampled_from([["k=1"], ["bad filter"], 5]),
            "k": st.sampled_from([1, None, "v"]),
            "conn": st.just("n:2"),
            "sub": st.sampled_from(["owner", "none"]),
            "jti": st.just("j"),
        },
    ),
)
messages = st.fixed_dictionaries(
    {
        "typ": st.sampled_from(["rea", "obj", "sub", "sys", "adm", "zzz"]),
        "act": st.sampled_from(
            ["cre", "rea", "lis", "upd", "del", "set", "sub", "uns", "pub", "pre", "hbt", "dis"]
        ),
    },
    optional={
        "cid": st.sampled_from(["c", 7, 1.5]),
        "id": ids,
        "rea": ids,
        "dat": datas,
        "lab": st.sampled_from(["l", 3]),
        "loc": st.sampled_from([{"lon": 1, "lat": 2}, {"lon": "east"}, []]),
        "tds": st.sampled_from([["t"], "t"]),
    },
)


def test_any_message_that_fails_leaves_the_state_as_it_was() -> None:
    driver, owner = world()
    keeper = driver.connect(sub="keeper")
    clients = [
        owner,
        connection(driver, "none"),
        connection(driver, "reader"),
        connection(driver, "unauth"),
        driver.connect(mint("admin", adm=True)),
        driver.connect(mint("device", dpv={"r": ["*"]})),
    ]
    failures = 0

    @settings(PROPERTY, max_examples=150)
    @given(st.sampled_from(range(len(clients))), messages)
    def check(who: int, message: Message) -> None:
        nonlocal failures
        client = clients[who]
        if client.closing is not None:
            return
        before = driver.snapshot()
        answer = client.send(message)
        driver.run_timers()
        errors = [m for m in answer if m.get("res") == "err"]
        if errors:
            failures += 1
            assert driver.snapshot() == before, (message, errors)
        if "r" not in driver.hub.realms:  # keep a world to fail against
            keeper.send(realm_create("r"), obj("cre", "r", "o"))

    check()
    assert failures > 75  # the property was tried on many failures


def test_a_failed_bearer_on_a_live_connection_changes_nothing() -> None:
    """A refused token refresh keeps the claims, the presence and the subscriptions."""
    driver, _ = world()
    device = driver.connect(mint("device", dpv={"r": ["o"]}))
    assert [m["res"] for m in device.send(subscribe("s", "r", 1))] == ["suc"]
    before = driver.snapshot()
    for token in ("not a jwt", mint("device", secret="another-secret-0123456789-abcdefghijk")):
        (reply,) = device.bearer(token)
        assert (reply["act"], reply["res"], reply["erc"]) == ("aut", "err", 401)
        assert driver.snapshot() == before
    assert driver.hub.status("r", "o") == "con"
