"""Frames and message envelopes on the hub (protocol.md §1, §5): requests in one frame,
malformed input and what it is answered, and that a bad message stops neither its frame nor
its connection.

Moved from `tests.server.test_ws_protocol`, with the same frames and assertions; what the
socket layer does with a frame (a binary frame) and one exchange through a real server
stay there.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import mint
from tests.protocol.driver import Client, HubDriver


@pytest.fixture
def client() -> Client:
    client = HubDriver().connect(mint("admin"))
    client.ok({"typ": "rea", "act": "cre", "id": "r"})
    return client


def test_set_then_read_in_one_frame_reads_what_was_set(client: Client) -> None:
    client.send(
        {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 1}},
        {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-1"},
        {"typ": "obj", "act": "set", "rea": "r", "id": "x", "dat": {"v": 2, "w": 3}},
        {"typ": "obj", "act": "upd", "rea": "r", "id": "x", "dat": {"w": None}, "cid": "u"},
        {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-2"},
        {"typ": "obj", "act": "del", "rea": "r", "id": "x", "cid": "d"},
        {"typ": "obj", "act": "rea", "rea": "r", "id": "x", "cid": "read-3"},
    )
    assert client.reply("read-1")["dat"]["dat"] == {"v": 1}
    assert client.reply("read-2")["dat"]["dat"] == {"v": 2}
    gone = client.reply("read-3")
    assert (gone["erc"], gone["err"]) == (404, "unknown object x")
    assert not [m for m in client.received if m.get("act") == "set"]  # set gets no reply


def test_a_hundred_requests_in_one_frame_are_each_answered_once(client: Client) -> None:
    frame: list[dict[str, Any]] = []
    for n in range(50):
        frame.append({"typ": "obj", "act": "cre", "rea": "r", "id": f"o{n}", "cid": f"c{n}"})
        frame.append({"typ": "obj", "act": "rea", "rea": "r", "id": f"o{n}", "cid": n})
    client.send(*frame)
    replies = [m for m in client.received if m.get("typ") == "obj"]
    assert sorted(map(str, (m["cid"] for m in replies))) == sorted(
        [f"c{n}" for n in range(50)] + [str(n) for n in range(50)]
    )
    assert all(m["res"] == "suc" for m in replies)
    assert all(m["dat"]["id"] == f"o{m['cid']}" for m in replies if m["act"] == "rea")
    assert list(client.ok({"typ": "obj", "act": "lis", "rea": "r"})) == [f"o{n}" for n in range(50)]


MALFORMED: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("not json", "this is not json", [{"res": "err", "erc": 400}]),
    ("nan", '[{"typ":"sys","act":"hbt","cid":"n","dat":NaN}]', [{"res": "err", "erc": 400}]),
    ("not an array", '{"typ":"sys","act":"hbt","cid":"h"}',
     [{"res": "err", "err": "frame must be a JSON array of messages", "erc": 400}]),
    ("array of non-objects", "[1, null, []]",
     [{"res": "err", "err": "message must be a JSON object", "erc": 400}] * 3),
    ("unknown typ", '[{"typ":"zzz","act":"rea","cid":"c1"}]',
     [{"cid": "c1", "res": "err", "err": 'unknown type "zzz"', "erc": 400}]),
    ("unknown act", '[{"typ":"obj","act":"zzz","cid":"c2"}]',
     [{"typ": "obj", "act": "zzz", "cid": "c2", "res": "err",
       "err": 'unknown action "zzz" for type obj', "erc": 400}]),
    ("aut as json", '[{"typ":"sys","act":"aut","cid":"c3"}]',
     [{"typ": "sys", "act": "aut", "cid": "c3", "res": "err",
       "err": 'unknown action "aut" for type sys', "erc": 400}]),
    ("id not a string", '[{"typ":"obj","act":"rea","rea":"r","id":5,"cid":"c4"}]',
     [{"typ": "obj", "act": "rea", "cid": "c4", "res": "err", "err": "id must be a string",
       "erc": 400}]),
    ("loc not numbers", '[{"typ":"obj","act":"cre","rea":"r","id":"x","loc":{"lon":"a"},'
     '"cid":"c5"}]',
     [{"typ": "obj", "act": "cre", "cid": "c5", "res": "err",
       "err": "loc.lon must be a finite number", "erc": 400}]),
    ("tds not strings", '[{"typ":"obj","act":"cre","rea":"r","id":"x","tds":[1],"cid":"c6"}]',
     [{"typ": "obj", "act": "cre", "cid": "c6", "res": "err",
       "err": "tds must be a list of strings", "erc": 400}]),
    ("dat not an object", '[{"typ":"obj","act":"cre","rea":"r","id":"x","dat":[1],"cid":7}]',
     [{"typ": "obj", "act": "cre", "cid": 7, "res": "err", "err": "dat must be an object",
       "erc": 400}]),
    ("cid a bool", '[{"typ":"sys","act":"hbt","cid":true}]',
     [{"act": "hbt", "res": "err", "err": "cid must be a string or an integer", "erc": 400}]),
    ("bad set has no cid", '[{"typ":"obj","act":"set","rea":"nowhere","id":"x"}]',
     [{"typ": "obj", "act": "set", "res": "err", "err": "unknown realm nowhere", "erc": 404}]),
]  # fmt: skip
"""Malformed text frames and what each is answered; the binary frame, which the socket
layer hands over as bytes, is `tests.server.test_ws_protocol`'s."""


@pytest.mark.parametrize(
    ("frame", "expected"), [(f, e) for _, f, e in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_input_gets_400_and_the_connection_keeps_working(
    client: Client, frame: str, expected: list[dict[str, Any]]
) -> None:
    errors = client.driver.send_raw(client, frame)
    assert len(errors) == len(expected)
    for got, want in zip(errors, expected, strict=True):
        assert {key: got.get(key) for key in want} == want
        assert set(got) <= {"typ", "act", "cid", "res", "err", "erc"}
        assert isinstance(got["err"], str)
        assert got["err"]
    client.ok({"typ": "obj", "act": "cre", "rea": "r", "id": "after"})  # still working
    assert client.closing is None


def test_bad_messages_do_not_stop_the_rest_of_their_frame(client: Client) -> None:
    client.send(
        "oops",
        {"typ": "obj", "act": "cre", "rea": "r", "id": "a", "cid": "ok-1"},
        {"typ": "obj", "act": "upd", "rea": "r", "id": "missing", "cid": "nf"},
        {"typ": "obj", "act": "rea", "rea": "r", "id": "a", "cid": "ok-2"},
    )
    assert client.reply("ok-2")["dat"]["id"] == "a"
    assert client.reply("ok-1")["res"] == "suc"
    missing = client.reply("nf")
    assert (missing["erc"], missing["err"]) == (404, "unknown object missing")
