"""The pure membership rules (`server.cluster.membership`): one test per rule, a brute-force
model of one node's view, and a simulated cluster whose lease fences are compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from server.cluster.membership import (
    LOST_SHOWN,
    Membership,
    renews_again,
    renews_over,
    writer,
)
from server.model.changes import Change, LeaseRenewed
from server.model.presence import NodeLost, Tick

DEADLINE = 4.0
ME = "me#1"


def following(*renewals: tuple[str, int, float]) -> Membership:
    """A view that applied these renewals (node, sequence, now), all from process "p"."""
    members = Membership(DEADLINE)
    for node, sequence, now in renewals:
        members.renewed(node, sequence, f"p.{sequence}", now, ME)
    return members


# -- one test per rule --------------------------------------------------------------------


def test_another_nodes_renewal_starts_following_its_lease_fenced_by_its_sequence() -> None:
    members = following(("a#1", 3, 0.0), ("b#1", 5, 0.0), ("a#1", 7, 1.0))
    assert members.live_nodes() == ["a#1", "b#1"]
    assert (members.loss_fence("a#1"), members.loss_fence("b#1")) == (7, 5)
    assert members.loss_fence("c#1") == 0


def test_this_nodes_own_lease_is_never_followed_nor_judged() -> None:
    members = following((ME, 3, 0.0))
    assert members.live_nodes() == []
    assert members.overdue(100.0) == []
    assert members.renewals(ME) == {}


def test_a_lease_is_overdue_only_past_the_deadline_then_once_per_period() -> None:
    members = following(("a#1", 3, 10.0))
    assert members.overdue(10.0 + DEADLINE) == []
    assert members.overdue(10.5 + DEADLINE) == ["a#1"]
    assert members.overdue(11.0 + DEADLINE) == []  # proposed: a new period started
    assert members.overdue(10.5 + 2 * DEADLINE) == []
    assert members.overdue(11.0 + 2 * DEADLINE) == ["a#1"]
    assert members.loss_fence("a#1") == 3  # a period of silence keeps the fence


def test_a_renewal_starts_a_new_period() -> None:
    members = following(("a#1", 3, 0.0))
    members.renewed("a#1", 9, "p.9", 3.0, ME)
    assert members.overdue(3.0 + DEADLINE) == []
    assert members.overdue(3.5 + DEADLINE) == ["a#1"]


def test_refresh_starts_a_new_period_for_every_lease_keeping_its_fence() -> None:
    members = following(("a#1", 3, 0.0), ("b#1", 4, 1.0))
    members.refresh(2.0)
    assert members.overdue(2.0 + DEADLINE) == []
    assert members.overdue(2.5 + DEADLINE) == ["a#1", "b#1"]
    assert (members.loss_fence("a#1"), members.loss_fence("b#1")) == (3, 4)


def test_a_new_life_follows_the_same_leases_from_zero() -> None:
    members = following(("a#1", 3, 0.0))
    members.stored(ME, 8, 0.0, ME)
    members.new_life(2.0)
    assert members.live_nodes() == ["a#1"]
    assert members.loss_fence("a#1") == 0
    assert members.renewal_fence(ME, 0) == 0  # the old life's sequence means nothing here
    assert members.overdue(2.5 + DEADLINE) == ["a#1"]


def test_a_loss_ends_following_the_lease() -> None:
    members = following(("a#1", 3, 0.0), ("b#1", 4, 0.0))
    members.node_lost("a#1", 1000.0, "q.5")
    assert members.live_nodes() == ["b#1"]
    assert members.loss_fence("a#1") == 0
    assert members.overdue(100.0) == ["b#1"]


def test_a_renewal_is_fenced_by_the_later_of_the_one_stored_and_the_one_applied() -> None:
    members = Membership(DEADLINE)
    assert members.renewal_fence(ME, 0) == 0
    members.stored(ME, 8, 1.0, ME)
    assert members.renewal_fence(ME, 5) == 8  # the consumer lags behind
    assert members.renewal_fence(ME, 12) == 12  # stored, acknowledgement lost, applied
    assert members.renewal_fence("me#2", 0) == 0  # a new identity: a new lease


def test_a_renewal_stored_after_this_node_took_a_new_identity_is_not_its_own() -> None:
    members = Membership(DEADLINE)
    members.stored(ME, 8, 1.0, "me#2")
    assert members.renewal_fence(ME, 0) == 0
    assert members.renewals("me#2") == {}


def test_renewals_show_the_last_applied_and_this_nodes_last_stored() -> None:
    members = following(("a#1", 3, 1.0))
    members.stored(ME, 4, 2.0, ME)
    members.refresh(5.0)
    members.overdue(50.0)
    assert members.renewals(ME) == {"a#1": 1.0, ME: 2.0}  # periods do not move them
    members.reincarnated()
    assert members.renewals("me#2") == {"a#1": 1.0}


def test_a_node_declared_lost_by_another_process_is_listed_for_a_while() -> None:
    members = following(("a#1", 3, 0.0))
    members.node_lost("a#1", 1000.0, "q.9")
    assert members.lost_nodes(1000.0) == {"a#1": 1000.0}
    assert members.lost_nodes(1000.0 + LOST_SHOWN - 1) == {"a#1": 1000.0}
    assert members.lost_nodes(1000.0 + LOST_SHOWN) == {}
    assert members.renewals(ME) == {}


def test_a_node_that_left_wrote_its_own_loss_and_is_not_listed() -> None:
    members = following(("a#1", 3, 0.0))
    members.node_lost("a#1", 1000.0, "p.4")
    assert members.lost_nodes(1000.0) == {}


def test_a_loss_read_before_any_renewal_of_its_node_is_not_listed() -> None:
    members = Membership(DEADLINE)
    members.node_lost("a#1", 1000.0, "q.9")
    assert members.lost_nodes(1000.0) == {}


def test_a_lost_node_back_under_a_new_incarnation_is_no_longer_listed() -> None:
    members = following(("a#1", 3, 0.0), ("ab#1", 4, 0.0))
    members.node_lost("a#1", 1000.0, "q.9")
    members.node_lost("ab#1", 1000.0, "q.10")
    members.renewed("a#2", 12, "r.1", 5.0, ME)
    assert members.lost_nodes(1000.0) == {"ab#1": 1000.0}


def test_older_losses_are_dropped_when_a_new_one_is_listed() -> None:
    members = following(("a#1", 3, 0.0), ("b#1", 4, 0.0))
    members.node_lost("a#1", 1000.0, "q.9")
    members.node_lost("b#1", 1000.0 + LOST_SHOWN, "q.10")
    assert members.lost_nodes(1000.0) == {"b#1": 1000.0 + LOST_SHOWN}


def test_a_node_renews_over_its_own_renewal_or_nothing_never_over_its_loss() -> None:
    assert renews_over(None, "a#1")
    assert renews_over(LeaseRenewed("a#1", 1.0), "a#1")
    assert not renews_over(LeaseRenewed("b#1", 1.0), "a#1")
    assert not renews_over(NodeLost("a#1", 1.0), "a#1")
    assert not renews_over(Tick(1.0), "a#1")


def test_a_refused_renewal_is_made_again_only_over_what_was_refused() -> None:
    assert renews_again(LeaseRenewed("a#1", 1.0), 7, 7, "a#1")
    assert renews_again(None, 0, 0, "a#1")
    assert not renews_again(LeaseRenewed("a#1", 1.0), 9, 7, "a#1")  # written since
    assert not renews_again(NodeLost("a#1", 1.0), 7, 7, "a#1")


def test_the_writer_of_a_message_is_the_prefix_of_its_id() -> None:
    assert writer("1a2b3c4d.17") == "1a2b3c4d"
    assert writer(None) is None


# -- one node's view against a brute-force model --------------------------------------------

OTHERS = ("a#1", "a#2", "b#1", "ab#1")
NODES = (*OTHERS, ME)
"""After it takes a new identity, this node's first one (`ME`) is just another node."""
WRITERS = ("p", "q")
WALL = 1_000_000.0
"""Wall-clock time at monotonic 0: losses carry wall-clock times."""


