"""Objects as the client hands them out: a plain dataclass over the wire's short keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUS_NAMES = {"con": "connected", "dis": "disconnected"}


@dataclass
class HiveObject:
    id: str
    lab: str = ""
    loc: dict[str, Any] = field(default_factory=dict)
    dat: dict[str, Any] = field(default_factory=dict)
    cst: str = "dis"
    tds: list[str] = field(default_factory=list)

    @property
    def connection_status(self) -> str:
        return STATUS_NAMES.get(self.cst, self.cst)

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> HiveObject:
        return cls(
            id=value["id"],
            lab=value.get("lab", ""),
            loc=dict(value.get("loc") or {}),
            dat=dict(value.get("dat") or {}),
            cst=value.get("cst", "dis"),
            tds=list(value.get("tds") or []),
        )
