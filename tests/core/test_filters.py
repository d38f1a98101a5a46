from collections.abc import Mapping

import pytest

from hivectl.core.filters import (
    AttributeFilter,
    FilterError,
    FilterValue,
    all_match,
    parse_filters,
)


def passes(text: str, data: Mapping[str, object], **fields: str) -> bool:
    """Whether an object with `data` (and id car/1, label Car, status con unless given)
    passes the filter `text`."""
    return AttributeFilter.parse(text).matches(
        fields.get("object_id", "car/1"),
        fields.get("label", "Car"),
        fields.get("status", "con"),
        data,
    )


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "op"),
    [
        ("speed=5", "speed", "="),
        ("speed!=5", "speed", "!="),
        ("speed>5", "speed", ">"),
        ("speed<5", "speed", "<"),
        ("speed>=5", "speed", ">="),
        ("speed<=5", "speed", "<="),
    ],
)
def test_parse_reads_every_operator(text: str, key: str, op: str) -> None:
    assert AttributeFilter.parse(text) == AttributeFilter(key, op, 5)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'name="Jo \"Jr\""', 'Jo "Jr"'),
        (r'path="a\\b"', "a\\b"),
        (r'path="ends\\"', "ends\\"),
        ('name="a=b<c>!"', "a=b<c>!"),
        ('name=""', ""),
        ('name=" padded "', " padded "),
        ('name="true"', "true"),
        ('name="null"', "null"),
        ('name="5"', "5"),
        ('name="é ✓"', "é ✓"),
    ],
)
def test_parse_quoted_strings_with_escapes(text: str, value: str) -> None:
    assert AttributeFilter.parse(text).value == value


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", 0), ("-3", -3), ("2.5", 2.5), ("1e3", 1000.0), ("-0.5E-2", -0.005), ("12E+1", 120.0)],
)
def test_parse_json_numbers(raw: str, value: float) -> None:
    parsed = AttributeFilter.parse(f"n={raw}").value
    assert parsed == value
    assert type(parsed) is type(value)


def test_integers_stay_exact() -> None:
    big = 2**53 + 1
    assert AttributeFilter.parse(f"n={big}").value == big
    assert passes(f"n={big}", {"n": big})
    assert not passes(f"n={big}", {"n": big - 1})


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("scooter", "scooter"),
        ("2024-01-01", "2024-01-01"),
        ("New York", "New York"),
        ("car/1", "car/1"),
        (".5", ".5"),
        ("+5", "+5"),
        ("007", "007"),
        ("True", "True"),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_parse_bare_words(raw: str, value: FilterValue) -> None:
    parsed = AttributeFilter.parse(f"k={raw}").value
    assert parsed == value
    assert type(parsed) is type(value)


def test_parse_trims_whitespace_around_key_and_value() -> None:
    assert AttributeFilter.parse(" speed >= 5 ") == AttributeFilter("speed", ">=", 5)
    assert AttributeFilter.parse('label = " x "') == AttributeFilter("label", "=", " x ")


