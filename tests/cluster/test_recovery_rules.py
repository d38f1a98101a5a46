"""The pure rules of stream recovery (`server.cluster.recovery`), fed inputs directly."""

from __future__ import annotations

import orjson
import pytest

from server.cluster.recovery import (
    Action,
    Candidate,
    Epoch,
    Position,
    StreamView,
    decide,
    decode_epoch,
    encode_epoch,
    purges_before_claim,
    seed_changes,
    should_claim,
    stale_changes,
)
from server.model.changes import ObjectPut, ObjectRemoved, RealmPut, RealmRemoved
from server.model.presence import ProviderUp
from server.model.records import ObjectRecord, RealmRecord

CREATED = "2026-12-05 09:00:00+00:00"
ME = "a#1"
TIMEOUT = 10.0

COMPLETE = Epoch("e1", "b#1", complete=True)
FOLLOWING = Position(CREATED, "e1", applied=12, applied_id="x.12", held="e1")
FRESH = Position(None, None, 0, None)


def view(
    epoch: Epoch | None = COMPLETE,
    *,
    created: str = CREATED,
    last: int = 20,
    at_applied: str | None = "x.12",
) -> StreamView:
    return StreamView(created, last, epoch, epoch_seq=1 if epoch else 0, at_applied=at_applied)


def action(
    seen: StreamView | None, position: Position = FOLLOWING, incomplete_for: float = 0.0
) -> Action:
    return decide(seen, position, ME, incomplete_for=incomplete_for, reseed_timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("seen", "position", "incomplete_for", "expected"),
    [
        # The stream this node follows, holding what it applied: nothing to do.
        (view(), FOLLOWING, 0.0, Action.FOLLOW),
        # Its message at the applied sequence was replaced by a later one: still the same.
        (view(at_applied=None), FOLLOWING, 0.0, Action.FOLLOW),
        (view(last=12), FOLLOWING, 0.0, Action.FOLLOW),
        # Gone (store lost, deleted by hand): create it.
        (None, FOLLOWING, 0.0, Action.CREATE),
        # Back empty, or created by a node that holds nothing: someone must seed it.
        (view(None), FOLLOWING, 0.0, Action.CLAIM),
        # Another node seeds it: wait, until it took too long.
        (view(Epoch("e2", "b#1", complete=False)), FOLLOWING, 0.0, Action.WAIT),
        (view(Epoch("e2", "b#1", complete=False)), FOLLOWING, TIMEOUT, Action.CLAIM),
        # This node's own seeding stopped half-way: take it up again at once.
        (view(Epoch("e2", ME, complete=False)), FOLLOWING, 0.0, Action.CLAIM),
        # Another life, complete: read it anew.
        (view(Epoch("e2", "b#1", complete=True)), FOLLOWING, 0.0, Action.RESYNC),
        (view(created="2026-12-05 09:05:00+00:00"), FOLLOWING, 0.0, Action.RESYNC),
        # A node that follows nothing yet reads the stream.
        (view(), FRESH, 0.0, Action.RESYNC),
        # Started anew by a node that held nothing: one that holds state re-seeds over it;
        # one that holds nothing, or already read that epoch whole, reads it.
        (view(Epoch("e2", "c#1", complete=True, seeded=False)), FOLLOWING, 0.0, Action.CLAIM),
        (view(Epoch("e2", "c#1", complete=True, seeded=False)), FRESH, 0.0, Action.RESYNC),
        (
            view(Epoch("e2", "c#1", complete=True, seeded=False)),
            Position(None, None, 0, None, held="e2"),
            0.0,
            Action.RESYNC,
        ),
        # The same life, moved backwards: a sequence this node applied means another
        # message now, or nothing yet; the one that holds the most re-seeds it.
        (view(last=11), FOLLOWING, 0.0, Action.CLAIM),
        (view(at_applied="y.3"), FOLLOWING, 0.0, Action.CLAIM),
    ],
)
def test_decide(
    seen: StreamView | None, position: Position, incomplete_for: float, expected: Action
) -> None:
    assert action(seen, position, incomplete_for) is expected


def test_messages_without_an_id_cannot_tell_a_reset() -> None:
    old = Position(CREATED, "e1", applied=12, applied_id=None)
    assert action(view(at_applied="y.3"), old) is Action.FOLLOW