@dataclass
class History:
    """Everything one node was told, in order; the model answers from it alone."""

    renewals: list[tuple[int, str, int, float, str]] = field(default_factory=list)
    """(step, node, sequence, now, writer) of each renewal of another node."""
    losses: list[tuple[int, str, float, str]] = field(default_factory=list)
    """(step, node, wall-clock at, writer)."""
    restarts: list[tuple[int, float, bool]] = field(default_factory=list)
    """(step, now, new life) of each `refresh` or `new_life`."""
    proposals: list[tuple[int, str, float]] = field(default_factory=list)
    stores: list[tuple[int, str, int, float]] = field(default_factory=list)
    """(step, node, sequence, now) of this node's renewals stored under its identity then."""
    reincarnations: list[int] = field(default_factory=list)

    def last_loss(self, node: str) -> int:
        return max((step for step, lost, _, _ in self.losses if lost == node), default=-1)

    def followed(self, node: str) -> list[tuple[int, str, int, float, str]]:
        """The renewals of `node` since its last loss."""
        since = self.last_loss(node)
        return [r for r in self.renewals if r[1] == node and r[0] > since]

    def fence(self, node: str) -> int:
        renewals = self.followed(node)
        lives = [step for step, _, new in self.restarts if new]
        if not renewals or (lives and renewals[-1][0] < lives[-1]):
            return 0
        return renewals[-1][2]

    def period_start(self, node: str) -> float:
        starts = [now for _, _, _, now, _ in self.followed(node)[-1:]]
        since = self.followed(node)[0][0]
        starts += [now for step, now, _ in self.restarts if step > since]
        starts += [now for step, lost, now in self.proposals if lost == node and step > since]
        return max(starts)

    def own_fence(self, node: str, applied: int) -> int:
        lives = [step for step, _, new in self.restarts if new]
        stored = [s for s in self.stores if not lives or s[0] > lives[-1]]
        if stored and stored[-1][1] == node:
            return max(applied, stored[-1][2])
        return applied

    def renewed_at(self, me: str) -> dict[str, float]:
        shown = {}
        for node in {r[1] for r in self.renewals}:
            renewals = self.followed(node)
            if renewals:
                shown[node] = renewals[-1][3]
        own = [s for s in self.stores if s[0] > max(self.reincarnations, default=-1)]
        if own:
            shown[me] = own[-1][3]
        return shown

    def listed(self, now: float) -> dict[str, float]:
        """Each node's last loss written by another process than its renewals, after a
        renewal, with no renewal of any incarnation of its base since."""
        shown: dict[str, float] = {}
        for step, node, at, by in self.losses:
            before = [r for r in self.renewals if r[1] == node and r[0] < step]
            previous = max((s for s, n, _, _ in self.losses if n == node and s < step), default=-1)
            heard = [r for r in before if r[0] > previous]
            if not heard or heard[-1][4] == by:
                continue
            base = node.split("#", 1)[0]
            back = [r for r in self.renewals if r[0] > step and r[1].startswith(f"{base}#")]
            if not back:
                shown[node] = at
        return {node: at for node, at in shown.items() if now - at < LOST_SHOWN}


