"""Who is in the cluster: the leases every node renews, and when one counts as lost.

Each node renews its lease (``hive.lease.<node>``) every ``lease_interval``; every node
reads the others' renewals in log order and declares lost a node it has not heard for
``lease_ttl - lease_interval`` (the *deadline*), by proposing a `NodeLost` on that lease.
The proposal is compare-and-set on the sequence of the last renewal this node applied
(its *fence*), so whoever proposes, exactly one `NodeLost` lands per silent lease, and
none once the node renewed: its renewal moved the lease past the fence.

Everything here is pure: the cluster log (`server.cluster.jetstream_log`) reads the
stream and the clocks, tells `Membership` what it applied or stored and when, asks it
which nodes are overdue and which sequence fences a write, and does the I/O. Two clocks
enter, never mixed: ``now`` is the node's monotonic clock, compared only with itself
(lease periods, renewal ages); the times of losses are the ``at`` of the `NodeLost`
messages, wall-clock times written in the log (``lost_nodes``).

Rules
=====

A lease is *followed* from the first renewal of another node this node applies until
that node's loss is applied. This node never follows its own lease, so it never
declares itself lost. A period of a followed lease starts at its latest renewal, or
whenever this node could not have heard one:

==========================  ============================================  ==================
input                       state change                                  output
==========================  ============================================  ==================
`renewed` (another node)    its lease: fenced by this renewal's           -
                            sequence, a new period from ``now``; its
                            renewal noted (time, writing process); its
                            lost incarnations no longer listed
`renewed` (this node)       none                                          -
`stored` (this node's       its fence for the next renewal (unless this   -
renewal, by JetStream)      node took a new identity meanwhile); when
                            it was last renewed
`node_lost`                 its lease no longer followed, its renewal     -
                            forgotten; listed lost (at the loss's
                            ``at``) when a renewal of it was applied
                            here from another process than the loss's
`refresh`                   every followed lease: a new period from       -
                            ``now``
`new_life`                  every followed lease: fence 0, a new period   -
                            from ``now``; this node's own fence forgotten
`reincarnated`              when this node last renewed: forgotten        -
`overdue`                   every lease whose period started more than    its node: propose
                            the deadline before ``now``: a new period     `NodeLost`
                            from ``now`` (so one proposal per period)
==========================  ============================================  ==================

When the log calls them:

* `refresh`: when this node's own renewal is refused (NATS is away, or the stream has
  no leader: the others' silence says nothing), and when it follows the stream again
  after a reconnection. `overdue` is asked only while this node's last renewal was
  stored and it follows the stream: a node that cannot renew, or does not read the
  stream, hears nobody and judges nobody.
* `new_life`: when it starts reading a new stream life (`server.cluster.recovery`). The
  leases it followed start from zero, so a node that does not renew in the new life is
  declared lost; sequences of the old life mean nothing in the new one.

Fences
======

* `loss_fence(node)`: the sequence of the last renewal of `node` applied in this life (0:
  none). A `NodeLost` stored over it proves that nobody renewed the lease since.
* `renewal_fence(node, applied)`: the sequence a renewal of this node's lease is
  compare-and-set against: the later of its last renewal JetStream stored and the last
  message `applied` on its subject. A lagging consumer must not make a healthy node miss
  renewals, and a renewal whose acknowledgement was lost is known once applied. A
  `NodeLost` on this lease cannot be among them: applying it gives the node a new
  identity, hence a new lease.
* `renews_over(last, node)`: a refused renewal is made again at once over the lease's
  last message when that message is the node's own renewal (stored, its
  acknowledgement lost) or there is none (a stream re-created or re-seeded), never over
  a `NodeLost`: the node was declared lost and takes a new identity.

For the operator
================

`renewals` says when each lease was last renewed, never restarted by a period of
`refresh`, `new_life` or `overdue` (those only keep a node from being judged on silence
it could not hear). `lost_nodes` lists the nodes declared lost in the last `LOST_SHOWN`
seconds: a node that left gracefully wrote its own `NodeLost`, with the message ids of
the process that wrote its renewals, and is not listed; nor is a loss read before any
renewal of that node (at start-up), nor a node whose base name renewed since under a
new incarnation (``base#incarnation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.model.changes import Change, LeaseRenewed

LOST_SHOWN = 600.0
"""Seconds a node declared lost stays in `Membership.lost_nodes` (``hivectl cluster
status``), unless it comes back under a new incarnation first."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Another node's lease as this node follows it."""

    fence: int
    """The sequence of the last renewal applied in this life (0: none yet)."""
    since: float
    """When its current period started (``now``, the monotonic clock)."""


