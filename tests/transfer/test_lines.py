"""The export format: what a line holds, what an import refuses, and the ``cre`` a line
becomes (the rules that keep a round trip exact)."""

from __future__ import annotations

import orjson

from hivectl.client import HivekitError
from hivectl.transfer.lines import create_message, export_line, parse_lines
from hivectl.transfer.operations import failure_lines, select

LOCATED = {
    "lon": -0.12,
    "lat": 51.5,
    "acc": 3,
    "spe": 0,
    "hea": 0,
    "alt": 0,
    "alc": 0,
    "gcs": "",
    "tim": "2026-01-02T03:04:05Z",
}


def server_object(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "riders/jo",
        "lab": "Jo",
        "loc": dict(LOCATED),
        "dat": {"b": 1, "a": {"x": None}},
        "cst": "con",
        "tds": ["t1"],
    }
    return {**base, **fields}


def test_a_line_is_the_server_object_without_cst_in_a_fixed_key_order() -> None:
    obj = server_object()
    line = export_line({"cst": "dis", **obj})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert list(orjson.loads(line)) == ["id", "lab", "loc", "dat", "tds"]
    assert line == orjson.dumps({k: v for k, v in obj.items() if k != "cst"}) + b"\n"
    assert list(orjson.loads(line)["dat"]) == ["b", "a"]  # the server's key order stays


def test_a_parsed_line_fills_defaults_and_ignores_cst() -> None:
    parsed = parse_lines([b'{"id":"a"}', b"", b'{"id":"b","cst":"con","lab":"B"}'])
    assert parsed.problems == []
    assert parsed.objects == [
        {"id": "a", "lab": "", "loc": {}, "dat": {}, "tds": []},
        {"id": "b", "lab": "B", "loc": {}, "dat": {}, "tds": []},
    ]


def test_every_bad_line_is_named_with_its_number() -> None:
    lines = [
        b"nope",
        b"[1]",
        b'{"id":""}',
        b'{"id":"a","lab":3}',
        b'{"id":"a","loc":[]}',
        b'{"id":"a","dat":"x"}',
        b'{"id":"a","tds":[1]}',
        b'{"id":"a","extra":1}',
        b'{"id":"a"}',
        b'{"id":"a"}',
    ]
    parsed = parse_lines(lines)
    assert [problem.split(":", 1)[0] for problem in parsed.problems] == [
        f"line {n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 10)
    ]
    assert "not JSON" in parsed.problems[0]
    assert "unknown key 'extra'" in parsed.problems[7]
    assert "already on line 9" in parsed.problems[8]
    assert [obj["id"] for obj in parsed.objects] == ["a"]


def test_a_location_never_set_is_left_out_so_the_server_does_not_stamp_it() -> None:
    never_set = {**{key: 0 for key in LOCATED if key not in ("gcs", "tim")}, "gcs": "", "tim": ""}
    (never,) = parse_lines([export_line(server_object(loc=never_set))]).objects
    assert "loc" not in create_message("r", never)
    (located,) = parse_lines([export_line(server_object())]).objects
    message = create_message("r", located)
    assert message == {
        "typ": "obj",
        "act": "cre",
        "rea": "r",
        "id": "riders/jo",
        "lab": "Jo",
        "dat": {"b": 1, "a": {"x": None}},
        "tds": ["t1"],
        "loc": LOCATED,
    }


def test_over_an_existing_object_data_keys_the_line_lacks_are_deleted() -> None:
    (obj,) = parse_lines([b'{"id":"a","dat":{"keep":1}}']).objects
    current = server_object(id="a", dat={"keep": 0, "stale": 2})
    assert create_message("r", obj, current)["dat"] == {"keep": 1, "stale": None}


def test_patterns_select_ids_in_listing_order() -> None:
    listing = {"riders/b": {}, "vans/1": {}, "riders/a": {}, "riders*": {}}
    assert select(listing, ["riders/*"]) == ["riders/b", "riders/a"]
    assert select(listing, ["vans/1", "riders/a"]) == ["vans/1", "riders/a"]
    assert select(listing, ["riders*"]) == ["riders/b", "riders/a", "riders*"]
    assert select(listing, ["*"]) == list(listing)


def test_failures_are_grouped_by_reason_with_the_first_ids() -> None:
    failed = [
        (f"v{i}", HivekitError(403, f"permission denied: C on london/v{i}")) for i in range(7)
    ] + [("big", HivekitError(413, "too large: 70000 bytes"))]
    assert failure_lines(failed) == [
        "403 permission denied: C on london/<id>: 7 (v0, v1, v2, v3, v4, ...)",
        "413 too large: 70000 bytes: 1 (big)",
    ]
