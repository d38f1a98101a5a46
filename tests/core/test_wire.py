"""Wire decoding of hostile input (whatever is accepted can be encoded again), and the
message shapes both sides build, pinned byte for byte against protocol.md."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.wire import (
    ACTIONS,
    LOCATION_NUMBERS,
    MAX_DEPTH,
    PRESENCE_EVENT,
    REALM_LIST,
    Message,
    WireError,
    authenticated,
    authentication_refused,
    bearer,
    decode_frame,
    decode_json,
    encode,
    is_authentication,
    is_full_state,
    is_publication,
    is_realm_list_push,
    is_reply,
    is_subscription_push,
    iso8601,
    object_push,
    object_scope,
    object_subscription,
    parse_request,
    presence_filter,
    presence_payload,
    publication,
    pubsub_event,
    pubsub_filter,
    realm_data_push,
    realm_data_subscription,
    realm_list_push,
    realm_list_subscription,
    request,
    with_initial_state,
)
from tests.conftest import mint
from tests.protocol.driver import HubDriver

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    """A frame whose array holds objects nested to `depth` levels in all."""
    return "[" + '{"k":' * (depth - 1) + "0" + "}" * (depth - 1) + "]"


@pytest.mark.parametrize("shape", [lists, objects])
@pytest.mark.parametrize("decode", [decode_frame, decode_json])
def test_nesting_up_to_the_limit_passes_and_one_more_level_is_a_400(
    decode: Callable[[str], object], shape: Callable[[int], str]
) -> None:
    decode(shape(MAX_DEPTH))
    with pytest.raises(WireError) as refused:
        decode(shape(MAX_DEPTH + 1))
    assert refused.value.code == 400
    assert refused.value.text.endswith(f"is nested deeper than {MAX_DEPTH} levels")


def test_the_deepest_frame_still_encodes_inside_the_servers_own_wrapping() -> None:
    deepest = decode_frame(lists(MAX_DEPTH))
    # A subscription push puts a message's ``dat`` five levels deeper than the frame did.
    assert encode([{"typ": "sub", "obj": {"upd": {"id": {"dat": deepest}}}}])


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert decode_frame(orjson.dumps(["[" * 1000 + "{" * 1000]).decode()) == [
        "[" * 1000 + "{" * 1000
    ]


def test_a_wide_frame_with_many_brackets_is_not_too_deep() -> None:
    frame = [{"typ": "sys", "act": "hbt", "cid": n, "dat": [[n]]} for n in range(1000)]
    assert decode_frame(orjson.dumps(frame).decode()) == frame


def test_only_deep_branches_count() -> None:
    deep = orjson.loads(lists(MAX_DEPTH - 1))
    assert decode_frame(orjson.dumps([[], {}, deep]).decode())
    with pytest.raises(WireError):
        decode_frame(orjson.dumps([[], {}, [deep]]).decode())


def test_bytes_are_counted_too() -> None:
    with pytest.raises(WireError):
        decode_json(lists(MAX_DEPTH + 1).encode())


@pytest.mark.parametrize(
    "text",
    ["[NaN]", "[Infinity]", "[-Infinity]", "[1e400]", '["\\ud800"]', "[" * 2000 + "]" * 2000],
)
def test_what_json_forbids_is_a_400(text: str) -> None:
    with pytest.raises(WireError) as refused:
        decode_frame(text)
    assert refused.value.code == 400


def test_integers_past_64_bits_become_doubles() -> None:
    assert decode_frame("[18446744073709551615, 18446744073709551616, -9223372036854775809]") == [
        2**64 - 1,
        float(2**64),
        -float(2**63),
    ]


# -- time format -------------------------------------------------------------------------


def _oracle(timestamp: float) -> str:
    moment = EPOCH + timedelta(milliseconds=math.floor(timestamp * 1000))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_wire_time_is_utc_to_the_truncated_millisecond() -> None:
    assert iso8601(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso8601(1.2349) == "1970-01-01T00:00:01.234Z"
    assert iso8601(1_795_000_000.9996) == "2026-11-18T11:06:40.999Z"


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_wire_time_matches_a_datetime_oracle(timestamp: float) -> None:
    assert iso8601(timestamp) == _oracle(timestamp)


def test_consecutive_times_in_one_second_share_its_text_but_not_their_milliseconds() -> None:
    times = [iso8601(1_795_000_000 + n / 1000) for n in (0, 5, 999, 1000)]
    assert [t[-5:] for t in times] == [".000Z", ".005Z", ".999Z", ".000Z"]
    assert times[0][:-5] == times[2][:-5] != times[3][:-5]


def test_authentication_replies_have_protocol_md_shapes_byte_for_byte() -> None:
    """protocol.md §3: no ``cid``, keys in the order the reference server sends them."""
    assert encode([authenticated("1.2.3", "2026-12-05")]) == (
        b'[{"typ":"sys","act":"aut","res":"suc","dat":{"version":"1.2.3","buildDate":"2026-12-05"}}]'
    )
    assert encode([authentication_refused("token has expired")]) == (
        b'[{"typ":"sys","act":"aut","res":"err","err":"token has expired","erc":401}]'
    )
    assert bearer("a.b.c") == "Bearer a.b.c"


def test_a_presence_publication_has_the_shape_of_protocol_md_6_4() -> None:
    message = publication("london", "riders/*", PRESENCE_EVENT, "riders/7", presence_payload("dis"))
    assert encode([message]) == (
        b'[{"typ":"rea","act":"pub","rea":"london","sid":"riders/*","dat":'
        b'{"eve":"connectionStatusChanged","idp":"riders/7","dat":{"cst":"dis"}}}]'
    )


def test_replies_are_told_apart_by_typ_and_act() -> None:
    published = publication("r", "*", "e", "i", None)
    assert is_publication(published) and not is_authentication(published)
    assert is_authentication(authenticated("v", "d")) and not is_publication(
        authenticated("v", "d")
    )
    assert not is_authentication({"typ": "sys", "act": "sta", "cid": 1, "res": "suc"})
    assert not is_publication({"typ": "rea", "act": "sub", "cid": 1, "res": "suc"})


# -- requests: each shape as protocol.md writes it ---------------------------------------

PROTOCOL_EXAMPLES: dict[str, tuple[Message, bytes]] = {
    "§2 heartbeat": (
        request("sys", "hbt", cid="heartbeat-1"),
        b'{"typ":"sys","act":"hbt","cid":"heartbeat-1"}',
    ),
    "§6.3 object subscription": (
        request("sub", "cre", id="s1", rea="london", dat=object_subscription("rea"), cid=1),
        b'{"typ":"sub","act":"cre","id":"s1","rea":"london","dat":{"typ":"obj","sty":"rea"},"cid":1}',
    ),
    "§6.3 object subscription with everything": (
        request(
            "sub",
            "cre",
            id="s1",
            rea="london",
            dat=object_subscription(
                "tar", atr=['type="rider"'], sta={"id": "o1", "r": 50}, exe=True
            ),
        ),
        b'{"typ":"sub","act":"cre","id":"s1","rea":"london","dat":{"typ":"obj","sty":"tar",'
        b'"atr":["type=\\"rider\\""],"sta":{"id":"o1","r":50},"exe":true}}',
    ),
    "§6.3 subscription update": (
        request("sub", "upd", id="s1", rea="london", dat=object_scope(atr=[], sty="rea")),
        b'{"typ":"sub","act":"upd","id":"s1","rea":"london","dat":{"atr":[],"sty":"rea"}}',
    ),
    "§6.3 subscription delete": (
        request("sub", "del", id="s1", rea="london"),
        b'{"typ":"sub","act":"del","id":"s1","rea":"london"}',
    ),
    "§6.3 realm list subscription": (
        request("sub", "cre", id="s2", rea=REALM_LIST, dat=realm_list_subscription()),
        b'{"typ":"sub","act":"cre","id":"s2","rea":"sys","dat":{"typ":"sys","sty":"rea"}}',
    ),
    "§6.3 realm data subscription": (
        request("sub", "cre", id="s3", rea="london", dat=realm_data_subscription()),
        b'{"typ":"sub","act":"cre","id":"s3","rea":"london","dat":{"typ":"rea","sty":"rea"}}',
    ),
    "§6.4 pub/sub subscribe": (
        request("rea", "sub", id="london", dat=pubsub_filter(PRESENCE_EVENT, "riders/*")),
        b'{"typ":"rea","act":"sub","id":"london","dat":'
        b'{"eve":"connectionStatusChanged","idp":"riders/*"}}',
    ),
    "§6.4 pub/sub unsubscribe": (
        request("rea", "uns", id="london", dat=pubsub_filter("arrived", "*")),
        b'{"typ":"rea","act":"uns","id":"london","dat":{"eve":"arrived","idp":"*"}}',
    ),
    "§6.4 publish": (
        request("rea", "pub", id="london", dat=pubsub_event("arrived", "riders/7", {"at": 3})),
        b'{"typ":"rea","act":"pub","id":"london","dat":'
        b'{"eve":"arrived","idp":"riders/7","dat":{"at":3}}}',
    ),
    "§6.5 stats": (
        request("sys", "sta", cid=7),
        b'{"typ":"sys","act":"sta","cid":7}',
    ),
    "§6.5 presence of one object": (
        request("sys", "pre", rea="london", id="riders/7", cid=8),
        b'{"typ":"sys","act":"pre","rea":"london","id":"riders/7","cid":8}',
    ),
    "§6.5 presence count": (
        request("sys", "pre", rea="london", dat=presence_filter("riders/*"), cid=9),
        b'{"typ":"sys","act":"pre","rea":"london","dat":{"idp":"riders/*"},"cid":9}',
    ),
    "§6.2 object update, the fields not given left out": (
        request(
            "obj", "upd", rea="london", id="riders/7", lab=None, loc={"lon": 1}, dat=None, tds=[]
        ),
        b'{"typ":"obj","act":"upd","rea":"london","id":"riders/7","loc":{"lon":1},"tds":[]}',
    ),
}


@pytest.mark.parametrize("example", PROTOCOL_EXAMPLES.values(), ids=PROTOCOL_EXAMPLES.keys())
def test_requests_have_protocol_md_shapes_byte_for_byte(example: tuple[Message, bytes]) -> None:
    built, written = example
    assert encode([built]) == b"[" + written + b"]"


def test_pushes_have_protocol_md_shapes_byte_for_byte() -> None:
    """protocol.md §6.3: the three kinds of subscription push."""
    rider = {"id": "riders/7", "cst": "con"}
    assert encode([object_push("s1", "dta", {"riders/7": rider}, {}, {"riders/8": {}})]) == (
        b'[{"typ":"sub","id":"s1","uty":"dta","obj":{"cre":{"riders/7":'
        b'{"id":"riders/7","cst":"con"}},"upd":{},"del":{"riders/8":{}}}}]'
    )
    assert encode([realm_list_push("s2", "london", "upd")]) == (
        b'[{"typ":"sub","id":"s2","uty":"dta","dat":{"typ":"rea","id":"london","act":"upd"}}]'
    )
    realm = {"id": "london", "lab": "London", "dat": {}}
    assert encode([realm_data_push("s3", realm)]) == (
        b'[{"typ":"sub","id":"s3","uty":"ful","rea":{"id":"london","lab":"London","dat":{}}}]'
    )


def test_an_option_not_given_is_not_sent_and_options_given_are_copies() -> None:
    """A ``sub`` ``upd`` merges its ``dat``: an option sent by mistake would replace one."""
    assert object_scope() == {}
    shape = {"cx": 0, "cy": 0, "r": 5}
    options = object_subscription("cir", sha=shape)
    shape["r"] = 6
    assert options == {"typ": "obj", "sty": "cir", "sha": {"cx": 0, "cy": 0, "r": 5}}
    assert with_initial_state(options) == {**options, "exe": True}
    assert "exe" not in options


@pytest.mark.parametrize(
    ("typ", "act"), [("obj", "sub"), ("rea", "set"), ("zzz", "rea"), ("sys", ""), ("", "")]
)
def test_a_request_with_an_unknown_typ_or_act_is_a_value_error(typ: str, act: str) -> None:
    with pytest.raises(ValueError, match="no action"):
        request(typ, act)


# -- every request a client can build is read back as built ------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
IDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
NUMBER = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
LOCATION = st.fixed_dictionaries(
    {},
    optional={
        **{key: st.floats(allow_nan=False, allow_infinity=False) for key in LOCATION_NUMBERS},
        "gcs": TEXT,
        "tim": TEXT,
    },
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.none() | IDS,
        "rea": st.none() | IDS,
        "lab": st.none() | TEXT,
        "loc": st.none() | LOCATION,
        "dat": JSON,
        "tds": st.none() | st.lists(TEXT, max_size=3),
        "cid": st.none() | TEXT | st.integers(-(2**53), 2**53),
    },
)
KNOWN = sorted((typ, act) for typ, acts in ACTIONS.items() for act in acts)


@given(st.sampled_from(KNOWN), FIELDS.flatmap(lambda f: st.permutations(list(f.items()))))
def test_a_built_request_parses_back_to_its_fields_in_any_order(
    action: tuple[str, str], fields: list[tuple[str, Any]]
) -> None:
    """What a client builds is what the server reads, through the wire's own encoding:
    every field given comes back, a None one is not sent, the order given is kept."""
    typ, act = action
    message = request(typ, act, **dict(fields))
    sent = [key for key, value in fields if value is not None]
    assert list(message) == ["typ", "act", *sent]
    parsed = parse_request(decode_frame(encode([message]).decode())[0])
    given_values = dict(fields)
    assert (parsed.typ, parsed.act) == action
    for key in ("id", "rea", "lab", "loc", "dat", "tds", "cid"):
        assert getattr(parsed, key) == given_values.get(key), key
    assert parsed.has_dat == (given_values.get("dat") is not None)


@given(TEXT, TEXT)
def test_only_protocol_actions_can_be_built(typ: str, act: str) -> None:
    if act in ACTIONS.get(typ, ()):
        assert request(typ, act) == {"typ": typ, "act": act}
    else:
        with pytest.raises(ValueError):
            request(typ, act)


# -- recognisers, against what the server really sends ------------------------------------

RECOGNISERS: dict[str, Callable[[Message], bool]] = {
    "reply": is_reply,
    "authentication": is_authentication,
    "publication": is_publication,
    "subscription push": is_subscription_push,
    "realm-list push": is_realm_list_push,
    "full state": is_full_state,
}


def recognised(message: Message) -> set[str]:
    return {name for name, recognises in RECOGNISERS.items() if recognises(message)}


def test_the_recognisers_tell_apart_every_message_a_hub_sends() -> None:
    """A client that subscribed to everything, then saw a realm and an object come, change,
    connect and go: each message it got is recognised as what it is, and as nothing else.
    The two the raw tests confused: the reply to a ``pub`` (``typ`` and ``act`` of a
    publication) and the reply to a ``sub`` request (``typ`` of a subscription push)."""
    driver = HubDriver()
    client = driver.open()
    (accepted,) = driver.bearer(client, mint(sub="watcher"))
    assert recognised(accepted) == {"reply", "authentication"}
    writer = driver.connect(sub="writer")
    writer.send(request("rea", "cre", id="r", cid=1))

    answers = client.send(
        request("sub", "cre", id="list", rea=REALM_LIST, dat=realm_list_subscription(), cid=1),
        request("sub", "cre", id="data", rea="r", dat=realm_data_subscription(), cid=2),
        request("sub", "cre", id="objs", rea="r", dat=object_subscription(exe=True), cid=3),
        request("rea", "sub", id="r", dat=pubsub_filter(PRESENCE_EVENT, "*"), cid=4),
        request("rea", "sub", id="r", dat=pubsub_filter("ping", "*"), cid=5),
        request("rea", "pub", id="r", dat=pubsub_event("ping", "o1", None), cid=6),
        request("obj", "set", rea="r", id="o1", loc={"lon": "east"}),  # refused: no cid
        request("sys", "hbt", cid=7),
    )
    driver.run_timers()
    received = answers + client.take()
    writer.send(request("obj", "cre", rea="r", id="o1", cid=2))
    provider = driver.connect(dpv={"r": ["o1"]})
    writer.send(request("rea", "upd", id="r", lab="R", cid=3))
    driver.close(provider)
    writer.send(request("rea", "cre", id="r2", cid=4), request("obj", "del", rea="r", id="o1"))
    received += client.take()

    def expected(message: Message) -> set[str]:
        if "res" in message:
            return {"reply"}
        if message["typ"] == "rea":
            return {"publication"}
        kind = {"list": {"realm-list push"}, "data": {"full state"}, "objs": set()}
        full = message["id"] == "objs" and message["uty"] == "ful"
        return {"subscription push"} | kind[message["id"]] | ({"full state"} if full else set())

    assert [recognised(m) for m in received] == [expected(m) for m in received]
    seen = {(m.get("typ"), m.get("id"), m.get("uty"), "res" in m) for m in received}
    assert {
        ("sub", "list", "dta", False),
        ("sub", "data", "ful", False),
        ("sub", "objs", "ful", False),
        ("sub", "objs", "dta", False),
        ("rea", None, None, False),
        ("rea", None, None, True),  # the reply to the pub
        ("sub", None, None, True),  # the replies to the subscriptions
        ("obj", None, None, True),  # the error for the set without cid
    } <= seen
