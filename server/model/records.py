"""The realm and object records the server keeps in memory and hands to storage.

Records are plain mutable objects owned by the hub; storage receives them to persist
and gives them back at start-up. An object's ``cst`` is not stored here: it is
derived from the presence engine whenever the object is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hivectl.core.wire import EMPTY_LOCATION, Location


@dataclass(slots=True)
class ObjectRecord:
    id: str
    lab: str = ""
    loc: Location = EMPTY_LOCATION
    dat: dict[str, Any] = field(default_factory=dict)
    tds: tuple[str, ...] = ()
    updated_at: float = 0.0

    def stored(self) -> dict[str, Any]:
        """What storage keeps of the object (and `from_stored` reads back)."""
        return {
            "lab": self.lab,
            "loc": self.loc.to_wire(),
            "dat": self.dat,
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
            "dat": self.dat,
            "cst": cst,
            "tds": self.tds,
        }


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
