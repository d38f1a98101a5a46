"""Which stream a node follows, and what it does when that stream is gone or reset.

Sequence numbers alone cannot say whether a message was applied: a stream deleted and
created again, or one that lost its tail, numbers new messages from where the old ones
were. So a node follows a *stream life*: the stream's creation time (from stream info)
and the *epoch* recorded in the stream itself, one message on ``hive.epoch`` written by
the node that seeded this life. A sequence only means something within one life.

Everything here is pure: the cluster log (`server.cluster.jetstream_log`) gathers what it sees of
the stream into a `StreamView`, asks `decide` what to do, and does it.

``decide(view, position)``, the rules in order (the first that matches wins):

=========  ===========================  ============================  ================
stream     epoch in it                  against what this node        action
                                        follows (`Position`)
=========  ===========================  ============================  ================
missing    -                            -                             CREATE
exists     none                         -                             CLAIM
exists     incomplete, by another node  -                             WAIT
           for less than the re-seed
           timeout
exists     incomplete, by this node     -                             CLAIM
           (a seeding that stopped), or
           older than the timeout
exists     complete, seeded by a node   another epoch than the last   CLAIM
           that held nothing            one this node read whole
exists     complete                     another epoch, another        RESYNC
                                        stream creation, or nothing
                                        followed yet
exists     complete                     the same, but the stream      CLAIM
                                        ends before what this node
                                        applied, or holds another
                                        message there
exists     complete                     the same, and it holds what   FOLLOW
                                        this node applied
=========  ===========================  ============================  ================

* CREATE: create the stream (it comes back empty), then look again.
* CLAIM: the stream holds no state every node agrees on. One node re-seeds it: the
  candidates answer who holds the most (`should_claim`), and the winner writes an
  incomplete epoch with compare-and-set on ``hive.epoch`` (so two claims cannot both
  land), writes its state create-only, then completes the epoch. When the stream has
  no epoch, or is the life the seeder followed (it lost its tail), the seeder first
  drops what is older than its claim (`purges_before_claim`); over another node's
  epoch it drops nothing, so what that life holds wins and the seeder only adds what
  it lacks. A node that holds nothing (it just started) claims without writing
  anything, and marks its epoch unseeded: a node holding state that comes back later
  re-seeds over it, so a fresh node starting on an emptied stream before the others
  reconnect does not erase the cluster.
* WAIT: another node is seeding: refuse writes until its epoch is complete.
* RESYNC: read the stream from its snapshot as a new life: what this node holds and the
  stream does not is dropped (`stale_changes`), its providers are registered again.

What wins when nodes disagree: the state of the node that applied the most of the lost
life (ties: the greater node id), among those that answer; it waits up to the re-seed
timeout for every node whose lease it saw to answer, and any node takes over if the
chosen one has not seeded after twice that. Writes it had not applied are lost:
they were acknowledged only by nodes that did not answer in time (a write is
acknowledged once the acknowledging node applied it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from server.model.changes import Change, ObjectPut, ObjectRemoved, RealmPut, RealmRemoved
from server.model.presence import ProviderUp
from server.model.records import RealmRecord

EPOCH_SUBJECT = "hive.epoch"


class Action(enum.Enum):
    FOLLOW = "follow"
    CREATE = "create"
    CLAIM = "claim"
    WAIT = "wait"
    RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class Epoch:
    """The mark of a stream life: written incomplete by its seeder, then complete."""

    id: str
    node: str
    complete: bool
    seeded: bool = True
    """False when its node held nothing: a node holding state re-seeds over it."""


@dataclass(frozen=True, slots=True)
class StreamView:
    """What a node sees of the stream now (None for the stream: it does not exist)."""

    created: str
    """The stream's creation time as NATS reports it: another value is another stream."""
    last_seq: int
    epoch: Epoch | None
    epoch_seq: int
    """The sequence of the epoch message (0: none); a new claim is compare-and-set on it."""
    at_applied: str | None
    """The id of the message the stream holds at the sequence this node applied last;
    None when it holds none there (replaced by a later message of its subject, expired,
    or never written)."""


@dataclass(frozen=True, slots=True)
class Position:
    """The stream life a node follows and how far it applied it."""

    created: str | None
    epoch: str | None
    applied: int
    applied_id: str | None
    """The id of the message at `applied` (None: none, or one without an id)."""
    held: str | None = None
    """The epoch this node last read whole (None: it never did, it holds nothing)."""


