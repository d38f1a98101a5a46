"""Every metric and label the Grafana dashboard and the alert rules use is one a live server
exposes: a single node (in-process) for most, a node of a real NATS cluster, run as the
compose file runs it, for the cluster-only ones."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.io.app import HivekitServer
from tests.cli.conftest import ServeProcess, clean_env
from tests.conftest import SECRET, Mint
from tests.deploy.files import (
    CLUSTER_ONLY,
    DOCKER_CONFIG,
    PROMETHEUS_OWN,
    SCRAPE_LABELS,
    compose,
    dashboard_queries,
    healthcheck_command,
    hivectl_services,
    used_labels,
    used_metrics,
)
from tests.deploy.promql import metric_names
from tests.natsutil import NatsServer, nats_cluster
from tests.server.wsutil import RawClient, eventually, post

Exposed = dict[str, set[str]]
"""Sample name -> the label names it carries."""


def scrape(http_url: str) -> Exposed:
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    exposed: Exposed = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    return exposed


async def scraped(http_url: str) -> Exposed:
    return await asyncio.to_thread(scrape, http_url)


def test_the_dashboard_and_rules_use_the_metrics_an_operator_needs() -> None:
    """The name finder found what the files are about (a broken finder finds nothing)."""
    used = used_metrics()
    assert {
        "hivectl_presence_latency_seconds_bucket",
        "hivectl_storage_commit_seconds_bucket",
        "hivectl_auth_refused_total",
        "hivectl_slow_consumer_closes_total",
        "hivectl_nodes_lost_total",
        "hivectl_cluster_log_lag_messages",
        "process_open_fds",
    } <= used
    assert all(name.startswith(("hivectl_", "process_")) for name in used - PROMETHEUS_OWN)


async def test_a_single_node_exposes_every_metric_and_label_used(
    server: HivekitServer, token: Mint
) -> None:
    # Traffic, so that the labelled counters have series: an error, an API request, a close.
    client = await RawClient.open(server.ws_url, token("admin"))
    missing = await client.request({"typ": "rea", "act": "rea", "id": "no-such-realm"})
    assert missing["res"] != "suc"
    assert server.api_url is not None
    assert (await post(server.api_url, [{"typ": "sys", "act": "hbt"}], token("admin")))[0] == 200
    await client.close()
    http_url = f"http://127.0.0.1:{server.port}"

    async def counted() -> bool:
        exposed = await scraped(http_url)
        return {"hivectl_closes_total", "hivectl_http_requests_total"} <= exposed.keys()

    await eventually(counted)
    exposed = await scraped(http_url)
    assert used_metrics() - CLUSTER_ONLY - PROMETHEUS_OWN - exposed.keys() == set()
    labels = set().union(*exposed.values()) | SCRAPE_LABELS
    cluster_labels = {"state", "node"}  # on the cluster-only metrics, checked below
    assert used_labels() - cluster_labels - labels == set()
    # And the dashboard shows every hivectl metric there is.
    shown = {family(name) for query in dashboard_queries() for name in metric_names(query)}
    assert {family(name) for name in exposed if name.startswith("hivectl_")} - shown == set()


def family(sample: str) -> str:
    """``hivectl_x_seconds_bucket`` -> ``hivectl_x_seconds``."""
    return re.sub(r"_(bucket|count|sum|created|gcount|gsum)$", "", sample)


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = nats_cluster(tmp_path / "nats", 3)
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


def compose_node(cwd: Path, nats_servers: list[NatsServer]) -> ServeProcess:
    """The compose file's first hivectl node, as its image runs it, on local NATS servers:
    the image's config and the compose command and environment, with only the addresses
    (NATS hosts, loopback, free ports) and the secret's path changed."""
    _name, service = sorted(hivectl_services(compose()).items())[0]
    command = list(service["command"])
    assert command[0] == "serve", command
    ports = {f"nats{index + 1}": server.port for index, server in enumerate(nats_servers)}
    args = [
        re.sub(r"nats://(nats\d):4222", lambda m: f"nats://127.0.0.1:{ports[m[1]]}", word)
        for word in command[1:]
    ]
    assert args != command[1:], "the compose command names no nats1..3 URLs"
    secret = cwd / "secret"
    secret.write_text(SECRET + "\n")
    env = clean_env(**{key: str(value) for key, value in service["environment"].items()})
    env.update(
        HIVECTL_CONFIG=str(DOCKER_CONFIG),
        HIVECTL_AUTH_SECRET_FILE=str(secret),
        HIVECTL_SERVER_HOST="127.0.0.1",
        HIVECTL_STORAGE_PATH=str(cwd / "hivectl.db"),
    )
    return ServeProcess(cwd, env, *args)


def healthy(node: ServeProcess) -> bool:
    """The Dockerfile's HEALTHCHECK, run against the node."""
    command = healthcheck_command()
    assert command[0] == "hivectl"
    env = clean_env(HIVECTL_CONFIG=str(DOCKER_CONFIG), HIVECTL_CLIENT_URL=node.ws_url)
    result = subprocess.run(
        [sys.executable, "-m", "hivectl", *command[1:]], env=env, capture_output=True, timeout=30
    )
    return result.returncode == 0


async def test_a_compose_node_gets_ready_with_three_replicas_and_exposes_the_cluster_metrics(
    tmp_path: Path, nats_servers: list[NatsServer]
) -> None:
    node = compose_node(tmp_path, nats_servers)
    try:

        async def ready() -> bool:
            return await asyncio.to_thread(healthy, node)

        await eventually(ready, timeout=30, interval=0.5)
        nc = await nats.connect(nats_servers[0].url, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info("HIVE")
        finally:
            await nc.close()
        assert info.config.num_replicas == 3  # HIVECTL_CLUSTER_REPLICAS of the compose file

        exposed = await scraped(node.http_url)
        assert CLUSTER_ONLY & used_metrics() <= exposed.keys()
        assert {"state", "node"} <= set().union(*(exposed[name] for name in CLUSTER_ONLY))
        assert node.stop() == 0  # SIGTERM, the image's STOPSIGNAL: a graceful exit
    finally:
        node.kill()
