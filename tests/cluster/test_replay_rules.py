"""The pure replay rules (`server.cluster.replay`): one test per rule, and a writer's
history read whole, read compacted with messages delivered again, and read again as a
new stream life, all ending in the same state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hivectl.core.wire import EMPTY_LOCATION
from server.cluster.recovery import stale_changes
from server.cluster.replay import Replay, holds_already
from server.cluster.subjects import TICK, object_subject, realm_subject
from server.model.changes import Change, ObjectPut, ObjectRemoved, RealmPut, RealmRemoved
from server.model.presence import Tick
from server.model.records import ObjectRecord, RealmRecord, compact_dat


@dataclass
class Host:
    """The hub's realm and object rules, as small as they go, noting what it was given."""

    realms: dict[str, RealmRecord] = field(default_factory=dict)
    given: list[Change] = field(default_factory=list)
    ignored: list[ObjectPut] = field(default_factory=list)
    """Objects given for a realm life it does not hold: they should have been parked."""

    def realm_incarnation(self, realm_id: str) -> str | None:
        realm = self.realms.get(realm_id)
        return None if realm is None else realm.incarnation

    def apply(self, change: Change) -> None:
        self.given.append(change)
        match change:
            case RealmPut():
                realm = self.realms.get(change.realm)
                if realm is None or realm.incarnation != change.incarnation:
                    realm = RealmRecord(change.realm, incarnation=change.incarnation)
                    self.realms[change.realm] = realm
                realm.lab, realm.dat = change.lab, dict(change.dat)
            case RealmRemoved():
                self.realms.pop(change.realm, None)
            case ObjectPut():
                realm = self.realms.get(change.realm)
                if realm is None or realm.incarnation != change.realm_incarnation:
                    self.ignored.append(change)
                else:
                    record = realm.objects.setdefault(change.id, ObjectRecord(change.id))
                    record.lab, record.dat_json, record.updated_at = (
                        change.lab,
                        change.dat,
                        change.at,
                    )
            case ObjectRemoved():
                realm = self.realms.get(change.realm)
                if realm is not None:
                    realm.objects.pop(change.id, None)
            case _:
                pass

    def state(self) -> dict[str, Any]:
        return {
            realm.id: (
                realm.incarnation,
                realm.lab,
                realm.dat,
                {o.id: (o.lab, o.dat, o.updated_at) for o in realm.objects.values()},
            )
            for realm in self.realms.values()
        }


@dataclass(frozen=True)
class Message:
    sequence: int
    subject: str
    id: str
    change: Change


def read(messages: list[Message], host: Host, position: Replay) -> None:
    """What the cluster log does with each delivered message (`ClusterLog._on_message`)."""
    for message in messages:
        if position.fresh(message.sequence):
            ready = position.apply(
                message.subject, message.sequence, message.id, message.change, host
            )
            for change in ready:
                host.apply(change)


def realm_put(realm: str, incarnation: str, lab: str = "", at: float = 1.0) -> RealmPut:
    return RealmPut(realm, lab, {}, incarnation, at)


def object_put(realm: str, oid: str, incarnation: str, lab: str = "", at: float = 1.0) -> ObjectPut:
    return ObjectPut(realm, oid, lab, EMPTY_LOCATION, compact_dat({}), (), incarnation, at)


def applied(position: Replay, host: Host, *changes: Change) -> list[list[Change]]:
    """Each change as the next message; what the host is given for each."""
    answers = []
    for change in changes:
        sequence = position.applied + 1
        subject = subject_of(change)
        answers.append(position.apply(subject, sequence, f"w.{sequence}", change, host))
        for each in answers[-1]:
            host.apply(each)
    return answers


def subject_of(change: Change) -> str:
    match change:
        case RealmPut() | RealmRemoved():
            return realm_subject(change.realm)
        case ObjectPut() | ObjectRemoved():
            return object_subject(change.realm, change.id)
        case _:
            return TICK


# -- one test per rule --------------------------------------------------------------------


