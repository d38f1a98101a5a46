"""Prometheus metrics for one server, served as ``GET /metrics`` on the WebSocket port.

Most numbers are counters the hub keeps anyway (messages, presence events, errors,
sessions), so a custom collector reads them at scrape time instead of updating metric
objects on the hot path. Only the two latency histograms are observed as things happen:

* ``hivectl_presence_latency_seconds``: from a socket event (a frame, an authentication,
  a close) to the flush of the pushes it caused, observed once per event that changed
  some object's presence.
* ``hivectl_storage_commit_seconds``: how long the shell waited for ``storage.sync()``
  before acknowledging a write.

In a cluster, ``hivectl_cluster_log_state`` says where the node stands with the stream
(one series per state, 1 for the current one): only ``following`` takes writes, and
``hivectl_cluster_log_lag_messages`` how far behind the stream's last message it was at the
latest check.

The process figures (``process_*``: CPU seconds, resident memory, open descriptors against
their limit) come from prometheus-client's process collector, registered on the server's own
registry. ``hivectl_send_queue_bytes`` is a gauge histogram: how many connections have how
many bytes waiting to be sent right now, read at scrape time like the counters, so the hot
path observes nothing.

Each server has its own `CollectorRegistry` (never the global one), so several servers in
one process (the tests) do not collide. Label cardinality is bounded: connected objects are
labelled by realm for the `TOP_REALMS` largest realms only, the rest summed as ``other``
(a realm really called "other" is summed there too, so no series is ever duplicated);
errors are labelled by protocol error code; no object or user id is ever a label.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from hivectl import __version__
from hivectl.core.tokens import REASONS
from server.cluster.jetstream_log import LogState
from server.protocol.hub import Hub

TOP_REALMS = 10
OTHER_REALMS = "other"

PRESENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_BUCKETS = tuple(1024 * 4**power for power in range(9))
"""1 KiB to 64 MiB (`limits.send_queue_max_bytes`' default), by factors of four."""


class ShellFigures(Protocol):
    """What the I/O shell counts itself: closes, HTTP answers, send queues, the cluster."""

    closes: Counter[tuple[int, str]]
    http_requests: Counter[int]
    slow_consumers: int

    def queued_bytes(self) -> Iterable[int]:
        """Bytes waiting to be sent, one figure per open connection."""
        ...

    def cluster_lag(self) -> int | None:
        """Stream messages not applied yet (None on a single node)."""
        ...


class ServerMetrics:
    def __init__(
        self,
        hub: Hub,
        shell: ShellFigures,
        ready: Callable[[], bool],
        cluster_state: Callable[[], LogState] | None = None,
    ) -> None:
        self._hub = hub
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.presence_latency = Histogram(
            "hivectl_presence_latency_seconds",
            "Time from a socket event to the flush of the presence pushes it caused.",
            buckets=PRESENCE_BUCKETS,
            registry=self.registry,
        )
        self.storage_commit = Histogram(
            "hivectl_storage_commit_seconds",
            "Time spent waiting for storage to make writes durable before acknowledging them.",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HubCollector(hub, ready, cluster_state))
        self.registry.register(_ShellCollector(shell, hub.node_id))

    def presence_flushed(self, started: list[float]) -> None:
        """At a flush: observe the latency of each unit of work that changed some presence
        and began at one of `started` (`time.perf_counter`)."""
        now = time.perf_counter()
        for began in started:
            self.presence_latency.observe(now - began)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type, negotiated from the Accept header (Prometheus
        3 refuses a scrape without a valid content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _HubCollector:
    """Reads the hub's own counters and state at scrape time."""

    def __init__(
        self,
        hub: Hub,
        ready: Callable[[], bool],
        cluster_state: Callable[[], LogState] | None,
    ) -> None:
        self._hub = hub
        self._ready = ready
        self._cluster_state = cluster_state

    def collect(self) -> Iterable[Metric]:
        hub = self._hub
        info = InfoMetricFamily("hivectl", "Version and node of this server.")
        info.add_metric([], {"version": __version__, "node": hub.node_id})
        yield info
        yield GaugeMetricFamily(
            "hivectl_ready",
            "1 while accepting clients and writes, 0 while starting, draining, or (in a "
            "cluster) not following the stream.",
            value=1 if self._ready() else 0,
        )
        if self._cluster_state is not None:
            current = self._cluster_state()
            states = GaugeMetricFamily(
                "hivectl_cluster_log_state",
                "Where this node stands with the cluster stream: 1 for the current state.",
                labels=["state"],
            )
            for state in LogState:
                states.add_metric([state.value], 1 if state is current else 0)
            yield states
        sessions = list(hub.sessions.values())
        yield GaugeMetricFamily(
            "hivectl_connections", "Open WebSocket connections.", value=len(sessions)
        )
        yield GaugeMetricFamily(
            "hivectl_authenticated_connections",
            "Open connections that have authenticated.",
            value=sum(1 for session in sessions if session.authenticated),
        )
        yield GaugeMetricFamily(
            "hivectl_providers",
            "Live data providers (connections with a dpv claim).",
            value=hub.engine.providers,
        )
        yield GaugeMetricFamily("hivectl_realms", "Realms.", value=len(hub.realms))
        yield _connected_per_realm(hub.engine.connected_per_realm())
        yield CounterMetricFamily(
            "hivectl_messages_received", "Protocol messages received.", value=hub.messages_in
        )
        yield CounterMetricFamily(
            "hivectl_messages_sent", "Protocol messages sent.", value=hub.messages_out
        )
        yield CounterMetricFamily(
            "hivectl_presence_events",
            "connectionStatusChanged transitions published.",
            value=hub.presence_events,
        )
        errors = CounterMetricFamily(
            "hivectl_errors", "Error replies sent, by protocol error code.", labels=["code"]
        )
        for code, count in sorted(hub.errors.items()):
            errors.add_metric([str(code)], count)
        yield errors
        refused = CounterMetricFamily(
            "hivectl_auth_refused",
            "Refused authentications (Bearer frames and HTTP API tokens), by reason.",
            labels=["reason"],
        )
        for reason in sorted({*REASONS, "too_many_connections", *hub.auth_refused}):
            refused.add_metric([reason], hub.auth_refused[reason])
        yield refused
        yield CounterMetricFamily(
            "hivectl_nodes_lost",
            "Cluster nodes declared lost (lease expired) since this node started.",
            value=hub.nodes_lost,
        )


class _ShellCollector:
    def __init__(self, shell: ShellFigures, node: str) -> None:
        self._shell = shell
        self._node = node

    def collect(self) -> Iterable[Metric]:
        shell = self._shell
        closes = CounterMetricFamily(
            "hivectl_closes",
            "Connections ended, by close code and by who closed first (server, client, or"
            " network when no close frame went either way: 1006).",
            labels=["code", "by"],
        )
        for (code, by), count in sorted(shell.closes.items()):
            closes.add_metric([str(code), by], count)
        yield closes
        yield CounterMetricFamily(
            "hivectl_slow_consumer_closes",
            "Connections closed because they did not read what was sent to them (4008).",
            value=shell.slow_consumers,
        )
        requests = CounterMetricFamily(
            "hivectl_http_requests", "HTTP API requests answered, by status.", labels=["status"]
        )
        for status, count in sorted(shell.http_requests.items()):
            requests.add_metric([str(status)], count)
        yield requests
        yield _queue_histogram(shell.queued_bytes())
        lag = shell.cluster_lag()
        if lag is not None:
            gauge = GaugeMetricFamily(
                "hivectl_cluster_log_lag_messages",
                "Messages of the cluster stream this node had not applied at the latest check.",
                labels=["node"],
            )
            gauge.add_metric([self._node], lag)
            yield gauge


def _queue_histogram(queued: Iterable[int]) -> GaugeHistogramMetricFamily:
    counts = [0] * len(QUEUE_BUCKETS)
    total = connections = 0
    for size in queued:
        connections += 1
        total += size
        for index, bound in enumerate(QUEUE_BUCKETS):
            if size <= bound:
                counts[index] += 1
                break
    buckets, running = [], 0
    for bound, count in zip(QUEUE_BUCKETS, counts, strict=True):
        running += count
        buckets.append((str(float(bound)), float(running)))
    buckets.append(("+Inf", float(connections)))
    return GaugeHistogramMetricFamily(
        "hivectl_send_queue_bytes",
        "Open connections by bytes waiting to be sent to them now.",
        buckets=buckets,
        gsum_value=float(total),
    )


def _connected_per_realm(per_realm: dict[str, int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "hivectl_connected_objects",
        f"Connected objects, for the {TOP_REALMS} largest realms and the rest as {OTHER_REALMS}.",
        labels=["realm"],
    )
    ranked = sorted(per_realm.items(), key=lambda item: (-item[1], item[0]))
    top = [(realm, count) for realm, count in ranked if realm != OTHER_REALMS][:TOP_REALMS]
    for realm, count in top:
        gauge.add_metric([realm], count)
    rest = sum(per_realm.values()) - sum(count for _, count in top)
    gauge.add_metric([OTHER_REALMS], rest)
    return gauge
