"""Wire messages of the Hivekit protocol (protocol.md §4-§6): parse, validate, serialise.

Both directions carry frames that are JSON arrays of messages; the only exception is
the authentication frame, the raw text ``Bearer <jwt>``. Messages use short keys
(``typ``, ``act``, ``cid``, ``id``, ``rea``, ``dat``, ``lab``, ``loc``, ``tds``).

Validation happens in two steps, because an error must be reported with the ``cid``
and ``typ`` of the message that caused it whenever those can be read:

1. `decode_frame` turns the frame into a list; anything that is not a JSON array is
   a frame error (400) with no ``cid``.
2. `parse_request` checks one item of that list: it must be an object, ``typ`` and
   ``act`` must name a known action, and every envelope field present must have its
   type (``id``/``rea``/``lab`` strings, ``cid`` a string or an integer, ``tds`` a list
   of strings, ``loc`` an object of numbers). Payload rules that depend on the action
   (what ``dat`` must hold) are checked by the handler with the helpers below.

Clients spell their side here too: `request` and the ``dat`` helpers after it build what
a client sends, and the ``is_*`` recognisers tell apart what it receives (replies,
publications, subscription pushes). The server builds those pushes with the functions
beside them, so each shape is written once and pinned against protocol.md in
``tests/core/test_wire.py``.

JSON is decoded with orjson, which follows RFC 8259 strictly: ``NaN``/``Infinity``,
lone surrogates and nesting deeper than 1024 levels are rejected, so hostile frames
fail here as 400 instead of deep in a handler. Two more rules keep every accepted value
re-encodable, so that nothing stored can later break a reply or a push:

* Nesting is capped at `MAX_DEPTH`, far below orjson's 1024 for decoding, because orjson
  *encodes* at most 254 levels and the server wraps client data in a few levels of its
  own (a subscription push puts an object's ``dat`` five levels down).
* Numbers are IEEE doubles, as in JavaScript (the reference clients): integers past the
  64-bit range decode to the nearest double instead of failing, and a non-finite number
  (``1e999``) is invalid JSON. A ``cid`` that became a double is then a 400 like any
  other wrong ``cid``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypedDict, Unpack

import orjson

MAX_ID_LENGTH = 1024
"""Ids, realm ids and patterns longer than this are rejected (400)."""

MAX_DEPTH = 32
"""Levels of nesting a frame may have, the frame's own array included (deeper: 400)."""

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_KICKED = 4003
CLOSE_SLOW_CONSUMER = 4008
CLOSE_RATE_LIMITED = 4029
"""WebSocket close codes the server chooses (protocol.md §9; 1009 and 1007 are the
library's own; 1011 means the server failed). 4003 is ours, beyond protocol.md: an
operator disconnected the connection or revoked its token (README, "Operating")."""

ACTIONS: Mapping[str, frozenset[str]] = {
    "rea": frozenset({"cre", "rea", "lis", "upd", "del", "sub", "uns", "pub"}),
    "obj": frozenset({"cre", "rea", "lis", "upd", "del", "set"}),
    "sub": frozenset({"cre", "upd", "del"}),
    "sys": frozenset({"hbt", "sta", "pre", "aut"}),
    "adm": frozenset({"con", "dis", "rev", "rvl", "cst"}),
}
"""``adm`` is our extension for operators (`server.protocol.handlers.admin`), not Hivekit's."""

Message = dict[str, Any]


class WireError(Exception):
    """A message or frame the server cannot accept, with the reply's code and text."""

    def __init__(self, code: int, text: str, *, cid: object = None, typ: str | None = None):
        super().__init__(text)
        self.code = code
        self.text = text
        self.cid = cid
        self.typ = typ


@dataclass(slots=True)
class Request:
    """One validated message. Fields the client left out are None."""

    typ: str
    act: str
    cid: str | int | None
    id: str | None
    rea: str | None
    dat: Any
    lab: str | None
    loc: Mapping[str, Any] | None
    tds: list[str] | None
    has_dat: bool


