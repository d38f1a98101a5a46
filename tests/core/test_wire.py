"""Wire decoding of hostile input: whatever is accepted can be encoded again."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from hivectl.core.wire import MAX_DEPTH, WireError, decode_frame, decode_json, encode


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
