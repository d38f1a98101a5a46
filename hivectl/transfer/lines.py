"""The export format: one JSON object per line, one line per object, in creation order.

A line holds what a ``cre`` can carry back, in this order: ``id``, ``lab``, ``loc``, ``dat``,
``tds`` (protocol.md §6.2), exactly as the server returned them. ``cst`` is left out: it is
derived from presence, never written by clients. The realm is not in the line, so a file can
be imported into any realm.

Round trips are exact because the lines are the server's own values, serialised with orjson
(as the server does) and sent back unchanged, with two rules the server's ``cre`` imposes:

* **A location never set** has an empty ``tim`` (``loc`` of zeros). A ``cre`` carrying such
  a ``loc`` would get the server's current time, so `create_message` leaves ``loc`` out and
  the new object gets the same empty location.
* **``dat`` merges key by key**: a fresh object receives the line's ``dat`` as it is; an
  existing one (``--on-conflict update``) also gets ``null`` for each key the line lacks, so
  that it ends with the line's data and nothing else.

Imports are read whole and checked before anything is sent: a bad line names its number and
what is wrong with it, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hivectl.core.wire import request

EXPORTED_KEYS = ("id", "lab", "loc", "dat", "tds")
IGNORED_KEYS = frozenset({"cst"})
"""Accepted on import and dropped: ``object get --json`` output imports as it is."""


def export_line(obj: Mapping[str, Any]) -> bytes:
    """One object as the server returned it, as a line (newline included)."""
    return orjson.dumps({key: obj[key] for key in EXPORTED_KEYS if key in obj}) + b"\n"


@dataclass(frozen=True)
class ParsedLines:
    objects: list[dict[str, Any]]
    """Each with every exported key (defaults filled in), in file order."""
    problems: list[str]
    """``line N: ...`` for every line that cannot be imported."""


def parse_lines(lines: Iterable[bytes | str]) -> ParsedLines:
    """The objects of an export file, or what is wrong with it (blank lines are skipped)."""
    objects: list[dict[str, Any]] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc})")
            continue
        problem = _problem(value)
        if problem is not None:
            problems.append(f"line {number}: {problem}")
            continue
        object_id = value["id"]
        if object_id in first_line:
            problems.append(
                f"line {number}: id {object_id!r} is already on line {first_line[object_id]}"
            )
            continue
        first_line[object_id] = number
        objects.append(
            {
                "id": object_id,
                "lab": value.get("lab", ""),
                "loc": value.get("loc", {}),
                "dat": value.get("dat", {}),
                "tds": value.get("tds", []),
            }
        )
    return ParsedLines(objects, problems)


def _problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return "not a JSON object"
    unknown = sorted(set(value) - set(EXPORTED_KEYS) - IGNORED_KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r} (an object has {', '.join(EXPORTED_KEYS)})"
    if not isinstance(value.get("id"), str) or not value["id"]:
        return "id must be a non-empty string"
    if not isinstance(value.get("lab", ""), str):
        return "lab must be a string"
    for key in ("loc", "dat"):
        if not isinstance(value.get(key, {}), dict):
            return f"{key} must be an object"
    tds = value.get("tds", [])
    if not isinstance(tds, list) or not all(isinstance(task, str) for task in tds):
        return "tds must be a list of strings"
    return None


def create_message(
    realm: str, obj: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``cre`` that makes `obj` exist in `realm` as it is in the line; `current` is the
    object already there (None for a new one), whose extra ``dat`` keys it deletes."""
    data = dict(obj["dat"])
    if current is not None:
        data.update({key: None for key in current.get("dat", {}) if key not in data})
    timed = obj["loc"].get("tim") or obj["loc"].get("time")
    return request(
        "obj",
        "cre",
        rea=realm,
        id=obj["id"],
        lab=obj["lab"],
        dat=data,
        tds=list(obj["tds"]),
        loc=obj["loc"] if timed else None,
    )