def test_parse_special_keys_and_other_dollar_keys() -> None:
    assert AttributeFilter.parse("$id=car/1") == AttributeFilter("$id", "=", "car/1")
    assert AttributeFilter.parse("$cst!=dis") == AttributeFilter("$cst", "!=", "dis")
    assert AttributeFilter.parse("$lab>=M") == AttributeFilter("$lab", ">=", "M")
    assert AttributeFilter.parse("$foo=1") == AttributeFilter("$foo", "=", 1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("speed>>", "a bare value cannot hold"),
        ("a==b", "a bare value cannot hold"),
        ("a=b<c", "a bare value cannot hold"),
        ('a=b"c', "a bare value cannot hold"),
        ("speed", "no operator"),
        ("", "no operator"),
        ("=5", "no key"),
        ("  >5", "no key"),
        ("a!b", "unknown operator"),
        ("a!", "unknown operator"),
        ("a=", "no value"),
        ("a=  ", "no value"),
        ('a="open', "missing closing quote"),
        ('a="ends in backslash\\"', "missing closing quote"),
        ('a="x"y', "text after the closing quote"),
        ('a="x""', "text after the closing quote"),
        (r'a="\n"', r"unknown escape \\n"),
        ("a=1e999", "number out of range"),
        ("a=" + "1" * 5000, "number too long"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(FilterError, match=r'^atr: cannot parse ".*": ' + reason):
        AttributeFilter.parse(text)


def test_parse_error_quotes_the_filter_text() -> None:
    with pytest.raises(FilterError) as caught:
        AttributeFilter.parse("speed>>")
    assert str(caught.value).startswith('atr: cannot parse "speed>>": ')


def test_constructing_with_an_unknown_operator_fails() -> None:
    with pytest.raises(FilterError, match="unknown operator"):
        AttributeFilter("a", "==", 1)


def test_parse_filters_takes_a_list_of_strings() -> None:
    assert parse_filters([]) == ()
    assert parse_filters(["a=1", "b!=x"]) == (
        AttributeFilter("a", "=", 1),
        AttributeFilter("b", "!=", "x"),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a=1", "expected a list of filter strings"),
        ({"a": 1}, "expected a list of filter strings"),
        (None, "expected a list of filter strings"),
        (["a=1", 2], "filter 1 is not a string"),
        (["a=1", "b>>"], 'cannot parse "b>>"'),
    ],
)
def test_parse_filters_errors(value: object, message: str) -> None:
    with pytest.raises(FilterError, match=f"^atr: {message}"):
        parse_filters(value)


# --- matching ---------------------------------------------------------------------------


def test_equality_compares_numbers_by_value_but_never_across_kinds() -> None:
    assert passes("speed=5", {"speed": 5})
    assert passes("speed=5", {"speed": 5.0})
    assert passes("speed=2.5", {"speed": 2.5})
    assert not passes("speed=5", {"speed": 6})
    assert not passes("speed=5", {"speed": "5"})
    assert not passes('speed="5"', {"speed": 5})
    assert not passes("flag=1", {"flag": True})
    assert not passes("flag=true", {"flag": 1})
    assert passes("flag=true", {"flag": True})
    assert not passes("flag=false", {"flag": 0})


def test_not_equal_is_the_negation_of_equal() -> None:
    assert passes("speed!=5", {"speed": 6})
    assert not passes("speed!=5", {"speed": 5.0})
    assert passes("speed!=5", {"speed": "5"})
    assert passes("flag!=1", {"flag": True})
    assert passes("speed!=5", {})


def test_missing_key_counts_as_null() -> None:
    assert passes("k=null", {})
    assert not passes("k=null", {"k": 0})
    assert not passes("k=null", {"k": ""})
    assert not passes("k=null", {"k": False})
    assert passes("k!=null", {"k": 0})
    assert not passes("k!=null", {})


@pytest.mark.parametrize("text", ["k=1", "k>1", "k<1", "k>=1", "k<=1", 'k="x"', "k<z", "k=false"])
def test_missing_key_fails_every_operator_but_not_equal(text: str) -> None:
    assert not passes(text, {"other": 1})


def test_ordering_numbers_by_value() -> None:
    assert passes("speed>5", {"speed": 6})
    assert not passes("speed>5", {"speed": 5})
    assert passes("speed>=5", {"speed": 5.0})
    assert not passes("speed>=5", {"speed": 4.99})
    assert passes("speed<5", {"speed": -3})
    assert not passes("speed<5", {"speed": 5})
    assert passes("speed<=2.5", {"speed": 2.5})
    assert not passes("speed<=2.5", {"speed": 2.6})
    assert passes("speed>1e3", {"speed": 1001})


def test_ordering_strings_lexicographically() -> None:
    assert passes("name>b", {"name": "c"})
    assert not passes("name>b", {"name": "a"})
    assert passes("name>b", {"name": "ba"})
    assert passes("name<=b", {"name": "b"})
    assert passes("since>=2024-01-01", {"since": "2024-02-01"})
    assert not passes("since>=2024-01-01", {"since": "2023-12-31"})
    assert passes("name<a", {"name": "Z"})  # by code point: upper case sorts first


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("speed>5", "6"),
        ('speed<"9"', 5),
        ("speed<5", True),  # a bool is not the number 1
        ("speed>=false", False),
        ("speed<=null", None),
        ("speed>1", [2]),
        ("speed>1", {"v": 2}),
    ],
)
def test_ordering_across_kinds_never_holds(text: str, value: object) -> None:
    assert not passes(text, {"speed": value})


def test_objects_and_lists_equal_nothing() -> None:
    assert not passes("tags=x", {"tags": ["x"]})
    assert passes("tags!=x", {"tags": ["x"]})
    assert not passes("pos=null", {"pos": {}})


def test_special_keys_read_the_object_not_its_data() -> None:
    data = {"$id": "other", "$cst": "dis", "$lab": "Other", "$foo": 1}
    assert passes("$id=car/1", data)
    assert not passes("$id=car/2", data)
    assert passes("$cst=con", data)
    assert passes("$cst=dis", data, status="dis")
    assert passes("$lab=Car", data)
    assert passes("$lab>B", data)
    assert passes("$foo=1", data)


def test_all_match_requires_every_filter() -> None:
    filters = parse_filters(["$cst=con", "speed>5"])
    assert all_match(filters, "car/1", "Car", "con", {"speed": 6})
    assert not all_match(filters, "car/1", "Car", "dis", {"speed": 6})
    assert not all_match(filters, "car/1", "Car", "con", {"speed": 5})
    assert all_match((), "car/1", "Car", "dis", {})