def test_a_message_at_or_below_the_last_applied_sequence_is_not_fresh() -> None:
    position = Replay()
    assert position.fresh(1)
    position.advance("hive.epoch", 5, "w.5")
    assert (position.applied, position.applied_id) == (5, "w.5")
    assert not position.fresh(5) and not position.fresh(3)
    assert position.fresh(6)


def test_the_position_on_each_subject_fences_the_next_write_and_knows_its_own() -> None:
    position = Replay()
    position.advance("a", 3, "w.3")
    position.advance("b", 4, None)
    assert (position.applied_on("a"), position.applied_on("b"), position.applied_on("c")) == (
        3,
        4,
        0,
    )
    assert position.applied_this("a", 3, "w.3")
    assert not position.applied_this("a", 3, "x.3")  # another message, of another life
    assert not position.applied_this("a", 2, "w.3")
    assert position.applied_this("b", 4, None)


def test_a_change_of_a_known_realm_life_is_applied_as_it_comes() -> None:
    host = Host()
    put = object_put("r", "o", "i1")
    assert applied(Replay(), host, realm_put("r", "i1"), put, Tick(2.0)) == [
        [realm_put("r", "i1")],
        [put],
        [Tick(2.0)],
    ]


def test_an_object_before_its_realm_life_is_parked_then_adopted_by_it() -> None:
    host = Host()
    one, two = object_put("r", "o1", "i1"), object_put("r", "o2", "i1")
    update = realm_put("r", "i1", lab="renamed")
    assert applied(Replay(), host, two, one, update) == [[], [], [update, two, one]]
    assert list(host.realms["r"].objects) == ["o2", "o1"]


def test_parked_objects_wait_for_their_own_realm_life() -> None:
    position, host = Replay(), Host()
    old = object_put("r", "o", "i1")
    other = realm_put("r", "i2")
    assert applied(position, host, old, other) == [[], [other]]
    # Only a put of the life it names adopts it (a stream life read anew may hold it).
    assert applied(position, host, realm_put("r", "i1")) == [[realm_put("r", "i1"), old]]


def test_the_last_parked_put_of_an_object_wins() -> None:
    first, second = object_put("r", "o", "i1", lab="a"), object_put("r", "o", "i1", lab="b")
    answers = applied(Replay(), Host(), first, second, realm_put("r", "i1"))
    assert answers[-1] == [realm_put("r", "i1"), second]


def test_an_object_removed_is_no_longer_parked() -> None:
    removed = ObjectRemoved("r", "o", 2.0)
    answers = applied(Replay(), Host(), object_put("r", "o", "i1"), removed, realm_put("r", "i1"))
    assert answers == [[], [removed], [realm_put("r", "i1")]]


def test_a_realm_removed_drops_its_parked_objects() -> None:
    removed = RealmRemoved("r", 2.0)
    answers = applied(Replay(), Host(), object_put("r", "o", "i1"), removed, realm_put("r", "i1"))
    assert answers == [[], [removed], [realm_put("r", "i1")]]


def test_reading_a_new_life_skips_what_the_host_holds_and_notes_what_it_saw() -> None:
    host = Host()
    position = Replay()
    put = object_put("r", "o", "i1")
    applied(position, host, realm_put("r", "i1"), put, object_put("r", "p", "i1"))
    position.new_life()
    assert (position.applied, position.applied_id, position.applied_on(realm_subject("r"))) == (
        0,
        None,
        0,
    )
    changed = object_put("r", "p", "i1", lab="new")
    removed = ObjectRemoved("r", "q", 2.0)
    assert applied(position, host, realm_put("r", "i1"), put, changed, removed, Tick(3.0)) == [
        [],
        [],
        [changed],
        [removed],
        [Tick(3.0)],
    ]
    assert position.stop_reading() == ({"r"}, {("r", "o"), ("r", "p"), ("r", "q")})
    assert position.stop_reading() == (set(), set())  # following it now: nothing noted
    assert applied(position, host, put) == [[put]]


def test_a_new_life_forgets_what_was_parked() -> None:
    position = Replay()
    applied(position, Host(), object_put("r", "o", "i1"))
    position.new_life()
    assert applied(position, Host(), realm_put("r", "i1")) == [[realm_put("r", "i1")]]


