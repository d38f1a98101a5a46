"""The message rate limit on a controlled clock: the bucket alone, then inside the hub."""

from __future__ import annotations

from typing import Any

import orjson

from hivectl.core.wire import CLOSE_RATE_LIMITED
from server.model.ratelimit import RateLimiter
from server.model.session import Session
from server.protocol.hub import Hub
from tests.conftest import mint
from tests.server.inprocess import bare_hub


def test_a_full_bucket_lets_a_burst_through_then_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.allow(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert not limiter.allow(100.05)  # half a token
    assert limiter.allow(100.11)
    assert not limiter.allow(100.11)
    assert [limiter.allow(200.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def test_sustained_traffic_at_the_rate_is_never_rejected() -> None:
    limiter = RateLimiter(rate=10, burst=2)  # one spare token absorbs float rounding
    assert all(limiter.allow(n / 10) for n in range(1000))


def test_a_clock_that_runs_backwards_refills_nothing() -> None:
    limiter = RateLimiter(rate=10, burst=1)
    assert limiter.allow(100.0)
    assert not limiter.allow(50.0)
    assert not limiter.allow(100.0)
    assert limiter.allow(100.11)


def test_a_provider_gets_per_object_rate_and_a_burst_grown_in_proportion() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    assert limiter.allow(100.0)
    limiter.provide(objects=45, per_object=2)
    assert (limiter.rate, limiter.burst) == (100, 200)
    assert sum(limiter.allow(100.0) for _ in range(300)) == 199  # the grown bucket, less one
    assert sum(limiter.allow(101.0) for _ in range(300)) == 100  # then the new rate
    limiter.provide(objects=0, per_object=2)
    assert (limiter.rate, limiter.burst) == (10, 20)
    assert sum(limiter.allow(200.0) for _ in range(300)) == 20


def test_rebase_changes_the_base_the_per_object_rate_adds_to() -> None:
    limiter = RateLimiter(rate=10, burst=20)
    limiter.rebase(1, 5)
    assert sum(limiter.allow(100.0) for _ in range(10)) == 5
    limiter.provide(objects=2, per_object=2)
    assert (limiter.rate, limiter.burst) == (5, 25)


def test_more_than_burst_rejections_within_a_second_give_up_on_the_client() -> None:
    limiter = RateLimiter(rate=1, burst=3)
    assert [limiter.reject(10.0 + n / 10) for n in range(4)] == [False, False, False, True]
    limiter = RateLimiter(rate=1, burst=3)
    assert [limiter.reject(10.0 + n * 0.4) for n in range(6)] == [False] * 6  # a new window


class Received(list[Any]):
    """The messages the shell took for one session, `take` by `take`."""

    def __init__(self, hub: Hub, session: Session) -> None:
        super().__init__()
        self.hub, self.session = hub, session

    def take(self) -> None:
        for frame in self.hub.take_frames(self.session):
            self.extend(orjson.loads(frame))


def hub_session(**limits: Any) -> tuple[Hub, Session, Received]:
    hub = bare_hub(**{f"limits.{key}": value for key, value in limits.items()})
    session = hub.new_session("n:1")
    assert hub.authenticate(session, mint(), 1.0)
    hub.take_frames(session)
    return hub, session, Received(hub, session)


def heartbeats(count: int, prefix: str = "h") -> str:
    return orjson.dumps(
        [{"typ": "sys", "act": "hbt", "cid": f"{prefix}{n}"} for n in range(count)]
    ).decode()


def test_the_hub_answers_each_message_over_the_rate_with_429_and_condemns_at_burst() -> None:
    hub, session, received = hub_session(messages_per_second=10, burst=5)
    hub.handle_frame(session, heartbeats(8), 10.0)
    received.take()
    assert [m["res"] for m in received] == ["suc"] * 5 + ["err"] * 3
    assert {m["erc"] for m in received[5:]} == {429}
    assert session.closing is None

    received.clear()
    hub.handle_frame(session, heartbeats(3, "more"), 10.5)  # 5 tokens back; 3 strikes so far
    received.take()
    assert [m["res"] for m in received] == ["suc"] * 3
    received.clear()
    hub.handle_frame(session, heartbeats(10, "over"), 10.5)  # 2 pass, strikes 4, 5, then 6
    received.take()
    assert [m["res"] for m in received] == ["suc"] * 2 + ["err"] * 3
    assert session.closing == (CLOSE_RATE_LIMITED, "rate limited")

    received.clear()
    hub.handle_frame(session, heartbeats(1), 100.0)  # a condemned connection is not served
    assert hub.authenticate(session, mint(), 100.0) is False
    received.take()
    assert received == []


def test_messages_without_cid_over_the_rate_get_a_429_without_cid() -> None:
    hub, session, received = hub_session(messages_per_second=1, burst=1)
    unknown = {"typ": "obj", "act": "set", "rea": "r", "id": "o"}
    hub.handle_frame(session, orjson.dumps([unknown, unknown, "junk"]).decode(), 5.0)
    received.take()
    assert received == [
        {"typ": "obj", "act": "set", "res": "err", "err": "unknown realm r", "erc": 404},
        {
            "typ": "obj",
            "act": "set",
            "res": "err",
            "err": "rate limited (limit 1 messages per second)",
            "erc": 429,
        },
        {"res": "err", "err": "rate limited (limit 1 messages per second)", "erc": 429},
    ]


def test_bearer_frames_count_against_the_rate_too() -> None:
    hub, session, received = hub_session(messages_per_second=1, burst=2)
    assert hub.authenticate(session, mint(), 7.0)
    assert hub.authenticate(session, mint(), 7.0)
    assert not hub.authenticate(session, mint(), 7.0)
    received.take()
    assert [m["res"] for m in received] == ["suc", "suc", "err"]
    assert received[2] == {
        "typ": "sys",
        "act": "aut",
        "res": "err",
        "err": "rate limited (limit 1 messages per second)",
        "erc": 429,
    }
    assert session.authenticated  # still on its last good token
    assert not hub.authenticate(session, mint(), 7.0)
    assert not hub.authenticate(session, mint(), 7.0)
    assert session.closing == (CLOSE_RATE_LIMITED, "rate limited")
