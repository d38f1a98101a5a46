"""Revoked tokens are refused on every Bearer frame and HTTP request.

The rule (`server.protocol.hub`): a token is checked against the revocations in force
(`server.model.revocations`) on every Bearer frame and HTTP request, after the cache of
verified tokens. Applying a revocation closes this node's connections that use the token
(4003, through `Hub.condemned`).
"""

from __future__ import annotations

from typing import Any

import orjson

from hivectl.core.tokens import SigningKey, mint_token
from hivectl.core.wire import CLOSE_KICKED
from tests.conftest import SECRET, mint
from tests.protocol.driver import Client, HubDriver, Message, obj, presence_events, realm_create

REVOKED = {"typ": "sys", "act": "aut", "res": "err", "err": "token has been revoked", "erc": 401}


def revoke(admin: Client, **dat: Any) -> list[Message]:
    """Revoke as an operator; what the admin connection received meanwhile."""
    answer = admin.send({"typ": "adm", "act": "rev", "dat": dat, "cid": "rev"})
    assert [m["res"] for m in answer if m.get("cid") == "rev"] == ["suc"], answer
    return answer


def test_a_revoked_token_is_refused_even_though_it_was_verified_before() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    admin.send(realm_create("r"), obj("cre", "r", "o"))
    token = mint("device", jti="j1", dpv={"r": ["o"]})
    device = driver.connect(token)
    assert driver.hub.status("r", "o") == "con"
    settings = driver.hub.settings.auth
    cache_key = (token, settings.require_permissions, None, None)
    assert driver.hub._verified.get(cache_key) is not None  # the signature is not checked again

    revoke(admin, jti="j1")

    # The live connection that uses it is condemned, and its presence ends now.
    assert device.closing == (CLOSE_KICKED, "token revoked")
    assert driver.hub.take_condemned() == [device.session]
    assert driver.hub.status("r", "o") == "dis"
    ledger = driver.hub.engine.ledger("r", "o")
    assert ledger is not None and ledger.last_reason == "revoked"
    # The same token, still in the cache, is refused on a new connection.
    assert driver.open().bearer(token) == [REVOKED]
    # And over HTTP.
    body = orjson.dumps([{"typ": "sys", "act": "hbt", "cid": 1}])
    assert driver.hub.handle_http(token, body, driver.now) == (
        401,
        {"err": "token has been revoked", "erc": 401},
        False,
    )


def test_a_refresh_with_a_revoked_token_fails_and_keeps_the_connection_as_it_was() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    client = driver.connect(mint("rider", jti="old"))
    revoke(admin, jti="new")
    before = driver.snapshot()

    assert client.bearer(mint("rider", jti="new")) == [REVOKED]

    assert client.closing is None
    assert client.session.claims is not None and client.session.claims.jti == "old"
    assert driver.snapshot() == before


def test_a_sub_revocation_covers_the_tokens_issued_before_it_only() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    earlier = mint("rider")  # issued now, before the driver's clock
    rider = driver.connect(earlier)

    revoke(admin, sub="rider")

    assert rider.closing == (CLOSE_KICKED, "token revoked")
    assert driver.open().bearer(earlier) == [REVOKED]
    later = mint_token(
        {"sub": "rider"}, SigningKey("HS256", SECRET.encode()), now=driver.now + 1, ttl=3600
    )
    assert [m["res"] for m in driver.open().bearer(later, at=driver.now + 2)] == ["suc"]


def test_http_requests_are_checked_too() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    token = mint("script", jti="s1")
    body = orjson.dumps([{"typ": "sys", "act": "hbt", "cid": 1}])
    status, answer, _ = driver.hub.handle_http(token, body, driver.now)
    assert (status, [m["res"] for m in answer]) == (200, ["suc"])
    revoke(admin, jti="s1")
    status, answer, _ = driver.hub.handle_http(token, body, driver.now)
    assert (status, answer) == (401, {"err": "token has been revoked", "erc": 401})


def test_a_revocation_publishes_the_disconnects_it_causes() -> None:
    driver = HubDriver()
    admin = driver.connect(mint("admin", adm=True))
    admin.send(realm_create("r"), obj("cre", "r", "a"), obj("cre", "r", "b"))
    driver.connect(mint("gateway", jti="g", dpv={"r": ["*"]}))
    admin.send({"typ": "rea", "act": "sub", "id": "r", "dat": {"eve": "connectionStatusChanged"}})
    admin.take()
    assert presence_events(revoke(admin, jti="g")) == [("r", "a", "dis"), ("r", "b", "dis")]
