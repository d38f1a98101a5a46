"""Frames: array order, exactly one reply per ``cid``, none for ``set``.

The rule (`server.protocol.hub`): messages of one frame are handled in array order; each
request with a ``cid`` gets exactly one reply; ``set`` gets none, and a failing message
without ``cid`` gets an error without ``cid``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.protocol.driver import (
    PROPERTY,
    HubDriver,
    Message,
    heartbeat,
    obj,
    realm_create,
    replies,
    subscribe,
)


def test_a_set_then_a_read_in_one_frame_reads_what_was_set() -> None:
    driver = HubDriver()
    client = driver.connect()
    answer = client.send(
        realm_create("r", 1),
        obj("set", "r", "o", dat={"k": 1}),
        obj("rea", "r", "o", 2),
        obj("set", "r", "o", dat={"k": 2}),
        obj("rea", "r", "o", 3),
        obj("del", "r", "o", 4),
        obj("rea", "r", "o", 5),
    )
    assert [(m["cid"], m["res"]) for m in answer] == [
        (1, "suc"),
        (2, "suc"),
        (3, "suc"),
        (4, "suc"),
        (5, "err"),
    ]
    assert answer[1]["dat"]["dat"] == {"k": 1}
    assert answer[2]["dat"]["dat"] == {"k": 2}
    assert answer[4]["err"] == "unknown object o"


def test_replies_come_in_array_order_successes_and_errors_alike() -> None:
    driver = HubDriver()
    client = driver.connect()
    answer = client.send(
        obj("rea", "r", "o", "a"),  # 404: no realm yet
        realm_create("r", "b"),
        realm_create("r", "c"),  # 409
        heartbeat("d"),
        {"typ": "nope", "cid": "e"},  # 400
        obj("cre", "r", "o", "f"),
    )
    assert [(m["cid"], m["res"]) for m in answer] == [
        ("a", "err"),
        ("b", "suc"),
        ("c", "err"),
        ("d", "suc"),
        ("e", "err"),
        ("f", "suc"),
    ]


def test_set_gets_no_reply_and_a_failing_message_without_cid_an_error_without_one() -> None:
    driver = HubDriver()
    client = driver.connect()
    client.send(realm_create("r", 1))
    answer = client.send(
        obj("set", "r", "o", dat={"k": 1}),  # applied, no reply
        obj("set", "x", "o"),  # unknown realm
        heartbeat(None),  # succeeds: nothing to reply to
        obj("set", "r", "o", dat=5),  # bad payload
        "junk",  # not even an object: nothing to echo
    )
    assert answer == [
        {"typ": "obj", "act": "set", "res": "err", "err": "unknown realm x", "erc": 404},
        {"typ": "obj", "act": "set", "res": "err", "err": "dat must be an object", "erc": 400},
        {"res": "err", "err": "message must be a JSON object", "erc": 400},
    ]
    assert driver.hub.realms["r"].objects["o"].dat == {"k": 1}


def test_an_unauthenticated_frame_still_gets_one_reply_per_cid() -> None:
    driver = HubDriver()
    client = driver.open()
    answer = client.send(heartbeat(1), obj("set", "r", "o"), heartbeat(2))
    assert [(m.get("cid"), m["erc"]) for m in answer] == [(1, 401), (None, 401), (2, 401)]


# -- the property -----------------------------------------------------------------------

GOOD_SET = obj("set", "r", "o", dat={"k": 1})
WITHOUT_CID: list[tuple[Message | str, bool]] = [
    # (message, whether it fails whatever the state): the outcome of a message without cid
    # must not depend on the rest of the frame, so the expected replies can be told.
    (GOOD_SET, False),
    (heartbeat(None), False),
    (obj("set", "x", "o"), True),
    (obj("set", "r", "o", dat=5), True),
    (obj("upd", "x", "o"), True),
    ({"typ": "obj"}, True),
    ("junk", True),
]
WITH_CID: list[Message] = [
    heartbeat(0),
    realm_create("t"),
    {"typ": "rea", "act": "del", "id": "t"},
    obj("cre", "r", "p"),
    obj("rea", "r", "p"),
    obj("upd", "r", "p", lab="moved"),
    obj("del", "r", "p"),
    obj("rea", "r", "o"),
    obj("lis", "r", None),
    obj("rea", "x", "o"),
    subscribe("s", "r", exe=True),
    {"typ": "sub", "act": "del", "id": "s", "rea": "r"},
    {"typ": "rea", "act": "sub", "id": "r", "dat": {"eve": "e"}},
    {"typ": "rea", "act": "pub", "id": "r", "dat": {"eve": "e", "idp": "p", "dat": 1}},
    {"typ": "sys", "act": "sta"},
    {"typ": "sys", "act": "pre", "rea": "r", "id": "o"},
    {"typ": "nope"},
    {"typ": "obj", "act": "rea", "rea": "r", "id": 5},
]

CHOICES = len(WITHOUT_CID) + 2 * len(WITH_CID)
"""A frame entry is one number: a message without cid, or one with an int or a str cid."""


def test_any_frame_gets_one_reply_per_cid_in_order_and_errors_for_failed_plain_ones() -> None:
    driver = HubDriver()
    client = driver.connect()
    client.send(realm_create("r"), GOOD_SET)

    @PROPERTY
    @given(st.lists(st.integers(0, CHOICES - 1), max_size=30))
    def check(frame: list[int]) -> None:
        messages: list[Any] = []
        expected: list[Any] = []  # per reply: its cid, or None for an error without cid
        for position, choice in enumerate(frame):
            if choice < len(WITHOUT_CID):
                message, fails = WITHOUT_CID[choice]
                messages.append(message)
                if fails:
                    expected.append(None)
            else:
                index, as_text = divmod(choice - len(WITHOUT_CID), 2)
                cid: int | str = f"c{position}" if as_text else position
                messages.append({**WITH_CID[index], "cid": cid})
                expected.append(cid)

        driver.advance(1.0)  # a fresh second of message budget
        answer = client.send(*messages)
        driver.run_timers()
        answer += client.take()

        answered = [m for m in answer if "res" in m]  # pushes carry no res
        assert [m.get("cid") for m in answered] == expected
        assert all(m["res"] == "err" for m in answered if "cid" not in m)
        assert all(len(group) == 1 for group in replies(answered).values())

    check()


def test_a_frame_that_is_refused_whole_gets_one_error_without_cid() -> None:
    """Not a rule of the hub's list but its edge: a frame over the message limit, or one
    that is not a JSON array, is refused as a whole, so its requests get no reply each."""
    driver = HubDriver(**{"limits.max_messages_per_frame": 3})
    client = driver.connect()
    assert client.send(*(heartbeat(n) for n in range(4))) == [
        {"res": "err", "err": "too many messages in one frame (limit 3)", "erc": 413}
    ]
    (reply,) = driver.send_raw(client, '[{"typ": "sys", "act": "hbt", "cid": 1}')
    assert (reply.get("cid"), reply["erc"]) == (None, 400)
    assert [m["cid"] for m in client.send(*(heartbeat(n) for n in range(3)))] == [0, 1, 2]
