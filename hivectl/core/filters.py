"""Attribute filters: the ``atr`` strings of `lis` and subscriptions (protocol.md §6.2).

A filter is ``<key><op><value>`` and an object passes a list of filters when it passes
every one of them.

Syntax
======

* The **key** is everything before the first operator character (``=``, ``!``, ``<``,
  ``>``), with surrounding whitespace trimmed. ``$id`` means the object id, ``$lab`` its
  label and ``$cst`` its connection status (``con``/``dis``); any other key, ``$``-prefixed
  or not, is a key of the object's ``dat``. A data key that holds an operator character
  cannot be filtered on.
* The **operator** is the longest of ``!=``, ``>=``, ``<=``, ``=``, ``>``, ``<`` found there.
* The **value** is the rest, surrounding whitespace trimmed:

  - ``"..."`` is a string; inside it ``\\"`` is a quote and ``\\\\`` a backslash. No other
    escapes exist, and a bare quote inside is an error.
  - a JSON number (``-3``, ``2.5``, ``1e3``) is a number. Integers stay exact integers. Other
    spellings (``.5``, ``+5``, ``007``) are not numbers: they are bare words.
  - ``true``, ``false`` and ``null`` are the JSON values; quote them to mean the words.
  - anything else is a bare word, taken as a string (``type=scooter``,
    ``since>=2024-01-01``). A bare word may not hold a quote or an operator character, so
    typos such as ``speed>>5`` or ``a==b`` are errors rather than odd comparisons.

Parse errors are `FilterError` with the text the client sees (``atr: cannot parse ...``).

Comparison
==========

Values have one of four kinds: number (bools are not numbers), string, bool, null. A missing
data key counts as null, as it does on the wire, where ``null`` deletes a key: ``k=null``
means "k is absent" and ``k!=null`` "k is present". There is no coercion between kinds: the
number ``5`` does not equal the string ``"5"``.

* ``=`` holds when both sides have the same kind and the same value; numbers compare by value
  (``5`` equals ``5.0``). Objects and lists in ``dat`` equal nothing.
* ``!=`` holds exactly when ``=`` does not, so it holds across kinds and for missing keys.
* ``<``, ``<=``, ``>``, ``>=`` hold only between two numbers (by value) or two strings (by
  Unicode code point). Any other pairing, missing keys included, does not hold.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeGuard

FilterValue = str | float | bool | None

_OPERATOR_CHARS = "=!<>"
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<")  # two-character ones first: longest wins
# the signs of `_order` under which each ordering operator holds
_ORDERINGS: dict[str, tuple[int, ...]] = {">": (1,), ">=": (0, 1), "<": (-1,), "<=": (-1, 0)}
_KEYWORDS: dict[str, FilterValue] = {"true": True, "false": False, "null": None}
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?P<fraction>\.[0-9]+)?(?P<exponent>[eE][+-]?[0-9]+)?")
_QUOTED_CHAR = re.compile(r'\\(.)|(")', re.DOTALL)
_FIRST_OPERATOR = re.compile(f"[{re.escape(_OPERATOR_CHARS)}]")


class FilterError(ValueError):
    """A filter that cannot be used; the message is the error text for the client."""


@dataclass(frozen=True, slots=True)
class AttributeFilter:
    """One parsed ``atr`` filter; see the module docstring for the rules."""

    key: str
    op: str
    value: FilterValue

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise FilterError(f"atr: unknown operator {self.op!r}")

    @classmethod
    def parse(cls, text: str) -> AttributeFilter:
        """The filter written as `text`; raises `FilterError`."""
        found = _FIRST_OPERATOR.search(text)
        if found is None:
            raise _cannot_parse(text, "no operator (=, !=, >, <, >=, <=)")
        key = text[: found.start()].strip()
        if not key:
            raise _cannot_parse(text, "no key before the operator")
        rest = text[found.start() :]
        op = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if op is None:
            raise _cannot_parse(text, "unknown operator (use =, !=, >, <, >=, <=)")
        return cls(key, op, _parse_value(text, rest[len(op) :].strip()))

    def matches(self, object_id: str, label: str, status: str, data: Mapping[str, object]) -> bool:
        """Whether an object with these fields passes the filter."""
        actual = _lookup(self.key, object_id, label, status, data)
        if self.op == "=":
            return _equal(actual, self.value)
        if self.op == "!=":
            return not _equal(actual, self.value)
        return _order(actual, self.value) in _ORDERINGS[self.op]


def parse_filters(value: object) -> tuple[AttributeFilter, ...]:
    """The filters of an ``atr`` JSON value (a list of strings); raises `FilterError`."""
    if not isinstance(value, list):
        raise FilterError("atr: expected a list of filter strings")
    filters = []
    for index, text in enumerate(value):
        if not isinstance(text, str):
            raise FilterError(f"atr: filter {index} is not a string")
        filters.append(AttributeFilter.parse(text))
    return tuple(filters)


def all_match(
    filters: Iterable[AttributeFilter],
    object_id: str,
    label: str,
    status: str,
    data: Mapping[str, object],
) -> bool:
    """Whether the object passes every filter (an empty list passes everything)."""
    return all(f.matches(object_id, label, status, data) for f in filters)


def _cannot_parse(text: str, reason: str) -> FilterError:
    return FilterError(f"atr: cannot parse {json.dumps(text, ensure_ascii=False)}: {reason}")


def _parse_value(text: str, raw: str) -> FilterValue:
    """The value part `raw` of the filter `text`, by the rules in the module docstring."""
    if raw.startswith('"'):
        return _parse_quoted(text, raw)
    if not raw:
        raise _cannot_parse(text, 'no value (write "" for the empty string)')
    if raw in _KEYWORDS:
        return _KEYWORDS[raw]
    number = _NUMBER.fullmatch(raw)
    if number is not None:
        return _parse_number(text, raw, integer=not (number["fraction"] or number["exponent"]))
    if any(char in _OPERATOR_CHARS or char == '"' for char in raw):
        raise _cannot_parse(text, "a bare value cannot hold =, !, <, > or a quote; quote it")
    return raw


def _parse_quoted(text: str, raw: str) -> str:
    """The string in the double-quoted `raw` (which starts with the opening quote)."""
    chars = []
    position = 1
    for escape in _QUOTED_CHAR.finditer(raw, 1):
        chars.append(raw[position : escape.start()])
        position = escape.end()
        if escape[2] is not None:  # the closing quote: it must end the value
            if position != len(raw):
                raise _cannot_parse(text, "text after the closing quote")
            return "".join(chars)
        if escape[1] not in ('"', "\\"):
            raise _cannot_parse(text, f'unknown escape \\{escape[1]} (only \\" and \\\\)')
        chars.append(escape[1])
    raise _cannot_parse(text, "missing closing quote")


def _parse_number(text: str, raw: str, *, integer: bool) -> float:
    """A JSON number: an exact int without fraction or exponent, a finite float otherwise."""
    try:
        number = int(raw) if integer else float(raw)
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise _cannot_parse(text, "number too long") from None
    if math.isinf(number):
        raise _cannot_parse(text, "number out of range")
    return number


def _lookup(
    key: str, object_id: str, label: str, status: str, data: Mapping[str, object]
) -> object:
    if key == "$id":
        return object_id
    if key == "$lab":
        return label
    if key == "$cst":
        return status
    return data.get(key)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """The comparison kind of a value: number, string, bool, null, or other (objects, lists)."""
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "null" if value is None else "other"


def _equal(actual: object, expected: FilterValue) -> bool:
    return _kind(actual) == _kind(expected) and actual == expected


def _order(actual: object, expected: FilterValue) -> int | None:
    """-1, 0 or 1 as `actual` is below, equal to or above `expected`; None if they don't order."""
    if isinstance(actual, str) and isinstance(expected, str):
        return (actual > expected) - (actual < expected)
    if _is_number(actual) and _is_number(expected):
        return (actual > expected) - (actual < expected)
    return None