def decide(
    view: StreamView | None,
    position: Position,
    me: str,
    *,
    incomplete_for: float,
    reseed_timeout: float,
) -> Action:
    """What to do about the stream as seen (the table in this module's docstring).

    `incomplete_for` is how long this node has seen the current epoch incomplete.
    """
    if view is None:
        return Action.CREATE
    epoch = view.epoch
    if epoch is None:
        return Action.CLAIM
    if not epoch.complete:
        if epoch.node != me and incomplete_for < reseed_timeout:
            return Action.WAIT
        return Action.CLAIM
    if position.epoch != epoch.id or position.created != view.created:
        if not epoch.seeded and position.held is not None and position.held != epoch.id:
            return Action.CLAIM
        return Action.RESYNC
    if view.last_seq < position.applied:
        return Action.CLAIM
    if (
        view.at_applied is not None
        and position.applied_id is not None
        and view.at_applied != position.applied_id
    ):
        return Action.CLAIM
    return Action.FOLLOW


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node that may re-seed the stream, as it answers the others."""

    node: str
    applied: int
    holds: bool
    """Whether it holds any realm (a node that just started holds nothing)."""


def should_claim(
    me: Candidate,
    others: Iterable[Candidate],
    *,
    expected: Iterable[str] = (),
    waited: float,
    reseed_timeout: float,
) -> bool:
    """Whether this node re-seeds now, `waited` seconds after it found it must be done.

    The node that applied the most of the lost life seeds it, ties going to the greater
    node id; a node that holds nothing never outranks one that holds something. Until
    `reseed_timeout` it waits for every `expected` node (those whose lease it saw) to
    answer: one that did not may hold more. Then the best of those that answer seeds;
    after twice the timeout (the best one answers but does not claim), any node may.
    """
    if waited >= 2 * reseed_timeout:
        return True
    others = list(others)
    if waited < reseed_timeout and not set(expected) <= {other.node for other in others}:
        return False
    best = max([me, *others], key=lambda c: (c.holds, c.applied, c.node))
    return best.node == me.node


def purges_before_claim(view: StreamView, position: Position) -> bool:
    """Whether a seeder drops what the stream holds before its claim.

    Only what no node may have acknowledged, or what the seeder itself holds newer: a
    stream with no epoch (writes that landed before anyone seeded it), or the life the
    seeder read whole (it holds all of it, and more). Never another node's epoch.
    """
    if position.held is None:
        return False
    return view.epoch is None or view.epoch.id == position.held


def seed_changes(
    realms: Iterable[RealmRecord], providers: Iterable[ProviderUp], at: float
) -> list[Change]:
    """What a seeding node writes: its realms, their objects, then its live providers.

    Realms come before their objects so that a reader never parks them; a realm's record
    keeps no time of its own, so its message carries the seeding time.
    """
    changes: list[Change] = []
    for realm in realms:
        changes.append(RealmPut(realm.id, realm.lab, dict(realm.dat), realm.incarnation, at))
        changes.extend(
            ObjectPut(
                realm.id,
                record.id,
                record.lab,
                record.loc,
                record.dat_json,
                record.tds,
                realm.incarnation,
                record.updated_at,
            )
            for record in realm.objects.values()
        )
    changes.extend(providers)
    return changes


def stale_changes(
    realms: Iterable[RealmRecord],
    seen_realms: set[str],
    seen_objects: set[tuple[str, str]],
    at: float,
) -> list[Change]:
    """What a node drops after reading a new stream life: what that life does not hold.

    Realms first, then objects of the realms that stay; applied here only, not written.
    """
    realms = list(realms)
    changes: list[Change] = [
        RealmRemoved(realm.id, at) for realm in realms if realm.id not in seen_realms
    ]
    for realm in realms:
        if realm.id in seen_realms:
            changes.extend(
                ObjectRemoved(realm.id, object_id, at)
                for object_id in realm.objects
                if (realm.id, object_id) not in seen_objects
            )
    return changes


def encode_epoch(epoch: Epoch) -> bytes:
    return orjson.dumps(
        {
            "k": "epoch",
            "id": epoch.id,
            "node": epoch.node,
            "ok": epoch.complete,
            "seeded": epoch.seeded,
        }
    )


def decode_epoch(data: bytes) -> Epoch | None:
    """The epoch in a ``hive.epoch`` message; None when it is not one."""
    try:
        fields = orjson.loads(data)
        if fields.get("k") != "epoch":
            return None
        return Epoch(
            str(fields["id"]), str(fields["node"]), bool(fields["ok"]), bool(fields["seeded"])
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