def decode_frame(data: str | bytes) -> list[Any]:
    """The messages of a text frame; a frame error (400) otherwise."""
    if isinstance(data, bytes):
        raise WireError(400, "binary frames are not supported")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireError(400, f"frame is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise WireError(400, "frame must be a JSON array of messages")
    _check_depth(data, value, "frame")
    return value


def decode_json(data: str | bytes) -> Any:
    """Strict JSON decoding shared by the HTTP API; raises WireError (400)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireError(400, f"body is not valid JSON: {exc}") from None
    _check_depth(data, value, "body")
    return value


def _check_depth(data: str | bytes, value: object, what: str) -> None:
    """Reject `value` (decoded from `data`) if it nests deeper than `MAX_DEPTH`.

    Nesting needs an opening bracket per level, so a text with at most `MAX_DEPTH` of
    them (counted in C, strings included) cannot be too deep: most frames skip the walk.
    """
    if isinstance(data, str):
        brackets = data.count("[") + data.count("{")
    else:
        brackets = data.count(b"[") + data.count(b"{")
    if brackets <= MAX_DEPTH:
        return
    # Plain loops and exact type checks (JSON decodes to exact dicts and lists): this walk
    # runs over every frame of more than MAX_DEPTH brackets, a batch of updates included.
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        for container in level:
            for child in container.values() if type(container) is dict else container:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        if not deeper:
            return
        level = deeper
    raise WireError(400, f"{what} is nested deeper than {MAX_DEPTH} levels")


def encode(messages: list[Message]) -> bytes:
    """A frame as UTF-8 JSON bytes (sent as a text frame)."""
    return orjson.dumps(messages)


def parse_request(item: object) -> Request:
    """Validate the envelope of one message; raises WireError carrying cid and typ."""
    if not isinstance(item, dict):
        raise WireError(400, "message must be a JSON object")
    cid = item.get("cid")
    if cid is not None and (isinstance(cid, bool) or not isinstance(cid, str | int)):
        raise WireError(400, "cid must be a string or an integer")
    typ = item.get("typ")
    if not isinstance(typ, str) or typ not in ACTIONS:
        raise WireError(400, f"unknown type {_show(typ)}", cid=cid)
    act = item.get("act")
    if not isinstance(act, str) or act not in ACTIONS[typ]:
        raise WireError(400, f"unknown action {_show(act)} for type {typ}", cid=cid, typ=typ)
    try:
        return Request(
            typ=typ,
            act=act,
            cid=cid,
            id=_optional_id(item, "id"),
            rea=_optional_id(item, "rea"),
            dat=item.get("dat"),
            lab=_optional_string(item, "lab"),
            loc=_optional_location(item),
            tds=_optional_string_list(item, "tds"),
            has_dat="dat" in item,
        )
    except WireError as exc:
        exc.cid, exc.typ = cid, typ
        raise


def _show(value: object) -> str:
    text = orjson.dumps(value).decode() if value is not None else "null"
    return text if len(text) <= 40 else text[:37] + "..."


def _optional_id(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WireError(400, f"{key} must be a string")
    check_id(value, key)
    return value


def check_id(value: str, what: str) -> None:
    """Ids and patterns: non-empty, bounded length."""
    if not value:
        raise WireError(400, f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise WireError(400, f"{what} is longer than {MAX_ID_LENGTH} characters")


def _optional_string(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WireError(400, f"{key} must be a string")
    return value


def _optional_string_list(item: Mapping[str, Any], key: str) -> list[str] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
        raise WireError(400, f"{key} must be a list of strings")
    return value


def _optional_location(item: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = item.get("loc")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WireError(400, "loc must be an object")
    for key in LOCATION_NUMBERS:
        number = value.get(key)
        if number is not None and not is_number(number):
            raise WireError(400, f"loc.{key} must be a finite number")
    if not isinstance(value.get("gcs", ""), str | None):
        raise WireError(400, "loc.gcs must be a string")
    for key in ("tim", "time"):
        if not isinstance(value.get(key, ""), str | None):
            raise WireError(400, f"loc.{key} must be an ISO-8601 string")
    return value


def is_number(value: object) -> bool:
    """A finite JSON number (booleans are not numbers)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


class Location(NamedTuple):
    """An object's position as the server keeps it, every key present (protocol.md §6).

    A tuple, not the dict clients send: 112 bytes instead of 272, and the location is the
    largest part of an object the server holds (a realm of 100,000 objects keeps 100,000).
    Fields are in wire order, so `to_wire` renders the same JSON object as before.
    """

    lon: float = 0
    lat: float = 0
    acc: float = 0
    spe: float = 0
    hea: float = 0
    alt: float = 0
    alc: float = 0
    gcs: str = ""
    tim: str = ""

    def to_wire(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    @classmethod
    def from_wire(cls, loc: Mapping[str, Any]) -> Location:
        """A location stored or logged by `to_wire` (TypeError when it is not one)."""
        return cls(**loc)


LOCATION_NUMBERS = Location._fields[:7]
EMPTY_LOCATION = Location()
"""The location of an object that never sent one (shared: locations are immutable)."""


def normalize_location(loc: Mapping[str, Any], now: float) -> Location:
    """A location with every key present: numbers default 0, ``gcs`` "", ``tim`` now.

    ``now`` is formatted only when the client sent no time (formatting costs more than
    the rest of this function).
    """
    get = loc.get
    return Location(
        get("lon") or 0,
        get("lat") or 0,
        get("acc") or 0,
        get("spe") or 0,
        get("hea") or 0,
        get("alt") or 0,
        get("alc") or 0,
        get("gcs") or "",
        get("tim") or get("time") or iso8601(now),
    )


def require_object(value: object, what: str) -> dict[str, Any]:
    """A payload that must be a JSON object."""
    if not isinstance(value, dict):
        raise WireError(400, f"{what} must be an object")
    return value


def merge_data(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``dat`` merge rule: key by key, a null value deletes the key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def success(request: Request, dat: Any = None) -> Message:
    reply: Message = {"typ": request.typ, "act": request.act, "cid": request.cid, "res": "suc"}
    if dat is not None:
        reply["dat"] = dat
    return reply


def error(
    code: int, text: str, *, cid: object = None, typ: str | None = None, act: str | None = None
) -> Message:
    """An error message; without ``cid`` for failures of messages that had none."""
    reply: Message = {}
    if typ is not None:
        reply["typ"] = typ
    if act is not None:
        reply["act"] = act
    if cid is not None:
        reply["cid"] = cid
    reply.update(res="err", err=text, erc=code)
    return reply


PRESENCE_EVENT = "connectionStatusChanged"
"""The realm event the server publishes on every presence transition (protocol.md §6.4);
clients may subscribe to it, only the server publishes it."""

REALM_LIST = "sys"
"""The ``rea`` of a realm-list subscription (protocol.md §6.3): it follows every realm,
so it names none."""


# -- what a client sends ---------------------------------------------------------------


class RequestFields(TypedDict, total=False):
    """The envelope fields a request may carry besides ``typ`` and ``act`` (§4)."""

    id: str | None
    rea: str | None
    lab: str | None
    loc: Mapping[str, Any] | None
    dat: Any
    tds: list[str] | None
    cid: str | int | None


def request(typ: str, act: str, **fields: Unpack[RequestFields]) -> Message:
    """A request: ``typ`` and ``act``, then the fields given, in the order given.

    Fields that are None are left out, so callers pass their optional arguments straight
    through and send only what was asked for (an ``upd`` changes only the fields present).
    JSON objects are unordered, so the order is the caller's: each call reads like
    protocol.md's example of it (an object's realm before its id, a subscription's id
    before its realm). An unknown `typ` or `act` is a ValueError here rather than a 400
    a round trip later.
    """
    if typ not in ACTIONS or act not in ACTIONS[typ]:
        raise ValueError(f"no action {act!r} for type {typ!r}")
    message: Message = {"typ": typ, "act": act}
    for key, value in fields.items():
        if value is not None:
            message[key] = value
    return message


def pubsub_filter(event: str, id_pattern: str) -> dict[str, str]:
    """The ``dat`` of a realm ``sub`` and of the ``uns`` that ends it: the pair is the
    subscription, so both name the same one."""
    return {"eve": event, "idp": id_pattern}


def pubsub_event(event: str, object_id: str, payload: Any) -> dict[str, Any]:
    """The ``dat`` of a realm ``pub``, which subscribers get back inside a `publication`."""
    return {"eve": event, "idp": object_id, "dat": payload}


def presence_filter(id_pattern: str) -> dict[str, str]:
    """The ``dat`` of a ``sys`` ``pre`` that counts the objects matching `id_pattern`
    instead of explaining one object (§6.5)."""
    return {"idp": id_pattern}


def object_subscription(
    sty: str = "rea",
    *,
    atr: Sequence[str] | None = None,
    sha: Mapping[str, Any] | None = None,
    sta: Mapping[str, Any] | None = None,
    exe: bool = False,
) -> dict[str, Any]:
    """The ``dat`` of a ``sub`` ``cre`` that follows a realm's objects (§6.3)."""
    options = {"typ": "obj", "sty": sty, **object_scope(atr=atr, sha=sha, sta=sta)}
    return with_initial_state(options) if exe else options


def object_scope(
    *,
    atr: Sequence[str] | None = None,
    sha: Mapping[str, Any] | None = None,
    sta: Mapping[str, Any] | None = None,
    sty: str | None = None,
) -> dict[str, Any]:
    """Options of an object subscription, only those given: a ``sub`` ``upd`` merges its
    ``dat`` into the subscription's options (a missing ``sha`` keeps the old shape), so
    an option not asked for must not be sent. Copies, so that a message sent later (a
    subscription re-created after a reconnect) does not change with the caller's data."""
    options: dict[str, Any] = {}
    if atr is not None:
        options["atr"] = list(atr)
    if sha is not None:
        options["sha"] = dict(sha)
    if sta is not None:
        options["sta"] = dict(sta)
    if sty is not None:
        options["sty"] = sty
    return options


def with_initial_state(options: Mapping[str, Any]) -> dict[str, Any]:
    """An object subscription's `options` asking for the current set at once (``exe``):
    pushed as ``ful`` in a later frame than the reply."""
    return {**options, "exe": True}


def realm_list_subscription() -> dict[str, str]:
    """The ``dat`` of a ``sub`` ``cre`` (with ``rea`` `REALM_LIST`) for realm-list events."""
    return {"typ": "sys", "sty": "rea"}


def realm_data_subscription() -> dict[str, str]:
    """The ``dat`` of a ``sub`` ``cre`` that follows one realm's ``lab`` and ``dat``."""
    return {"typ": "rea", "sty": "rea"}


def bearer(token: str) -> str:
    """The authentication frame: raw text, the one frame that is not a JSON array."""
    return f"Bearer {token}"


# -- what the server sends -------------------------------------------------------------


def authenticated(version: str, build_date: str) -> Message:
    """The server's reply to a ``Bearer`` frame it accepted."""
    return {
        "typ": "sys",
        "act": "aut",
        "res": "suc",
        "dat": {"version": version, "buildDate": build_date},
    }


def authentication_refused(text: str) -> Message:
    """The server's reply to a ``Bearer`` frame it refused; `text` says why."""
    return error(401, text, typ="sys", act="aut")


def publication(realm: str, sid: str, event: str, object_id: str, payload: Any) -> Message:
    """A pub/sub push: `event` on `object_id` in `realm`, for the subscription `sid`
    (the subscriber's own id pattern).

    Its ``dat`` is a `pubsub_event`, spelled out here rather than called: this runs once
    per subscriber per event, and a call would add to every one of them.
    """
    return {
        "typ": "rea",
        "act": "pub",
        "rea": realm,
        "sid": sid,
        "dat": {"eve": event, "idp": object_id, "dat": payload},
    }


def presence_payload(status: str) -> dict[str, str]:
    """What a `PRESENCE_EVENT` publication carries: the object's new ``cst``."""
    return {"cst": status}


def object_push(
    sub_id: str,
    kind: str,
    created: dict[str, Any],
    updated: dict[str, Any],
    deleted: dict[str, Any],
) -> Message:
    """A push to an object subscription: `kind` ``ful`` replaces the client's set, ``dta``
    changes it; every map is present, empty or not (§6.3)."""
    return {
        "typ": "sub",
        "id": sub_id,
        "uty": kind,
        "obj": {"cre": created, "upd": updated, "del": deleted},
    }


def realm_data_push(sub_id: str, realm: Mapping[str, Any]) -> Message:
    """A push to a realm-data subscription: the realm (``id``, ``lab``, ``dat``) after an
    update, always whole (``ful``)."""
    return {"typ": "sub", "id": sub_id, "uty": "ful", "rea": realm}


def realm_list_push(sub_id: str, realm_id: str, act: str) -> Message:
    """A push to a realm-list subscription: `realm_id` was created, updated or deleted
    (`act` ``cre``, ``upd``, ``del``)."""
    return {
        "typ": "sub",
        "id": sub_id,
        "uty": "dta",
        "dat": {"typ": "rea", "id": realm_id, "act": act},
    }


# -- telling apart what a client receives ----------------------------------------------
#
# Replies (and errors) carry ``res``; pushes never do. That is the one test that holds for
# every kind: a reply to a ``pub`` has the ``typ`` and ``act`` of a publication, and a
# reply to a ``sub`` request the ``typ`` of a subscription push.


def is_reply(message: Mapping[str, Any]) -> bool:
    """Whether `message` answers a request (or reports one that failed): not a push."""
    return "res" in message


def is_authentication(message: Mapping[str, Any]) -> bool:
    """Whether `message` answers a ``Bearer`` frame (it carries no ``cid``)."""
    return message.get("typ") == "sys" and message.get("act") == "aut"


def is_publication(message: Mapping[str, Any]) -> bool:
    """Whether `message` is a pub/sub push (a `publication`)."""
    return message.get("typ") == "rea" and message.get("act") == "pub" and "res" not in message


def is_subscription_push(message: Mapping[str, Any]) -> bool:
    """Whether `message` is a push to a subscription (objects, realm data or realm list);
    its ``id`` names the subscription."""
    return message.get("typ") == "sub" and "res" not in message


def is_realm_list_push(message: Mapping[str, Any]) -> bool:
    """Whether `message` is a `realm_list_push` (its ``dat`` names the realm and what
    happened to it)."""
    if not is_subscription_push(message):
        return False
    event = message.get("dat")
    return isinstance(event, dict) and event.get("typ") == "rea"


def is_full_state(push: Mapping[str, Any]) -> bool:
    """Whether a subscription push replaces what the client holds (``ful``) rather than
    changing it (``dta``)."""
    return push.get("uty") == "ful"


def iso8601(timestamp: float) -> str:
    """Wire time format: ISO-8601 in UTC to the (truncated) millisecond, e.g.
    2026-11-30T02:33:53.123Z.

    Every location update without a time of its own gets the server's: making a datetime
    and formatting it each time was 18 % of the main thread in ``hivectl bench ingest``,
    so the part up to the second is formatted once per second.
    """
    seconds, milliseconds = divmod(math.floor(timestamp * 1000), 1000)
    return f"{_iso8601_second(seconds)}{milliseconds:03d}Z"


@functools.lru_cache(maxsize=8)
def _iso8601_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
