"""Replicated changes: every state change the hub makes, as data that can travel a log.

A request handler decides what should change (validating it against the state it
sees) and commits a change; the hub applies changes in log order, and only applying
changes state. On one node the log is a direct call. In a cluster the log is a
JetStream stream: every node applies the same changes in the same order, so every
node computes the same state and the same presence transitions, and notifies its
own clients.

Records travel whole (the merged realm or object), not as patches: the stream keeps
only the last message of each entity's subject, so that message must be the whole
current state. Concurrent writers to one entity are serialised by the stream's
expected-last-subject-sequence check, not by merging.

Presence events (`server.model.presence`) are changes too: a provider up or down, a node
lost, time passing. So are token revocations (`server.model.revocations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from hivectl.core.wire import Location
from server.model.presence import NodeLost, ProviderDown, ProviderUp, Tick
from server.model.records import compact_dat
from server.model.revocations import Revocation


@dataclass(frozen=True, slots=True)
class RealmPut:
    """A realm created (when it does not exist) or replaced by its new state."""

    realm: str
    lab: str
    dat: dict[str, Any]
    incarnation: str
    """Chosen at creation and kept by updates: objects name the realm life they belong to."""
    at: float


@dataclass(frozen=True, slots=True)
class RealmRemoved:
    realm: str
    at: float


@dataclass(frozen=True, slots=True)
class ObjectPut:
    """An object created (when it does not exist) or replaced by its new state."""

    realm: str
    id: str
    lab: str
    loc: Location
    dat: bytes
    """As JSON text (`ObjectRecord.dat_json`): an update that keeps it copies nothing."""
    tds: tuple[str, ...]
    realm_incarnation: str
    at: float


@dataclass(frozen=True, slots=True)
class ObjectRemoved:
    realm: str
    id: str
    at: float


@dataclass(frozen=True, slots=True)
class LeaseRenewed:
    """A node is alive (cluster only; the hub ignores it)."""

    node: str
    at: float


Change: TypeAlias = (
    RealmPut
    | RealmRemoved
    | ObjectPut
    | ObjectRemoved
    | ProviderUp
    | ProviderDown
    | NodeLost
    | Tick
    | LeaseRenewed
    | Revocation
)

_KINDS: dict[str, type[Change]] = {
    "realm": RealmPut,
    "realm-": RealmRemoved,
    "obj": ObjectPut,
    "obj-": ObjectRemoved,
    "up": ProviderUp,
    "down": ProviderDown,
    "lost": NodeLost,
    "tick": Tick,
    "lease": LeaseRenewed,
    "revoke": Revocation,
}
_NAMES = {kind: name for name, kind in _KINDS.items()}


def encode_change(change: Change) -> bytes:
    fields = {name: getattr(change, name) for name in change.__slots__}
    if isinstance(change, ObjectPut):
        fields["loc"] = change.loc.to_wire()
        fields["dat"] = orjson.Fragment(change.dat)
    return orjson.dumps({"k": _NAMES[type(change)], **fields})


def decode_change(data: bytes) -> Change:
    """The change in a log message; ValueError when it is not one."""
    try:
        fields = orjson.loads(data)
        kind = _KINDS[fields.pop("k")]
        if kind is ProviderUp:
            fields["patterns"] = tuple(tuple(pair) for pair in fields["patterns"])
        elif kind is ObjectPut:
            fields["loc"] = Location.from_wire(fields["loc"])
            fields["dat"] = compact_dat(fields["dat"])
            fields["tds"] = tuple(fields["tds"])
        return kind(**fields)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a change: {exc}") from None