class MembershipVersusModel(RuleBasedStateMachine):
    """Random renewals, time passing, losses, outages, new lives and new identities, told
    to `Membership` and written down; what it answers is checked against the history."""

    def __init__(self) -> None:
        super().__init__()
        self.members = Membership(DEADLINE)
        self.history = History()
        self.me = ME
        self.now = 0.0
        self.step = 0
        self.sequence = 0

    def _next(self) -> int:
        self.step += 1
        return self.step

    def _sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 4.0, 4.5, 300.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(node=st.sampled_from(NODES), by=st.sampled_from(WRITERS))
    def renewal_applied(self, node: str, by: str) -> None:
        sequence = self._sequence()
        self.members.renewed(node, sequence, f"{by}.{sequence}", self.now, self.me)
        if node != self.me:
            self.history.renewals.append((self._next(), node, sequence, self.now, by))

    @rule(node=st.sampled_from(NODES), by=st.sampled_from(WRITERS))
    def loss_applied(self, node: str, by: str) -> None:
        sequence = self._sequence()
        self.members.node_lost(node, WALL + self.now, f"{by}.{sequence}")
        self.history.losses.append((self._next(), node, WALL + self.now, by))

    @rule()
    def own_renewal_stored(self) -> None:
        sequence = self._sequence()
        self.members.stored(self.me, sequence, self.now, self.me)
        self.history.stores.append((self._next(), self.me, sequence, self.now))

    @rule()
    def own_renewal_stored_under_the_identity_it_left(self) -> None:
        self.members.stored(ME, self._sequence(), self.now, self.me)
        if self.me == ME:
            self.history.stores.append((self._next(), ME, self.sequence, self.now))

    @rule()
    def took_a_new_identity(self) -> None:
        self.me = f"me#{int(self.me.rpartition('#')[2]) + 1}"
        self.members.reincarnated()
        self.history.reincarnations.append(self._next())

    @rule(new_life=st.booleans())
    def could_not_hear(self, new_life: bool) -> None:
        """An own renewal refused, following again, or a new stream life."""
        if new_life:
            self.members.new_life(self.now)
        else:
            self.members.refresh(self.now)
        self.history.restarts.append((self._next(), self.now, new_life))

    @rule()
    def judge(self) -> None:
        history = self.history
        proposed = self.members.overdue(self.now)
        followed = [node for node in NODES if history.followed(node)]
        expected = [n for n in followed if self.now - history.period_start(n) > DEADLINE]
        assert sorted(proposed) == sorted(expected)
        assert self.me not in proposed
        step = self._next()
        for node in proposed:
            renewed = history.followed(node)[-1][3]
            assert self.now - renewed > DEADLINE  # none within the deadline of a renewal
            history.proposals.append((step, node, self.now))

    @invariant()
    def agrees_with_the_model(self) -> None:
        history = self.history
        assert self.members.live_nodes() == sorted(n for n in NODES if history.followed(n))
        for node in NODES:
            assert self.members.loss_fence(node) == history.fence(node), node
        for applied in (0, self.sequence):
            for node in (self.me, ME):
                assert self.members.renewal_fence(node, applied) == history.own_fence(node, applied)
        assert self.members.renewals(self.me) == history.renewed_at(self.me)
        assert self.members.lost_nodes(WALL + self.now) == history.listed(WALL + self.now)

    @invariant()
    def judged_every_period_once(self) -> None:
        """Between two proposals for a node, a whole deadline without a renewal, a refresh or
        a new life: exactly one proposal per expired period."""
        history = self.history
        for node in NODES:
            times = [(step, now) for step, lost, now in history.proposals if lost == node]
            for (first, then), (second, later) in pairwise(times):
                restarted = any(first < r[0] < second for r in history.renewals if r[1] == node)
                restarted |= any(first < step < second for step, _, _ in history.restarts)
                restarted |= any(
                    first < step < second for step, n, _, _ in history.losses if n == node
                )
                if not restarted:
                    assert later - then > DEADLINE


MembershipVersusModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
test_membership_agrees_with_brute_force_model = MembershipVersusModel.TestCase


# -- a cluster of views over one stream with compare-and-set --------------------------------


@dataclass
class Node:
    """A node of the simulated cluster: its view, how far it read the stream, its state."""

    base: str
    members: Membership = field(default_factory=lambda: Membership(DEADLINE))
    incarnation: int = 1
    read: int = 0
    """Messages of the stream applied (the stream is never compacted here)."""
    applied_on: dict[str, int] = field(default_factory=dict)
    healthy: bool = False
    """Its own last renewal was stored: it may judge the others."""
    silent: bool = False
    """Paused, cut off or crashed: it neither renews, nor reads, nor judges."""

    @property
    def id(self) -> str:
        return f"{self.base}#{self.incarnation}"


@dataclass
class Message:
    subject: str
    change: Change
    id: str
    stored_at: float


class SimulatedCluster(RuleBasedStateMachine):
    """Nodes renewing, reading the stream late, pausing and coming back, and proposing
    losses fenced as the cluster log fences them: whatever happens, at most one `NodeLost`
    lands per lease, nothing after it, never within the deadline of a stored renewal; and
    once the others settle, a silent node is declared lost exactly once."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes = [Node(base) for base in ("a", "b", "c")]
        self.stream: list[Message] = []
        self.now = 0.0

    # The stream: compare-and-set on a subject's last sequence, as JetStream does.

    def _last(self, subject: str) -> tuple[int, Message | None]:
        for sequence in range(len(self.stream), 0, -1):
            if self.stream[sequence - 1].subject == subject:
                return sequence, self.stream[sequence - 1]
        return 0, None

    def _store(self, subject: str, change: Change, expected: int, by: str) -> int | None:
        if self._last(subject)[0] != expected:
            return None
        self.stream.append(Message(subject, change, f"{by}.{len(self.stream) + 1}", self.now))
        return len(self.stream)

    # What the cluster log does, step by step.

    def renew(self, node: Node) -> None:
        """`ClusterLog._renew_lease` and the refresh of its loop when refused."""
        me = node.id
        subject = f"lease.{me}"
        change = LeaseRenewed(me, self.now)
        fence = node.members.renewal_fence(me, node.applied_on.get(subject, 0))
        stored = self._store(subject, change, fence, node.base)
        if stored is None:
            current, last = self._last(subject)
            if renews_again(None if last is None else last.change, current, current, me):
                stored = self._store(subject, change, current, node.base)
        node.healthy = stored is not None
        if stored is None:
            node.members.refresh(self.now)
        else:
            node.members.stored(me, stored, self.now, node.id)

    def read(self, node: Node, count: int) -> None:
        """`ClusterLog._apply` for leases and losses, in stream order."""
        for message in self.stream[node.read : node.read + count]:
            node.read += 1
            node.applied_on[message.subject] = node.read
            change = message.change
            if isinstance(change, LeaseRenewed):
                node.members.renewed(change.node, node.read, message.id, self.now, node.id)
            elif isinstance(change, NodeLost):
                node.members.node_lost(change.node, change.at, message.id)
                if change.node == node.id:
                    node.incarnation += 1
                    node.members.reincarnated()

    def judge(self, node: Node) -> None:
        """`ClusterLog._leases_loop` proposing, and `_declare_lost`."""
        if not node.healthy:
            return
        for lost in node.members.overdue(self.now):
            subject = f"lease.{lost}"
            self._store(subject, NodeLost(lost, self.now), node.members.loss_fence(lost), node.base)

    def _awake(self) -> list[Node]:
        return [node for node in self.nodes if not node.silent]

    # Rules.

    @rule(dt=st.sampled_from([0.25, 1.0, 2.0, 4.5]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(index=st.integers(0, 2))
    def renews(self, index: int) -> None:
        if not self.nodes[index].silent:
            self.renew(self.nodes[index])

    @rule(index=st.integers(0, 2), count=st.integers(1, 4))
    def reads(self, index: int, count: int) -> None:
        if not self.nodes[index].silent:
            self.read(self.nodes[index], count)

    @rule(index=st.integers(0, 2))
    def judges(self, index: int) -> None:
        if not self.nodes[index].silent:
            self.judge(self.nodes[index])

    @rule(index=st.integers(0, 2))
    def falls_silent(self, index: int) -> None:
        self.nodes[index].silent = True

    @rule(index=st.integers(0, 2))
    def comes_back(self, index: int) -> None:
        """As from a pause: it may judge before it reads what it missed, its stale
        proposals refused by the fence."""
        self.nodes[index].silent = False

    @precondition(lambda self: any(not node.silent for node in self.nodes))
    @rule()
    def the_others_settle(self) -> None:
        """The awake nodes renew and read everything (twice: a node that learns it was
        declared lost renews under its new identity), a deadline passes with them
        renewing, and each judges: every silent lease they follow is declared lost."""
        awake = self._awake()
        for _ in range(2):
            for node in awake:
                self.renew(node)
            for node in awake:
                self.read(node, len(self.stream))
        silent = {node.id for node in self.nodes if node.silent}
        followed = {lease for node in awake for lease in node.members.live_nodes()}
        self.now += DEADLINE + 0.5
        for node in awake:
            self.renew(node)
        for node in awake:
            self.read(node, len(self.stream))
        for node in awake:
            self.judge(node)
        for lease in silent & followed:
            losses = [m for m in self.stream if m.subject == f"lease.{lease}"]
            assert isinstance(losses[-1].change, NodeLost), lease
        for node in awake:
            _, last = self._last(f"lease.{node.id}")
            assert last is not None and isinstance(last.change, LeaseRenewed), node.id

    @invariant()
    def one_loss_per_lease_never_early(self) -> None:
        subjects = {message.subject for message in self.stream}
        for subject in subjects:
            lease = [m for m in self.stream if m.subject == subject]
            kinds = [type(m.change) for m in lease]
            if NodeLost in kinds:
                at = kinds.index(NodeLost)
                assert at == len(kinds) - 1, subject  # nothing after a loss, no second one
                assert at > 0, subject  # a lease is lost only after a renewal of it
                assert lease[at].stored_at - lease[at - 1].stored_at > DEADLINE, subject

    @invariant()
    def nobody_declares_itself_lost(self) -> None:
        for message in self.stream:
            if isinstance(message.change, NodeLost):
                assert not message.id.startswith(f"{message.change.node.split('#')[0]}.")


SimulatedCluster.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None
)
test_leases_over_a_simulated_stream = SimulatedCluster.TestCase


@pytest.mark.parametrize("dt", [DEADLINE, DEADLINE + 0.5])
def test_the_simulated_cluster_declares_a_silent_node_lost_once(dt: float) -> None:
    """The scenario the machine above explores, spelled out."""
    cluster = SimulatedCluster()
    a, b, c = cluster.nodes
    for node in cluster.nodes:
        cluster.renew(node)
    for node in cluster.nodes:
        cluster.read(node, len(cluster.stream))
    c.silent = True
    cluster.now += dt
    for node in (a, b):
        cluster.renew(node)
        cluster.read(node, len(cluster.stream))
    cluster.judge(a)
    cluster.judge(b)
    losses = [m for m in cluster.stream if isinstance(m.change, NodeLost)]
    assert [m.change.node for m in losses] == ([] if dt == DEADLINE else ["c#1"])
