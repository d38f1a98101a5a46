"""Wire decoding of hostile input: whatever is accepted can be encoded again."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.wire import (
    MAX_DEPTH,
    PRESENCE_EVENT,
    WireError,
    authenticated,
    authentication_refused,
    bearer,
    decode_frame,
    decode_json,
    encode,
    is_authentication,
    is_publication,
    iso8601,
    presence_payload,
    publication,
)

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
