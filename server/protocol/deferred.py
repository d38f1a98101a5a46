"""Replies that need the other nodes of a cluster first, and the seam that asks them.

Most requests are answered from this node's state (after the log, in a cluster). An
operator's view of every connection, or a disconnect that must reach the node holding
the connection, needs the other nodes too: the handler does its local part and returns
a `Deferred`, which the I/O shell awaits (the session's output held meanwhile, the rest
of its frame waiting) before it sends the reply. The other nodes are behind `Peers`
(core NATS request/reply, `server.cluster.peers`); on one node there are none. The
cluster's status needs JetStream as well: it is behind `ClusterView`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hivectl.core.wire import Message


@dataclass(frozen=True, slots=True)
class Deferred:
    """A reply the shell awaits: `reply` asks the other nodes and returns the message."""

    reply: Callable[[], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class Gathered:
    """What the other nodes answered to `Peers.ask`, and which did not answer in time."""

    answers: list[dict[str, Any]]
    unanswered: list[str]


class Peers(Protocol):
    async def ask(self, request: dict[str, Any]) -> Gathered:
        """Every other live node's answer to `request` (a bounded wait)."""
        ...


class ClusterView(Protocol):
    """The cluster as this node sees it, for ``hivectl cluster status``
    (`server.cluster.status`)."""

    def node(self) -> dict[str, Any]:
        """This node's own row: what it answers another node's request."""
        ...

    async def report(self, act: str) -> dict[str, Any]:
        """Every node, the stream and NATS; the other nodes are asked with `act`."""
        ...


def blank_row(node: str) -> dict[str, Any]:
    """A node's row with nothing known about it but its id: every key, in order."""
    return {
        "node": node,
        "incarnation": node.partition("#")[2] or None,
        "state": None,
        "writable": None,
        "applied": None,
        "lag": None,
        "leaseAge": None,
        "missed": False,
        "lostAt": None,
        "nats": None,
    }