class Membership:
    """The leases of one node's view of the cluster (the rules in the module docstring)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        """Seconds of a period without a renewal after which a node is declared lost."""
        self._leases: dict[str, Lease] = {}
        self._own: tuple[str, int] = ("", 0)
        """(node id, sequence) of this node's last renewal JetStream stored."""
        self._own_renewed: float | None = None
        self._renewals: dict[str, tuple[float, str | None]] = {}
        """Other nodes' last renewals: node -> (when applied here, the writing process)."""
        self._lost: dict[str, float] = {}
        """Nodes others declared lost, since `LOST_SHOWN` ago: node -> `NodeLost.at`."""

    # -- inputs ---------------------------------------------------------------------

    def renewed(
        self, node: str, sequence: int, message_id: str | None, now: float, me: str
    ) -> None:
        """A renewal of `node`'s lease applied at `sequence`; `me` is this node's id."""
        if node == me:
            return
        self._leases[node] = Lease(sequence, now)
        self._renewals[node] = (now, writer(message_id))
        if self._lost:
            base = node.split("#", 1)[0]
            self._lost = {
                lost: at for lost, at in self._lost.items() if not lost.startswith(f"{base}#")
            }

    def stored(self, node: str, sequence: int, now: float, me: str) -> None:
        """JetStream stored this node's renewal of `node`'s lease; `me` is its id now."""
        if node == me:
            self._own = (node, sequence)
            self._own_renewed = now

    def node_lost(self, node: str, at: float, message_id: str | None) -> None:
        """A `NodeLost` of `node` applied, written at `at` (wall clock) by `message_id`."""
        self._leases.pop(node, None)
        renewal = self._renewals.pop(node, None)
        if renewal is None or renewal[1] == writer(message_id):
            return
        self._lost = {lost: when for lost, when in self._lost.items() if at - when < LOST_SHOWN}
        self._lost[node] = at

    def refresh(self, now: float) -> None:
        """Start a new period for every lease: silence this node could not hear proves nothing."""
        self._leases = {node: Lease(lease.fence, now) for node, lease in self._leases.items()}

    def new_life(self, now: float) -> None:
        """Follow every lease anew in a new stream life, where old sequences mean nothing."""
        self._leases = {node: Lease(0, now) for node in self._leases}
        self._own = ("", 0)

    def reincarnated(self) -> None:
        """This node took a new identity: its new lease was never renewed yet."""
        self._own_renewed = None

    def overdue(self, now: float) -> list[str]:
        """The nodes to declare lost now, each once per period."""
        late = [node for node, lease in self._leases.items() if now - lease.since > self.deadline]
        for node in late:
            self._leases[node] = Lease(self._leases[node].fence, now)
        return late

    # -- fences -------------------------------------------------------------------------

    def loss_fence(self, node: str) -> int:
        lease = self._leases.get(node)
        return 0 if lease is None else lease.fence

    def renewal_fence(self, node: str, applied: int) -> int:
        owner, stored = self._own
        return max(applied, stored) if owner == node else applied

    # -- views ----------------------------------------------------------------------------

    def live_nodes(self) -> list[str]:
        """The other nodes whose lease this node follows: alive, as far as it knows."""
        return sorted(self._leases)

    def renewals(self, me: str) -> dict[str, float]:
        """When each lease this node follows, its own (`me`) included, was last renewed
        (``now`` as given; its own: when JetStream stored it)."""
        renewed = {node: at for node, (at, _) in self._renewals.items()}
        if self._own_renewed is not None:
            renewed[me] = self._own_renewed
        return renewed

    def lost_nodes(self, now: float) -> dict[str, float]:
        """The nodes declared lost in the last `LOST_SHOWN` seconds before `now` (wall
        clock), with when, that have not come back under a new incarnation."""
        return {node: at for node, at in self._lost.items() if now - at < LOST_SHOWN}


def renews_over(last: Change | None, node: str) -> bool:
    """Whether `node` may renew its lease over `last`, the lease subject's last message
    (None: the subject holds none).

    Over its own renewal, or over nothing: a stream re-created or re-seeded holds no
    message on the lease yet, and cannot hold the lease's loss either, since a
    `NodeLost` stays the last message of its subject. Never over a `NodeLost`: the node
    was declared lost and takes a new identity (`ClusterLog._reincarnate`).
    """
    return last is None or (isinstance(last, LeaseRenewed) and last.node == node)


def renews_again(last: Change | None, at: int, refused_at: int, node: str) -> bool:
    """Whether a renewal of `node`'s lease refused over sequence `refused_at` (JetStream's
    last sequence of the subject then) is made again over `last`, the subject's last
    message, found at `at` (0: none): only if nothing was written there since."""
    return at == refused_at and renews_over(last, node)


def writer(message_id: str | None) -> str | None:
    """The process that wrote a message: the prefix of its id (`ClusterLog._new_id`)."""
    return None if message_id is None else message_id.rpartition(".")[0]