def test_an_emptied_subject_is_expected_empty_only_if_nothing_was_applied_there_since() -> None:
    position = Replay()
    position.advance("a", 7, "w.7")
    position.refused("a", 7, 12)  # written meanwhile: the conflict is real
    assert position.applied_on("a") == 7
    position.refused("a", 5, 0)  # an answer older than what this node applied since
    assert position.applied_on("a") == 7
    position.refused("a", None, 0)
    assert position.applied_on("a") == 7
    position.refused("a", 7, 0)  # expired or purged
    assert position.applied_on("a") == 0


def test_holds_already_compares_the_realm_life_and_every_field() -> None:
    realm = RealmRecord("r", "R", {"k": 1}, incarnation="i1")
    realm.objects["o"] = ObjectRecord("o", "O", updated_at=5.0)
    realms = {"r": realm}
    assert holds_already(realms, RealmPut("r", "R", {"k": 1}, "i1", 9.0))
    assert not holds_already(realms, RealmPut("r", "R", {"k": 2}, "i1", 9.0))
    assert not holds_already(realms, RealmPut("r", "R", {"k": 1}, "i2", 9.0))
    assert holds_already(realms, object_put("r", "o", "i1", lab="O", at=5.0))
    assert not holds_already(realms, object_put("r", "o", "i1", lab="O", at=6.0))
    assert not holds_already(realms, object_put("r", "o", "i2", lab="O", at=5.0))
    assert not holds_already(realms, object_put("r", "x", "i1", lab="O", at=5.0))
    assert not holds_already(realms, object_put("s", "o", "i1", lab="O", at=5.0))
    assert not holds_already(realms, RealmRemoved("x", 1.0))
    assert not holds_already(realms, Tick(1.0))


# -- a writer's history, read whole, compacted, and again -----------------------------------

REALMS = st.sampled_from(["r", "s"])
OBJECTS = st.sampled_from(["o", "p", "q"])
LABELS = st.sampled_from(["", "x", "y"])
OPS = st.one_of(
    st.tuples(st.just("put_realm"), REALMS, LABELS),
    st.tuples(st.just("remove_realm"), REALMS, st.booleans()),
    st.tuples(st.just("put_object"), REALMS, OBJECTS, LABELS, st.booleans()),
    st.tuples(st.just("remove_object"), REALMS, OBJECTS),
    st.tuples(st.just("tick")),
)


