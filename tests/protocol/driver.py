"""Drive a `Hub` the way the I/O shell does, without sockets, and read what it puts out.

`HubDriver` owns a hub from `tests.server.inprocess.bare_hub` and plays the shell's part
(`server.io.app`): it opens sessions, hands them Bearer frames and message frames with the
current time, closes them, ticks the hub at its deadlines when told to and takes the frames
the hub has ready. Every frame taken for a session is decoded and kept on its `Client`, so
a test reads the messages the shell would have sent: those since the last look (`take`),
all of them (`received`), or a request's reply (`request`, `ok`, `reply`, as
`tests.server.wsutil.RawClient` has them over a socket).

It also records what leaves the hub on its other side, without changing the hub's code:
the changes appended to its log (`RecordingLog`), the transitions its presence engine
returns (`RecordingEngine`) and the writes for storage it appends (`HubDriver.written`,
drained after every input as the shell drains them, `server.stores.writes`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import orjson
from hypothesis import HealthCheck, settings

from server.model.changes import Change
from server.model.presence import Event, PresenceEngine, StatusChanged
from server.model.session import Session
from server.protocol.hub import Hub
from server.protocol.log_seam import LocalLog, Ticket
from server.stores.writes import Write
from tests.conftest import mint
from tests.server.inprocess import bare_hub

Message = dict[str, Any]

PRESENCE = "connectionStatusChanged"

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    database=None,
    suppress_health_check=list(HealthCheck),
)
"""Hypothesis settings for the hub's properties: each example takes a millisecond or so."""


class RecordingLog(LocalLog):
    """The one-node log, keeping every change appended to it, in order, and the hub's
    writes for storage that were appended while no change was being applied.

    It tells them apart by the length of `Hub.writes` as each outermost application of a
    change begins and ends: what was appended before it began was appended outside one.
    """

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.hub = hub
        self.changes: list[Change] = []
        self.applying = 0
        """How many appended changes are being applied right now (0: none)."""
        self.outside: list[Write] = []
        """The writes appended while no change from the log was being applied."""
        self._seen = 0
        """How many of `Hub.writes` were looked at: appended before, or while applying."""

    def append(self, change: Change) -> Ticket:
        self.changes.append(change)
        with self.applying_change():
            return super().append(change)

    @contextlib.contextmanager
    def applying_change(self) -> Iterator[None]:
        """Around applying one change: what the hub writes meanwhile is that change's."""
        if not self.applying:
            self._look()
        self.applying += 1
        try:
            yield
        finally:
            self.applying -= 1
            if not self.applying:
                self._seen = len(self.hub.writes)

    def take_writes(self) -> list[Write]:
        """`Hub.take_writes`, having noted those appended outside a change."""
        self._look()
        self._seen = 0
        return self.hub.take_writes()

    def _look(self) -> None:
        """The writes appended since the last look came while nothing was applied."""
        self.outside += self.hub.writes[self._seen :]
        self._seen = len(self.hub.writes)


class RecordingEngine(PresenceEngine):
    """The presence engine, keeping every transition it returns, in order."""

    def __init__(self, grace: float = 0.0) -> None:
        super().__init__(grace)
        self.transitions: list[StatusChanged] = []

    def apply(self, event: Event) -> list[StatusChanged]:
        transitions = super().apply(event)
        self.transitions.extend(transitions)
        return transitions


