"""The realm and object records the server keeps in memory and hands to storage.

Records are plain mutable objects owned by the hub; storage receives them to persist
and gives them back at start-up. An object's ``cst`` is not stored here: it is
derived from the presence engine whenever the object is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from hivectl.core.wire import EMPTY_LOCATION, Location


class ObjectRecord:
    """An object's state, its ``dat`` kept as JSON text (`dat_json`).

    A realm holds an object's ``dat`` as long as the object lives, and as a dict even one
    key costs 184 bytes; as text it costs 48, which at 100,000 objects is more than a
    tenth of the server's memory per object. Mostly it only travels: an update of the
    location keeps the text (`ObjectPut` carries it), and `to_wire` and `stored` hand it
    to orjson unparsed (`orjson.Fragment`), so clients, storage and the cluster log get
    the bytes the dict would have rendered. What looks inside (filters, ``fie``, a ``dat``
    merge) reads `dat`, a dict parsed anew each time.
    """

    __slots__ = ("dat_json", "id", "lab", "loc", "tds", "updated_at")

    def __init__(
        self,
        id: str,
        lab: str = "",
        loc: Location = EMPTY_LOCATION,
        dat: dict[str, Any] | None = None,
        tds: tuple[str, ...] = (),
        updated_at: float = 0.0,
    ) -> None:
        self.id = id
        self.lab = lab
        self.loc = loc
        self.dat_json = compact_dat(dat or {})
        self.tds = tds
        self.updated_at = updated_at

    @property
    def dat(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.dat_json)
        return value

    @dat.setter
    def dat(self, value: dict[str, Any]) -> None:
        self.dat_json = compact_dat(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectRecord):
            return NotImplemented
        return (self.id, self.lab, self.loc, self.dat, self.tds, self.updated_at) == (
            other.id,
            other.lab,
            other.loc,
            other.dat,
            other.tds,
            other.updated_at,
        )

    def __repr__(self) -> str:
        return (
            f"ObjectRecord(id={self.id!r}, lab={self.lab!r}, loc={self.loc!r},"
            f" dat={self.dat!r}, tds={self.tds!r}, updated_at={self.updated_at!r})"
        )

    def stored(self) -> dict[str, Any]:
        """What storage keeps of the object (and `from_stored` reads back)."""
        return {
            "lab": self.lab,
            "loc": self.loc.to_wire(),
            "dat": orjson.Fragment(self.dat_json),
            "tds": self.tds,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_stored(cls, object_id: str, body: dict[str, Any]) -> ObjectRecord:
        """The record `stored` wrote (TypeError or KeyError when it is not one)."""
        return cls(
            object_id,
            body["lab"],
            Location.from_wire(body["loc"]),
            body["dat"],
            tuple(body["tds"]),
            body["updated_at"],
        )

    def to_wire(self, cst: str) -> dict[str, Any]:
        """The object as clients see it: the documented keys and nothing else."""
        return {
            "id": self.id,
            "lab": self.lab,
            "loc": self.loc.to_wire(),
            "dat": orjson.Fragment(self.dat_json),
            "cst": cst,
            "tds": self.tds,
        }


_EMPTY_DAT = b"{}"


def compact_dat(dat: dict[str, Any]) -> bytes:
    """`dat` as an `ObjectRecord` keeps it; an empty one shared.

    Copied out of orjson's result, which sits in a malloc buffer of 1 KiB shrunk in
    place: 100,000 of those kept took 4 KB each, the copies 57 bytes.
    """
    return memoryview(orjson.dumps(dat)).tobytes() if dat else _EMPTY_DAT


@dataclass(slots=True)
class RealmRecord:
    id: str
    lab: str = ""
    dat: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, ObjectRecord] = field(default_factory=dict)
    """Objects in creation order (the order `lis` reports)."""
    incarnation: str = ""
    """Which life of this realm id it is: objects written to an earlier life (deleted,
    then created again) are ignored when a cluster log replays them."""

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "lab": self.lab, "dat": self.dat}