@dataclass
class Writer:
    """Writes as the nodes of a cluster do: against the state they applied, so an object
    names its realm's current life, unless the write was decided before a deletion (then
    its compare-and-set passes only if its subject was not written since)."""

    messages: list[Message] = field(default_factory=list)
    purged: set[int] = field(default_factory=set)
    """Sequences purged by the node that wrote a realm's deletion."""
    lives: dict[str, list[str]] = field(default_factory=dict)
    """Each realm's incarnations, the current last (None once removed)."""
    current: dict[str, str | None] = field(default_factory=dict)
    objects: set[tuple[str, str]] = field(default_factory=set)
    written_in: dict[tuple[str, str], str] = field(default_factory=dict)
    """The realm life current when each object subject was last written (purges forget)."""

    def write(self, change: Change) -> None:
        sequence = len(self.messages) + 1
        self.messages.append(Message(sequence, subject_of(change), f"w.{sequence}", change))

    def run(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            at = float(len(self.messages) + 1)
            match op:
                case ("put_realm", realm, lab):
                    life = self.current.get(realm)
                    if life is None:
                        life = f"{realm}{len(self.messages) + 1}"
                        self.lives.setdefault(realm, []).append(life)
                        self.current[realm] = life
                    self.write(RealmPut(realm, lab, {"lab": lab}, life, at))
                case ("remove_realm", realm, purge) if self.current.get(realm) is not None:
                    self.current[realm] = None
                    self.objects = {(r, o) for r, o in self.objects if r != realm}
                    self.write(RealmRemoved(realm, at))
                    if purge:
                        self.written_in = {
                            k: v for k, v in self.written_in.items() if k[0] != realm
                        }
                        self.purged |= {
                            m.sequence
                            for m in self.messages
                            if isinstance(m.change, ObjectPut | ObjectRemoved)
                            and m.change.realm == realm
                        }
                case ("put_object", realm, oid, lab, late) if self.lives.get(realm):
                    current = life = self.current.get(realm)
                    if late or life is None:
                        life = self.written_in.get((realm, oid), self.lives[realm][0])
                    if life == current:
                        self.objects.add((realm, oid))
                    self.written_in[(realm, oid)] = life
                    self.write(
                        ObjectPut(realm, oid, lab, EMPTY_LOCATION, compact_dat({}), (), life, at)
                    )
                case ("remove_object", realm, oid) if (realm, oid) in self.objects:
                    self.objects.discard((realm, oid))
                    self.written_in[(realm, oid)] = self.lives[realm][-1]
                    self.write(ObjectRemoved(realm, oid, at))
                case ("tick",):
                    self.write(Tick(at))
                case _:
                    pass

    def compacted(self) -> list[Message]:
        """What a reader starting now is delivered: the last message of every subject that
        was not purged, in stream order."""
        last = {m.subject: m for m in self.messages if m.sequence not in self.purged}
        return sorted(last.values(), key=lambda m: m.sequence)


def delivered_again(messages: list[Message], restarts: list[int]) -> Iterator[Message]:
    """The messages in order, a consumer recreated after each `restarts` index resuming
    from an earlier one, as the NATS client may."""
    position = 0
    for back in restarts:
        stop = min(len(messages), position + 3)
        yield from messages[position:stop]
        position = max(0, stop - back)
    yield from messages[position:]


@settings(max_examples=400, deadline=None)
@given(
    ops=st.lists(OPS, max_size=40),
    restarts=st.lists(st.integers(0, 4), max_size=6),
)
def test_a_compacted_read_ends_where_a_whole_read_does(
    ops: list[tuple[Any, ...]], restarts: list[int]
) -> None:
    """A node that starts late, reading the last message of every subject, with messages
    delivered again, holds what a node that applied every message holds; a node that
    reads that same state again as a new life applies no put it holds already."""
    writer = Writer()
    writer.run(ops)
    whole = Host()
    read(writer.messages, whole, Replay())
    late = Host()
    read(list(delivered_again(writer.compacted(), restarts)), late, Replay())
    assert late.state() == whole.state()
    once = Host()
    read(writer.compacted(), once, Replay())
    assert late.given == once.given  # nothing delivered again is applied again
    assert whole.ignored == late.ignored == []

    position = Replay()
    read(writer.messages, again := Host(), position)
    held = again.state()
    again.given.clear()
    position.new_life()
    read(writer.compacted(), again, position)
    seen_realms, seen_objects = position.stop_reading()
    assert stale_changes(again.realms.values(), seen_realms, seen_objects, 0.0) == []
    assert again.state() == held
    assert not [c for c in again.given if isinstance(c, RealmPut | ObjectPut)]
    assert again.ignored == []


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(OPS, max_size=30), more=st.lists(OPS, max_size=30))
def test_reading_a_new_life_ends_with_what_that_life_holds(
    ops: list[tuple[Any, ...]], more: list[tuple[Any, ...]]
) -> None:
    """A node holding one life reads another (the same history gone further, re-seeded),
    then drops what it lacks: it holds what a node that read only that life holds."""
    old = Writer()
    old.run(ops)
    node, position = Host(), Replay()
    read(old.messages, node, position)
    new = Writer()
    new.run([*ops, *more])
    fresh = Host()
    read(new.compacted(), fresh, Replay())

    position.new_life()
    read(new.compacted(), node, position)
    seen_realms, seen_objects = position.stop_reading()
    for change in stale_changes(list(node.realms.values()), seen_realms, seen_objects, 0.0):
        node.apply(change)
    assert node.state() == fresh.state()
    assert node.ignored == fresh.ignored == []