@dataclass(eq=False)
class Client:
    """One connection as the shell sees it: its session and the frames delivered to it."""

    driver: HubDriver
    session: Session = field(init=False)
    frames: list[list[Message]] = field(default_factory=list)
    _read: int = 0
    _cids: Iterator[int] = field(default_factory=lambda: count(1))

    def receive(self, data: bytes) -> None:
        frame = orjson.loads(data)
        assert isinstance(frame, list), frame
        self.frames.append(frame)

    def take(self) -> list[Message]:
        """The messages delivered since the last `take`, in order."""
        unread = self.frames[self._read :]
        self._read = len(self.frames)
        return [message for frame in unread for message in frame]

    @property
    def received(self) -> list[Message]:
        """Every message delivered so far, taken or not, in order."""
        return [message for frame in self.frames for message in frame]

    def reply(self, cid: Any) -> Message:
        """The first message delivered so far that carries `cid` (a request's reply)."""
        for message in self.received:
            if message.get("cid") == cid:
                return message
        raise AssertionError(f"no message with cid {cid!r} in {self.received}")

    def send(self, *messages: Any, at: float | None = None) -> list[Message]:
        return self.driver.send(self, *messages, at=at)

    def request(self, message: Message, at: float | None = None) -> Message:
        """One request in a frame of its own (a ``cid`` is added when missing); its one
        reply. What else the frame made for this client is taken with it."""
        if "cid" not in message:
            message = {**message, "cid": f"t{next(self._cids)}"}
        answers = [m for m in self.send(message, at=at) if m.get("cid") == message["cid"]]
        assert len(answers) == 1, answers
        return answers[0]

    def ok(self, message: Message, at: float | None = None) -> Any:
        """A request that must succeed; its reply's ``dat``."""
        answer = self.request(message, at=at)
        assert answer.get("res") == "suc", answer
        return answer.get("dat")

    def bearer(self, token: str, at: float | None = None) -> list[Message]:
        return self.driver.bearer(self, token, at=at)

    @property
    def closing(self) -> tuple[int, str] | None:
        return self.session.closing


class HubDriver:
    """A hub and a shell around it that a test steps by hand (see the module doc).

    Time is the driver's `now` (seconds since the epoch, so the tokens of
    `tests.conftest.mint` are valid); it moves only when a test moves it.
    """

    def __init__(self, **overrides: Any) -> None:
        hub = bare_hub(**overrides)
        self.hub = hub
        self.clients: dict[Session, Client] = {}
        self.log = RecordingLog(hub)
        hub.log = self.log
        self.engine = RecordingEngine(hub.settings.presence.grace)
        hub.engine = self.engine
        self.written: list[Write] = []
        """Every write for storage the hub appended, in order, as the shell drains them."""
        self.now = float(int(time.time()) + 10)  # past the iat of any token minted meanwhile
        self._ids = count(1)

    # -- the shell's inputs --------------------------------------------------------------

    def open(self) -> Client:
        """A new connection (nothing sent yet)."""
        conn_id = f"n:{next(self._ids)}"
        client = Client(self)
        client.session = self.hub.new_session(conn_id, "test", self.now)
        self.clients[client.session] = client
        return client

    def bearer(self, client: Client, token: str, at: float | None = None) -> list[Message]:
        """A ``Bearer`` frame; the messages it made for `client`."""
        self.hub.authenticate(client.session, token, self._at(at))
        self.flush()
        return client.take()

    def connect(self, token: str | None = None, **claims: Any) -> Client:
        """A connection that authenticated (`token`, or one minted with `claims`)."""
        client = self.open()
        reply = self.bearer(client, token if token is not None else mint(**claims))
        assert [m.get("res") for m in reply] == ["suc"], reply
        return client

    def send(self, client: Client, *messages: Any, at: float | None = None) -> list[Message]:
        """One frame holding `messages`; the messages it made for `client`."""
        return self.send_raw(client, orjson.dumps(list(messages)).decode(), at=at)

    def send_raw(self, client: Client, data: str | bytes, at: float | None = None) -> list[Message]:
        self.hub.handle_frame(client.session, data, self._at(at))
        self.flush()
        return client.take()

    def close(self, client: Client, reason: str = "closed", at: float | None = None) -> None:
        """The connection is gone (the shell's `_end`)."""
        self.hub.close_session(client.session, reason, self._at(at))
        self.flush()

    def apply(self, change: Change) -> None:
        """A change that came back from a cluster log (another node's, say), applied here."""
        with self.log.applying_change():
            self.hub.apply(change)
        self.flush()

    def tick(self, at: float | None = None) -> None:
        self.hub.tick(self._at(at))
        self.flush()

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def run_timers(self) -> None:
        """Tick the hub at each of its deadlines due within a second, as the shell's timer
        would (then a flush), and pump every stream that starts to its end. Time stays
        where it was: a grace period ends only when a test moves time."""
        horizon = self.now + 1.0
        while (deadline := self.hub.next_deadline()) is not None and deadline <= horizon:
            grace = self.hub.engine.next_deadline()
            if grace is not None and grace <= deadline:
                break  # a grace period: the test decides when it ends
            self.hub.tick(deadline)
            self.flush()
            while self.hub.streaming:
                self.hub.pump(lambda session: True)
                self.flush()

    def flush(self) -> None:
        """Take every ready frame and drain the writes, as the shell does after each unit
        of work."""
        self.written += self.log.take_writes()
        for session, frame in self.hub.outgoing():
            self.clients[session].receive(frame)

    def _at(self, at: float | None) -> float:
        return self.now if at is None else at

    # -- what the hub holds ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything a request could change, as plain values, to compare before/after."""
        hub = self.hub
        return {
            "realms": {
                realm.id: (
                    realm.to_wire(),
                    realm.incarnation,
                    # as the wire has them: `dat` is JSON text the record hands to orjson
                    orjson.loads(
                        orjson.dumps(
                            [
                                record.to_wire(hub.status(realm.id, oid))
                                for oid, record in realm.objects.items()
                            ]
                        )
                    ),
                )
                for realm in hub.realms.values()
            },
            "ledgers": {
                (realm.id, oid): hub.engine.ledger(realm.id, oid)
                for realm in hub.realms.values()
                for oid in realm.objects
            },
            "providers": hub.engine.providers,
            "sessions": {
                conn: (
                    session.authenticated,
                    session.claims,
                    session.closing,
                    session.is_provider,
                    list(session.pubsub),
                    {sid: _subscription(sub) for sid, sub in session.subscriptions.items()},
                )
                for conn, session in hub.sessions.items()
            },
            "revocations": sorted(r.key for r in hub.revocations),
            "changes": len(self.log.changes),
            "stored": len(self.written) + len(hub.writes),
            "condemned": list(hub.condemned),
        }


