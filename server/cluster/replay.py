"""Replaying the stream: which messages a node applies, and when, so that reading the
compacted stream leaves it with the state of one that applied every message.

The stream keeps one message per subject (`server.cluster.subjects`), and a consumer the
NATS client recreates resumes after the last sequence it delivered, so a node meets
three things a plain log would not show it:

* **a message again**, delivered once more by a recreated consumer;
* **an object before its realm life**: compaction replaced the realm's creation by a
  later update of that realm, which comes after the object in stream order (a starting
  node, or one resuming after a reconnection, reads the last message of every subject);
* **what it holds already**, when it reads a new stream life (`server.cluster.recovery`)
  that re-seeded the state it had: its subscribers saw those changes the first time.

Everything here is pure: the cluster log (`server.cluster.jetstream_log`) decodes each
message, hands it to `Replay.apply` with a read-only view of the state applied so far
(`Held`, the hub), and applies what it answers in that order.

Rules
=====

Per message, in stream order (the first row that matches wins):

========================  =====================================  ========================
message                   state change                           the host applies
========================  =====================================  ========================
at or below the last      none                                   nothing (`fresh` says
applied sequence                                                 False: the log skips it)
an epoch, or not a        position advanced                      nothing (`advance`)
change
any change, while         position advanced; its realm or        nothing
reading a new life, that  object noted as seen
the host holds already
`ObjectPut` of a realm    position advanced; parked (its         nothing
life not applied here     realm -> its id -> this put)
`ObjectRemoved`           position advanced; its parked put      the removal
                          dropped
`RealmPut`                position advanced; the parked puts     the put, then those
                          of this realm life taken               puts, in parking order
`RealmRemoved`            position advanced; the realm's         the removal
                          parked puts dropped
anything else             position advanced                      the change
========================  =====================================  ========================

*Position* is what the node applied: the last sequence, and the last sequence and message
id (``Hive-Id``) on each subject, which fence the node's next write there
(`applied_on`), and tell whether a message read back is one the node stored itself
(`applied_this`). Parked objects of a realm life that never comes back (deleted and
created anew meanwhile) stay parked: nothing applies them, and the realm's deletion, if
read, drops them.

A realm or object is *held already* when the host has it with the same realm life and
the same content (an object's time included). While reading a new life, every realm
and object the stream holds is noted (`seen`): what the node holds and that life lacks
is dropped afterwards (`recovery.stale_changes`).

A new life (`new_life`) starts over: no position, nothing parked. When JetStream refuses
a write because the subject is empty while this node still knew a message there (it
expired or was purged) and applied nothing there since, the node expects it empty from
then on (`refused`); an older answer than what the node applied since proves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from server.model.changes import Change, ObjectPut, ObjectRemoved, RealmPut, RealmRemoved
from server.model.records import RealmRecord


class Held(Protocol):
    """The state applied so far, as the hub shows it."""

    @property
    def realms(self) -> Mapping[str, RealmRecord]: ...

    def realm_incarnation(self, realm_id: str) -> str | None: ...


class Replay:
    """Where a node stands in the stream life it follows (the rules in the module docstring)."""

    def __init__(self) -> None:
        self.applied = 0
        """The last sequence applied."""
        self.applied_id: str | None = None
        """The id of the message applied last."""
        self._last_seq: dict[str, int] = {}
        self._last_ids: dict[str, str | None] = {}
        self._parked: dict[str, dict[str, ObjectPut]] = {}
        """Objects whose realm life is not applied here: realm -> object id -> last put."""
        self._seen: tuple[set[str], set[tuple[str, str]]] | None = None

    def new_life(self) -> None:
        """Read a new stream life from its start, noting what it holds."""
        self.applied, self.applied_id = 0, None
        self._last_seq, self._last_ids, self._parked = {}, {}, {}
        self._seen = (set(), set())

    def stop_reading(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The realms and objects the new life held, once read (or abandoned)."""
        seen, self._seen = self._seen, None
        return seen if seen is not None else (set(), set())

    def fresh(self, sequence: int) -> bool:
        return sequence > self.applied

    def advance(self, subject: str, sequence: int, message_id: str | None) -> None:
        self._last_seq[subject] = sequence
        self._last_ids[subject] = message_id
        self.applied = max(self.applied, sequence)
        self.applied_id = message_id

    def apply(
        self, subject: str, sequence: int, message_id: str | None, change: Change, held: Held
    ) -> list[Change]:
        """Advance past a change; what the host applies for it, in order."""
        self.advance(subject, sequence, message_id)
        if self._seen is not None:
            match change:
                case RealmPut() | RealmRemoved():
                    self._seen[0].add(change.realm)
                case ObjectPut() | ObjectRemoved():
                    self._seen[1].add((change.realm, change.id))
                case _:
                    pass
            if holds_already(held.realms, change):
                return []
        match change:
            case ObjectPut() if held.realm_incarnation(change.realm) != change.realm_incarnation:
                self._parked.setdefault(change.realm, {})[change.id] = change
                return []
            case ObjectRemoved():
                parked = self._parked.get(change.realm)
                if parked is not None:
                    parked.pop(change.id, None)
            case RealmPut():
                return [change, *self._adopt(change)]
            case RealmRemoved():
                self._parked.pop(change.realm, None)
            case _:
                pass
        return [change]

    def _adopt(self, realm: RealmPut) -> list[ObjectPut]:
        parked = self._parked.get(realm.realm)
        if parked is None:
            return []
        adopted = [put for put in parked.values() if put.realm_incarnation == realm.incarnation]
        for put in adopted:
            del parked[put.id]
        if not parked:
            del self._parked[realm.realm]
        return adopted

    def refused(self, subject: str, expected: int | None, current: int) -> None:
        """JetStream refused a write on `subject` expecting `expected`: its last is `current`.

        A subject found empty (its message expired or was purged) while nothing was
        applied there since is expected empty from now on. A lower but non-zero `current`
        is no such sign, only an answer older than what this node applied since; taking it
        would refuse every later attempt.
        """
        if current == 0 and self._last_seq.get(subject, 0) == expected:
            self._last_seq[subject] = 0

    def applied_on(self, subject: str) -> int:
        """The sequence of the last message applied on `subject` (0: none): what the next
        write there is compare-and-set against."""
        return self._last_seq.get(subject, 0)

    def applied_this(self, subject: str, sequence: int | None, message_id: str | None) -> bool:
        """Whether the message at `sequence` with `message_id` is the last one applied on
        `subject`: a node's consumer often applies its own write before JetStream's
        acknowledgement arrives, and a sequence alone may name a message of another life."""
        return self._last_seq.get(subject) == sequence and self._last_ids.get(subject) == message_id


def holds_already(realms: Mapping[str, RealmRecord], change: Change) -> bool:
    """Whether applying this realm or object would change nothing in `realms`."""
    match change:
        case RealmPut():
            realm = realms.get(change.realm)
            return realm is not None and (realm.incarnation, realm.lab, realm.dat) == (
                change.incarnation,
                change.lab,
                change.dat,
            )
        case ObjectPut():
            realm = realms.get(change.realm)
            record = None if realm is None else realm.objects.get(change.id)
            return (
                realm is not None
                and record is not None
                and realm.incarnation == change.realm_incarnation
                and (record.lab, record.loc, record.dat_json, record.tds, record.updated_at)
                == (change.lab, change.loc, change.dat, change.tds, change.at)
            )
        case _:
            return False
