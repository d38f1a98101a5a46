"""Id patterns (protocol.md §3): one matcher, checked against a regular-expression reference."""

from __future__ import annotations

import re
from typing import SupportsIndex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.patterns import IdPattern, PatternIndex, compile_pattern

# A small alphabet makes matches likely; it holds every character §3 calls literal.
ID_ALPHABET = "ab/?[].%_\\"
ids = st.text(alphabet=ID_ALPHABET + "*", max_size=12)
patterns = st.text(alphabet=ID_ALPHABET + "**", max_size=8)


def reference(pattern: str, value: str) -> bool:
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.fullmatch(regex, value, re.DOTALL) is not None


@given(patterns, ids)
def test_matches_like_the_reference(pattern: str, value: str) -> None:
    assert IdPattern(pattern).matches(value) == reference(pattern, value)


@given(patterns, st.data())
def test_an_id_built_from_the_pattern_matches(pattern: str, data: st.DataObject) -> None:
    fillers = data.draw(st.lists(ids, min_size=pattern.count("*"), max_size=pattern.count("*")))
    pieces = pattern.split("*")
    value = pieces[0] + "".join(f + p for f, p in zip(fillers, pieces[1:], strict=True))
    assert IdPattern(pattern).matches(value)


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("a?c", "a?c", "abc"),
        ("[ab]", "[ab]", "a"),
        ("a.c", "a.c", "abc"),
        ("10%", "10%", "100"),
        ("a_c", "a_c", "abc"),
        ("a\\*", "a\\x", "a*"),
        ("car/*", "car/1/front", "Car/1"),
        ("*/front", "car/1/front", "car/1/FRONT"),
        ("car", "car", "car/1"),
    ],
)
def test_only_star_is_special_and_case_counts(
    pattern: str, matching: str, not_matching: str
) -> None:
    assert IdPattern(pattern).matches(matching)
    assert not IdPattern(pattern).matches(not_matching)


def test_star_matches_empty_and_slashes() -> None:
    assert IdPattern("car/*").matches("car/")
    assert IdPattern("a*b").matches("ab")
    assert IdPattern("a*b").matches("a/x/y/b")
    assert IdPattern("*").matches("")


def test_many_stars_on_a_long_id_do_not_backtrack() -> None:
    pattern = IdPattern("*a" * 50 + "*b")
    long_id = "a" * 10_000
    assert not pattern.matches(long_id)
    assert pattern.matches(long_id + "b")


class CountingId(str):
    """An id that counts the characters `str.find` scans in it (what the matcher walks)."""

    scanned = 0

    def find(
        self, sub: str, start: SupportsIndex | None = None, end: SupportsIndex | None = None
    ) -> int:
        assert start is not None and end is not None
        found = super().find(sub, start, end)
        self.scanned += (found + len(sub) if found >= 0 else int(end)) - int(start)
        return found


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*a" * 50 + "*b", "a" * 10_000, False),
        ("*a" * 50 + "*b", "a" * 10_000 + "b", True),
        ("*" + "ab*" * 50 + "c", "ab" * 5_000, False),
        (
            "x*" + "*".join("a" * 20 for _ in range(49)) + "*y",
            "x" + ("a" * 19 + "b") * 499 + "y",
            False,
        ),
        ("*" * 50 + "/" + "*" * 50, "n" * 5_000 + "/" + "m" * 5_000, True),
    ],
    ids=["a-star-a-b", "a-star-a-b match", "ab-star", "long pieces", "stars only"],
)
def test_fifty_stars_on_a_10000_character_id_scan_it_once(
    pattern: str, value: str, expected: bool
) -> None:
    compiled = IdPattern(pattern)
    for _ in range(200):
        counted = CountingId(value)
        assert compiled.matches(counted) is expected
        # Every piece is searched from where the previous one ended: no character twice.
        assert counted.scanned <= len(value)


@pytest.mark.parametrize("text", ["*", "**", "***"])
def test_only_star_runs_match_everything(text: str) -> None:
    assert IdPattern(text).matches_everything


@pytest.mark.parametrize("text", ["", "a", "a*", "*a", "*/*"])
def test_other_patterns_do_not_match_everything(text: str) -> None:
    assert not IdPattern(text).matches_everything


def test_compile_pattern_returns_equal_patterns() -> None:
    assert compile_pattern("car/*") == IdPattern("car/*")
    assert compile_pattern("car/*") is compile_pattern("car/*")


operations = st.lists(
    st.tuples(st.booleans(), patterns, st.integers(min_value=0, max_value=2)), max_size=30
)


@given(operations, st.lists(ids, min_size=1, max_size=10))
def test_index_finds_what_brute_force_finds(
    steps: list[tuple[bool, str, int]], probes: list[str]
) -> None:
    index: PatternIndex[int] = PatternIndex()
    model: set[tuple[str, int]] = set()
    for add, text, value in steps:
        if add:
            index.add(compile_pattern(text), value)
            model.add((text, value))
        else:
            index.remove(compile_pattern(text), value)
            model.discard((text, value))
    assert bool(index) == bool(model)
    for probe in probes:
        expected = sorted(entry for entry in model if reference(entry[0], probe))
        assert sorted(index.match(probe)) == expected


def test_index_match_returns_a_fresh_list() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add(compile_pattern("car/1"), "x")
    index.match("car/1").clear()
    assert index.match("car/1") == [("car/1", "x")]
