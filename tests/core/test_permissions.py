"""The `per` and `dpv` claims and their CLI flags (protocol.md §2.1, §7, §8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.patterns import matches
from hivectl.core.permissions import (
    ClaimError,
    Permissions,
    ProviderPatterns,
    dpv_claim_from_flags,
    parse_grant,
    parse_provider_flag,
    per_claim_from_grants,
)

PER = "claim per is invalid: "
DPV = "claim dpv is invalid: "
RIDER = {"london": {"deliveryRiders/*": "RU", "depots/main": "R"}, "*": {"public/*": "R"}}


# --- parsing `per` -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "text"),
    [
        ("CRUD", PER + "expected an object, got string"),
        (None, PER + "expected an object, got null"),
        ([], PER + "expected an object, got array"),
        ({"x": "R"}, PER + 'realm "x": expected an object, got string'),
        ({"x": ["*"]}, PER + 'realm "x": expected an object, got array'),
        ({"x": {"*": 4}}, PER + 'realm "x": letters must be a string, got number'),
        ({"x": {"*": None}}, PER + 'realm "x": letters must be a string, got null'),
        ({"x": {"*": "CX"}}, PER + 'realm "x": letters must be from CRUD, got "CX"'),
        ({"x": {"*": "r"}}, PER + 'realm "x": letters must be from CRUD, got "r"'),
        ({"x": {1: "R"}}, PER + 'realm "x": id patterns must be strings, got number'),
        ({2: {"*": "R"}}, PER + "realm patterns must be strings, got number"),
        ({'a"b': {"*": "X"}}, PER + 'realm "a\\"b": letters must be from CRUD, got "X"'),
    ],
)
def test_malformed_per_is_refused_with_the_protocol_text(claim: object, text: str) -> None:
    with pytest.raises(ClaimError) as caught:
        Permissions.parse(claim)
    assert str(caught.value) == text
    assert caught.value.claim == "per"


def test_claim_error_is_a_value_error() -> None:
    assert issubclass(ClaimError, ValueError)


def test_empty_letters_and_empty_claims_are_valid_and_grant_nothing() -> None:
    permissions = Permissions.parse({"x": {"*": ""}, "y": {}})
    assert not permissions.allows("R", "x", "a")
    assert not permissions.has_any("x")
    assert not permissions.has_any("y")
    assert Permissions.parse({}) == Permissions.nothing()


def test_to_claim_round_trips_with_letters_in_crud_order() -> None:
    permissions = Permissions.parse({"london": {"car/*": "UC", "bike/1": "DRC"}, "*": {"*": ""}})
    claim = permissions.to_claim()
    assert claim == {"london": {"car/*": "CU", "bike/1": "CRD"}, "*": {"*": ""}}
    assert Permissions.parse(claim) == permissions


def test_unrestricted_has_no_claim_and_differs_from_everything_granted() -> None:
    assert Permissions.unrestricted().to_claim() is None
    assert Permissions.unrestricted().is_unrestricted
    assert not Permissions.parse({"*": {"*": "CRUD"}}).is_unrestricted
    assert Permissions.unrestricted() != Permissions.parse({"*": {"*": "CRUD"}})


def test_equality_ignores_claim_order_and_letter_order() -> None:
    first = Permissions.parse({"a": {"x": "RC"}, "b": {"y": "U"}})
    second = Permissions.parse({"b": {"y": "U"}, "a": {"x": "CR"}})
    assert first == second
    assert hash(first) == hash(second)
    assert first != Permissions.parse({"a": {"x": "R"}, "b": {"y": "U"}})


# --- checks ---------------------------------------------------------------------------------


def test_allows_needs_realm_id_and_letter_on_one_entry() -> None:
    permissions = Permissions.parse(RIDER)
    assert permissions.allows("U", "london", "deliveryRiders/johndoe-123")
    assert permissions.allows("R", "london", "depots/main")
    assert not permissions.allows("U", "london", "depots/main")
    assert not permissions.allows("C", "london", "deliveryRiders/johndoe-123")
    assert not permissions.allows("R", "paris", "deliveryRiders/johndoe-123")
    assert not permissions.allows("R", "London", "depots/main")


def test_a_star_realm_applies_to_every_realm() -> None:
    permissions = Permissions.parse(RIDER)
    assert permissions.allows("R", "paris", "public/menu")
    assert permissions.allows("R", "london", "public/menu")
    assert not permissions.allows("U", "paris", "public/menu")


def test_letters_from_several_entries_add_up() -> None:
    permissions = Permissions.parse({"*": {"car/*": "R"}, "london": {"car/*": "U"}})
    assert permissions.allows("R", "london", "car/1")
    assert permissions.allows("U", "london", "car/1")
    assert not permissions.allows("U", "paris", "car/1")


def test_realm_rights_need_a_pattern_matching_every_id() -> None:
    permissions = Permissions.parse({"london": {"car/*": "CRUD", "**": "R"}, "p*": {"*": "D"}})
    assert permissions.allows_realm("R", "london")
    assert not permissions.allows_realm("U", "london")
    assert permissions.allows_realm("D", "paris")
    assert not permissions.allows_realm("D", "london")


def test_has_any_with_and_without_a_letter() -> None:
    permissions = Permissions.parse({"london": {"car/1": "U"}, "paris": {"*": ""}})
    assert permissions.has_any("london")
    assert permissions.has_any("london", "U")
    assert not permissions.has_any("london", "R")
    assert not permissions.has_any("paris")
    assert not permissions.has_any("rome")


def test_unrestricted_allows_everything_and_nothing_allows_nothing() -> None:
    everything, nothing = Permissions.unrestricted(), Permissions.nothing()
    assert everything.allows("D", "any", "thing")
    assert everything.allows_realm("C", "any")
    assert everything.has_any("any", "U")
    assert not nothing.allows("R", "any", "thing")
    assert not nothing.allows_realm("R", "any")
    assert not nothing.has_any("any")


def test_answers_stay_right_past_the_realm_cache_bound() -> None:
    permissions = Permissions.parse({"r1*": {"car/*": "R"}})
    for number in range(3000):
        expected = str(number).startswith("1")
        assert permissions.allows("R", f"r{number}", "car/7") == expected
    assert permissions.allows("R", "r1", "car/7")
    assert len(permissions._views) <= 1024  # bounded: realm ids come from clients


ALPHABET = "ab/*"
texts = st.text(alphabet=ALPHABET, max_size=4)
names = st.text(alphabet="ab/", max_size=4)
letters = st.text(alphabet="CRUD", max_size=3)
claims = st.dictionaries(texts, st.dictionaries(texts, letters, max_size=4), max_size=4)


def brute_force(claim: dict[str, dict[str, str]], realm: str) -> list[tuple[str, str]]:
    return [
        (pattern, granted)
        for realm_pattern, grants in claim.items()
        if matches(realm_pattern, realm)
        for pattern, granted in grants.items()
    ]


@given(claims, names, names, st.sampled_from("CRUD"))
def test_checks_agree_with_the_definition(
    claim: dict[str, dict[str, str]], realm: str, object_id: str, letter: str
) -> None:
    permissions = Permissions.parse(claim)
    entries = brute_force(claim, realm)
    assert permissions.allows(letter, realm, object_id) == any(
        letter in granted and matches(pattern, object_id) for pattern, granted in entries
    )
    assert permissions.allows_realm(letter, realm) == any(
        letter in granted and set(pattern) == {"*"} for pattern, granted in entries
    )
    assert permissions.has_any(realm) == any(granted for _, granted in entries)
    assert permissions.has_any(realm, letter) == any(letter in g for _, g in entries)


# --- `dpv` ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "text"),
    [
        ([], DPV + "expected an object, got array"),
        ("x", DPV + "expected an object, got string"),
        ({"x": "car/*"}, DPV + 'realm "x": expected an array, got string'),
        ({"x": {"car/*": "R"}}, DPV + 'realm "x": expected an array, got object'),
        ({"x": [1]}, DPV + 'realm "x": id patterns must be strings, got number'),
        ({"x": [True]}, DPV + 'realm "x": id patterns must be strings, got boolean'),
        ({3: ["a"]}, DPV + "realm patterns must be strings, got number"),
    ],
)
def test_malformed_dpv_is_refused_with_the_protocol_text(claim: object, text: str) -> None:
    with pytest.raises(ClaimError) as caught:
        ProviderPatterns.parse(claim)
    assert str(caught.value) == text
    assert caught.value.claim == "dpv"


def test_dpv_entries_keep_claim_order_without_duplicates() -> None:
    providers = ProviderPatterns.parse({"london": ["b", "a", "b"], "*": ["gw/*", "a"]})
    assert providers.entries == (("london", "b"), ("london", "a"), ("*", "gw/*"), ("*", "a"))
    assert providers.to_claim() == {"london": ["b", "a"], "*": ["gw/*", "a"]}


def test_dpv_covers_matching_realm_and_id() -> None:
    providers = ProviderPatterns.parse({"london": ["deliveryRiders/*"], "*": ["gateways/1"]})
    assert providers.covers("london", "deliveryRiders/johndoe-123")
    assert not providers.covers("paris", "deliveryRiders/johndoe-123")
    assert providers.covers("paris", "gateways/1")
    assert not providers.covers("london", "gateways/2")


def test_dpv_truthiness_and_equality() -> None:
    assert not ProviderPatterns.empty()
    assert not ProviderPatterns.parse({"x": []})
    assert ProviderPatterns.parse({"x": ["a"]})
    assert ProviderPatterns.parse({"x": ["a", "b"]}) == ProviderPatterns.parse({"x": ["b", "a"]})
    assert ProviderPatterns.parse({"x": ["a"]}) != ProviderPatterns.parse({"y": ["a"]})


# --- CLI flags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("london:deliveryRiders/*=CRU", ("london", "deliveryRiders/*", "CRU")),
        ("london:a:b=c=UR", ("london", "a:b=c", "RU")),
        ("*:*=D", ("*", "*", "D")),
        ("x:y=", ("x", "y", "")),
    ],
)
def test_parse_grant(text: str, parsed: tuple[str, str, str]) -> None:
    assert parse_grant(text) == parsed


@pytest.mark.parametrize("text", ["london", "london=R", ":car=R", "london:=R", "london:car"])
def test_parse_grant_shows_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"REALM:PATTERN=LETTERS \(e\.g\. london:"):
        parse_grant(text)


def test_parse_grant_refuses_other_letters() -> None:
    with pytest.raises(ValueError, match='letters must be from CRUD, got "cru"') as caught:
        parse_grant("london:car/*=cru")
    assert "REALM:PATTERN=LETTERS" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("london:deliveryRiders/johndoe-123", ("london", "deliveryRiders/johndoe-123")),
        ("london:a:b=c", ("london", "a:b=c")),
    ],
)
def test_parse_provider_flag(text: str, parsed: tuple[str, str]) -> None:
    assert parse_provider_flag(text) == parsed


@pytest.mark.parametrize("text", ["london", ":car", "london:"])
def test_parse_provider_flag_shows_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"REALM:PATTERN \(e\.g\. london:deliveryRiders/"):
        parse_provider_flag(text)


def test_grants_merge_into_a_valid_per_claim() -> None:
    claim = per_claim_from_grants(["london:car/*=U", "london:car/*=RC", "*:*=R", "london:b=D"])
    assert claim == {"london": {"car/*": "CRU", "b": "D"}, "*": {"*": "R"}}
    assert Permissions.parse(claim).allows("C", "london", "car/1")


def test_provider_flags_merge_into_a_valid_dpv_claim() -> None:
    claim: dict[str, Any] = dpv_claim_from_flags(["london:a", "paris:b", "london:c", "london:a"])
    assert claim == {"london": ["a", "c"], "paris": ["b"]}
    assert ProviderPatterns.parse(claim).covers("paris", "b")