@pytest.mark.parametrize(
    ("others", "waited", "claims"),
    [
        ([], 0.0, True),
        ([Candidate("b#1", 11, holds=True)], 0.0, True),
        ([Candidate("b#1", 13, holds=True)], 0.0, False),
        # Equal: the greater node id.
        ([Candidate("b#1", 12, holds=True)], 0.0, False),
        ([Candidate("0#1", 12, holds=True)], 0.0, True),
        # A node that holds nothing never outranks one that does.
        ([Candidate("z#1", 99, holds=False)], 0.0, True),
        # The chosen one did not claim in time: anyone may.
        ([Candidate("b#1", 13, holds=True)], TIMEOUT, False),
        ([Candidate("b#1", 13, holds=True)], 2 * TIMEOUT, True),
    ],
)
def test_should_claim(others: list[Candidate], waited: float, claims: bool) -> None:
    me = Candidate(ME, 12, holds=True)
    assert should_claim(me, others, waited=waited, reseed_timeout=TIMEOUT) is claims


def test_should_claim_waits_for_every_node_it_saw_alive() -> None:
    me = Candidate(ME, 12, holds=True)
    others = [Candidate("b#1", 3, holds=True)]
    expected = ["b#1", "c#1"]
    assert not should_claim(me, others, expected=expected, waited=1.0, reseed_timeout=TIMEOUT)
    answered = [*others, Candidate("c#1", 5, holds=True)]
    assert should_claim(me, answered, expected=expected, waited=1.0, reseed_timeout=TIMEOUT)
    # A node that never answers is waited for up to the timeout; then the best of the
    # others seeds.
    assert should_claim(me, others, expected=expected, waited=TIMEOUT, reseed_timeout=TIMEOUT)
    better = [Candidate("b#1", 20, holds=True)]
    assert not should_claim(me, better, expected=expected, waited=TIMEOUT, reseed_timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("seen", "position", "purges"),
    [
        # Writes that landed before anyone seeded it: nobody was told they were stored.
        (view(None), FOLLOWING, True),
        # The life the seeder read whole lost its tail: the seeder holds all of it.
        (view(last=11), FOLLOWING, True),
        # Another node's epoch (started holding nothing, or a seeding that stopped): what
        # it holds wins, the seeder adds what it lacks.
        (view(Epoch("e2", "c#1", complete=True, seeded=False)), FOLLOWING, False),
        (view(Epoch("e2", "b#1", complete=False)), FOLLOWING, False),
        # A seeder holding nothing drops nothing.
        (view(None), FRESH, False),
    ],
)
def test_purges_before_claim(seen: StreamView, position: Position, purges: bool) -> None:
    assert purges_before_claim(seen, position) is purges


def test_a_node_holding_nothing_yields_to_one_that_holds_state() -> None:
    fresh = Candidate("z#1", 0, holds=False)
    assert not should_claim(
        fresh, [Candidate("a#1", 5, holds=True)], waited=0.0, reseed_timeout=TIMEOUT
    )
    assert should_claim(fresh, [], waited=0.0, reseed_timeout=TIMEOUT)


def _realm() -> RealmRecord:
    realm = RealmRecord("city", "City", {"k": 1}, incarnation="i1")
    realm.objects["o/1"] = ObjectRecord("o/1", "One", dat={"v": 1}, tds=("t",), updated_at=5.0)
    realm.objects["o/2"] = ObjectRecord("o/2", updated_at=6.0)
    return realm


def test_seed_writes_realms_before_their_objects_then_providers() -> None:
    provider = ProviderUp("c1", ME, "gw", None, (("city", "o/1"),), 7.0)
    changes = seed_changes([_realm()], [provider], at=9.0)
    assert changes[0] == RealmPut("city", "City", {"k": 1}, "i1", 9.0)
    one, two = changes[1], changes[2]
    assert isinstance(one, ObjectPut) and isinstance(two, ObjectPut)
    assert (one.id, orjson.loads(one.dat), one.tds, one.realm_incarnation, one.at) == (
        "o/1",
        {"v": 1},
        ("t",),
        "i1",
        5.0,
    )
    assert (two.id, two.at) == ("o/2", 6.0)
    assert changes[3:] == [provider]


def test_stale_drops_what_the_new_life_lacks() -> None:
    gone = RealmRecord("gone", incarnation="g")
    gone.objects["x"] = ObjectRecord("x")
    stale = stale_changes([_realm(), gone], {"city"}, {("city", "o/1")}, at=3.0)
    assert stale == [RealmRemoved("gone", 3.0), ObjectRemoved("city", "o/2", 3.0)]
    assert stale_changes([_realm()], {"city"}, {("city", "o/1"), ("city", "o/2")}, 3.0) == []


def test_epoch_round_trip() -> None:
    for epoch in (Epoch("e1", "a#1", complete=False), Epoch("e2", "c#1", True, seeded=False)):
        assert decode_epoch(encode_epoch(epoch)) == epoch
    assert decode_epoch(b"not json") is None
    assert decode_epoch(b'{"k": "lease"}') is None