def _subscription(sub: Any) -> Any:
    options = getattr(sub, "options", None)
    return (type(sub).__name__, sub.realm, None if options is None else options.raw)


def replies(messages: Iterable[Message]) -> dict[Any, list[Message]]:
    """The messages carrying a ``cid``, grouped by it."""
    grouped: dict[Any, list[Message]] = {}
    for message in messages:
        if "cid" in message:
            grouped.setdefault(message["cid"], []).append(message)
    return grouped


def pubsub_pushes(messages: Iterable[Message], event: str | None = None) -> list[Message]:
    """The pub/sub pushes among `messages` (of one event name when given)."""
    return [
        m
        for m in messages
        if m.get("typ") == "rea"
        and m.get("act") == "pub"
        and "res" not in m
        and (event is None or m["dat"]["eve"] == event)
    ]


def presence_events(messages: Iterable[Message]) -> list[tuple[str, str, str]]:
    """The ``connectionStatusChanged`` pushes among `messages` as (realm, id, cst)."""
    return [
        (m["rea"], m["dat"]["idp"], m["dat"]["dat"]["cst"])
        for m in messages
        if m.get("typ") == "rea" and m.get("act") == "pub" and m["dat"].get("eve") == PRESENCE
    ]


def subscription_pushes(messages: Iterable[Message]) -> list[Message]:
    return [m for m in messages if m.get("typ") == "sub" and "uty" in m]


# -- message builders ----------------------------------------------------------------------


def realm_create(realm: str, cid: Any = None, **fields: Any) -> Message:
    return _message("rea", "cre", cid, id=realm, **fields)


def obj(act: str, realm: str, object_id: str | None, cid: Any = None, **fields: Any) -> Message:
    if object_id is not None:
        fields["id"] = object_id
    return _message("obj", act, cid, rea=realm, **fields)


def watch_presence(realm: str, pattern: str = "*", cid: Any = None) -> Message:
    return watch_event(realm, PRESENCE, pattern, cid)


def watch_event(realm: str, event: str, pattern: str = "*", cid: Any = None) -> Message:
    """A pub/sub subscription to `event` in `realm` for the object ids `pattern` matches."""
    return _message("rea", "sub", cid, id=realm, dat={"eve": event, "idp": pattern})


def subscribe(sub_id: str, realm: str, cid: Any = None, **options: Any) -> Message:
    return _message("sub", "cre", cid, id=sub_id, rea=realm, dat={"typ": "obj", **options})


def heartbeat(cid: Any) -> Message:
    return {"typ": "sys", "act": "hbt", "cid": cid}


def _message(typ: str, act: str, cid: Any, **fields: Any) -> Message:
    message: Message = {"typ": typ, "act": act, **fields}
    if cid is not None:
        message["cid"] = cid
    return message
