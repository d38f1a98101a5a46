"""The deploy kit's files, read the way the tests need them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from tests.deploy.promql import label_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "hivectl-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "hivectl-alerts.yml"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKER_CONFIG = DEPLOY / "docker" / "hivectl.toml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "hivectl.service"
SYSTEMD_CONFIG = DEPLOY / "systemd" / "hivectl.toml"
NGINX = DEPLOY / "nginx" / "hivectl.conf"
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
NATS_CONF = DEPLOY / "nats" / "nats.conf"

CLUSTER_ONLY = frozenset({"hivectl_cluster_log_state", "hivectl_cluster_log_lag_messages"})
"""Metrics a node exposes only in cluster mode."""
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself for each scrape target (the node-down alert)."""
SCRAPE_LABELS = frozenset({"job", "instance"})


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    board = dashboard()
    queries = [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def used_queries() -> list[str]:
    return dashboard_queries() + [str(rule["expr"]) for rule in alert_rules()]


def used_metrics() -> set[str]:
    return {name for query in used_queries() for name in metric_names(query)}


def used_labels() -> set[str]:
    return {name for query in used_queries() for name in label_names(query)}


def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def instructions(name: str) -> list[str]:
    """The values of every `name` instruction of the Dockerfile, continuation lines joined."""
    return [
        entry["value"] for entry in dockerfile().structure if entry["instruction"] == name.upper()
    ]


def healthcheck_command() -> list[str]:
    """The exec form of the Dockerfile's HEALTHCHECK CMD."""
    (value,) = instructions("HEALTHCHECK")
    _options, command = value.split("CMD", 1)
    parsed: list[str] = json.loads(command)
    return parsed


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def hivectl_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("image") == "hivectl:local"
    }


def tool(name: str) -> str:
    """The path of a Debian tool the deploy checks need (.ci/run installs them as root)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert found, f"{name} is not installed: apt-get install nginx-light caddy prometheus systemd"
    return found
