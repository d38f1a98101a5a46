"""The other nodes of a cluster, asked over core NATS: the operator's whole-cluster view.

An operator's request to list connections or to disconnect some reaches one node; the
connections live on all of them. That node does its own part, then publishes the request
on ``hive.ctl.<stream>.admin`` (`server.cluster.subjects`) with a reply inbox, and every
other node answers with its part (`server.protocol.handlers.admin.answer_peer`). It waits until
every node whose lease it follows has answered, at most `PEER_TIMEOUT`; the nodes that
did not answer are reported, so a partial answer is never mistaken for a whole one.

Core NATS, not the stream: these requests change no replicated state (a kicked provider's
departure goes through the log as usual) and are worthless once answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from nats.aio.msg import Msg

from server.cluster import subjects
from server.cluster.jetstream_log import ClusterLog
from server.protocol.deferred import Gathered

log = logging.getLogger("hivectl.cluster")

PEER_TIMEOUT = 2.0
"""Seconds to wait for every live node's answer."""
ALONE_WINDOW = 0.25
"""Seconds to listen for answers when no other node is known to be alive (one may have
joined since this node last saw the leases)."""

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class _Node(Protocol):
    node_id: str


class ClusterPeers:
    def __init__(
        self, cluster: ClusterLog, node: _Node, answer: Answer, timeout: float = PEER_TIMEOUT
    ) -> None:
        self._cluster = cluster
        self._node = node
        self._answer = answer
        self._timeout = timeout
        self._origin = secrets.token_hex(6)
        """Marks this node's own requests, which it receives too and ignores."""

    @property
    def _subject(self) -> str:
        return subjects.admin_subject(self._cluster.stream)

    async def start(self) -> None:
        """Answer the other nodes' requests (the cluster log is connected by now)."""
        nc = self._cluster.nats
        assert nc is not None
        await nc.subscribe(self._subject, cb=self._on_request)

    async def _on_request(self, message: Msg) -> None:
        nc = self._cluster.nats
        if not message.reply or nc is None:
            return
        try:
            request = orjson.loads(message.data)
            if request.get("origin") == self._origin:
                return
            answer = self._answer(request)
        except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError) as exc:
            log.warning("ignoring a malformed operator request from another node: %s", exc)
            answer = {"error": str(exc)}
        answer["node"] = self._node.node_id
        with contextlib.suppress(Exception):
            await nc.publish(message.reply, orjson.dumps(answer))

    async def ask(self, request: dict[str, Any]) -> Gathered:
        expected = set(self._cluster.live_nodes())
        answers: dict[str, dict[str, Any]] = {}
        nc = self._cluster.nats
        if nc is None or not self._cluster.connected:
            return Gathered([], sorted(expected))
        everyone = asyncio.Event()

        async def collect(message: Msg) -> None:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                answer = orjson.loads(message.data)
                node = answer.get("node")
                if isinstance(node, str):
                    answers[node] = answer
                    if expected and expected <= answers.keys():
                        everyone.set()

        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox, cb=collect)
        try:
            data = orjson.dumps({**request, "origin": self._origin})
            await nc.publish(self._subject, data, reply=inbox)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout if expected else ALONE_WINDOW):
                    await everyone.wait()
        except Exception as exc:
            log.warning("asking the other nodes failed: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return Gathered(list(answers.values()), sorted(expected - answers.keys()))
