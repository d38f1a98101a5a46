"""An object's ``dat`` kept as JSON text: what clients, storage and the cluster log get of it
is what the dict gave them before, byte for byte."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from hivectl.core.wire import Location
from server.model.changes import ObjectPut, decode_change, encode_change
from server.model.records import ObjectRecord, compact_dat

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
dats = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def as_dict(record: ObjectRecord, dat: dict[str, Any], cst: str) -> dict[str, Any]:
    """The wire form when ``dat`` was a dict."""
    return {
        "id": record.id,
        "lab": record.lab,
        "loc": record.loc.to_wire(),
        "dat": dat,
        "cst": cst,
        "tds": record.tds,
    }


@given(dats)
def test_the_wire_form_is_the_bytes_the_dict_rendered(dat: dict[str, Any]) -> None:
    record = ObjectRecord("o/1", "One", Location(1.5, -2.25), dat, ("t",), 5.0)
    assert orjson.dumps(record.to_wire("con")) == orjson.dumps(as_dict(record, dat, "con"))
    assert record.dat == dat


@given(dats)
def test_stored_and_read_back_it_is_the_same_record(dat: dict[str, Any]) -> None:
    record = ObjectRecord("o/1", "One", Location(1.5, -2.25), dat, ("t",), 5.0)
    body = orjson.dumps(record.stored())
    assert orjson.loads(body)["dat"] == dat
    assert ObjectRecord.from_stored("o/1", orjson.loads(body)) == record


@given(dats)
def test_the_cluster_log_carries_dat_as_a_json_object(dat: dict[str, Any]) -> None:
    """As it did when ``dat`` was a dict: a node of either kind reads the other's log."""
    change = ObjectPut("r", "o/1", "", Location(), compact_dat(dat), (), "i1", 5.0)
    message = encode_change(change)
    assert orjson.loads(message)["dat"] == dat
    assert decode_change(message) == change


def test_reading_dat_gives_a_copy_and_only_assigning_changes_it() -> None:
    record = ObjectRecord("o/1", dat={"battery": 57})
    record.dat["battery"] = 1
    assert record.dat == {"battery": 57}
    record.dat = {"battery": 56, "charging": True}
    assert orjson.loads(orjson.dumps(record.to_wire("dis")))["dat"] == {
        "battery": 56,
        "charging": True,
    }


def test_objects_without_dat_share_one() -> None:
    assert ObjectRecord("a").dat_json is ObjectRecord("b", dat={}).dat_json
