"""Each file of deploy/ checked by the tool that reads it (promtool, systemd-analyze,
nats-server, dockerfile-parse, PyYAML, hivectl itself), and for what the README says of it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hivectl.core.settings import load_settings, parse_duration
from tests.deploy.files import (
    ALERTS,
    COMPOSE,
    DEPLOY,
    DOCKER_CONFIG,
    NATS_CONF,
    ROOT,
    SYSTEMD_CONFIG,
    SYSTEMD_UNIT,
    compose,
    dashboard,
    dockerfile,
    healthcheck_command,
    hivectl_services,
    instructions,
    panels,
    tool,
)
from tests.natsutil import nats_server_binary


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


# -- Dockerfile ----------------------------------------------------------------------------


def test_the_image_is_slim_runs_as_a_user_and_checks_readiness() -> None:
    parser = dockerfile()
    assert parser.parent_images == ["python:3.11-slim", "python:3.11-slim"]
    (user,) = instructions("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert healthcheck_command()[:3] == ["hivectl", "health", "--ready"]
    assert instructions("STOPSIGNAL") == ["SIGTERM"]
    assert instructions("EXPOSE") == ["8765"]  # POST /api/v1 included
    assert instructions("VOLUME") == ['["/var/lib/hivectl"]']
    assert parser.envs["HIVECTL_CONFIG"] == "/etc/hivectl/hivectl.toml"


def test_no_secret_is_baked_into_the_image() -> None:
    parser = dockerfile()
    for name in (*parser.envs, *parser.args):
        assert "SECRET" not in name.upper() and "TOKEN" not in name.upper(), name
    copied = " ".join(instructions("COPY") + instructions("ADD"))
    assert "secret" not in copied.lower()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "**/hivectl.secret" in ignored  # an allowlist, secrets never


def test_the_image_config_listens_everywhere_and_keeps_data_in_the_volume() -> None:
    settings = load_settings(env={}, config_file=DOCKER_CONFIG).settings
    assert settings.server.host == "0.0.0.0"
    assert (settings.server.port, settings.server.api_enabled) == (8765, False)
    assert settings.storage.path.startswith("/var/lib/hivectl/")
    assert settings.client.url == "ws://127.0.0.1:8765/ws"  # what the HEALTHCHECK asks
    assert (settings.auth.secret, settings.auth.secret_file) == ("", "")


def test_the_build_stage_copies_what_the_wheel_needs(tmp_path: Path) -> None:
    """The first stage's COPY lines are enough to build hivectl's wheel, with its command."""
    context = tmp_path / "context"
    context.mkdir()
    copies = [value.split() for value in instructions("COPY") if "--from" not in value]
    for words in copies:
        for source in words[:-1]:
            if source.startswith("deploy/"):
                continue  # the final stage's config
            origin = ROOT / source
            if origin.is_dir():
                cache = shutil.ignore_patterns("__pycache__")
                shutil.copytree(origin, context / source, ignore=cache)
            else:
                shutil.copy(origin, context / source)
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(tmp_path / "wheels"),
        str(context),
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("hivectl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "server/io/app.py" in names and "hivectl/cli/__init__.py" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "hivectl = hivectl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# -- compose -------------------------------------------------------------------------------


def test_compose_runs_three_nodes_on_three_nats_servers_with_three_replicas() -> None:
    spec = compose()
    nats = {name: s for name, s in spec["services"].items() if s.get("image") == "nats:2"}
    assert sorted(nats) == ["nats1", "nats2", "nats3"]
    stores = {volume.split(":")[0] for s in nats.values() for volume in s["volumes"]}
    assert stores == {"./nats/nats.conf", *spec["volumes"]}
    assert set(spec["volumes"]) == {"nats1-data", "nats2-data", "nats3-data"}
    nodes = hivectl_services(spec)
    assert len(nodes) == 3
    urls = "nats://nats1:4222,nats://nats2:4222,nats://nats3:4222"
    node_ids, published = set(), []
    for node in nodes.values():
        command = node["command"]
        assert command[command.index("--cluster") + 1] == urls
        node_ids.add(command[command.index("--node-id") + 1])
        published += [port.split(":")[0] for port in node["ports"]]
        assert node["environment"]["HIVECTL_AUTH_SECRET_FILE"] == "/run/secrets/hivectl_secret"
        assert node["secrets"] == ["hivectl_secret"]
        assert parse_duration(node["stop_grace_period"]) > 10  # server.shutdown_timeout
        settings = load_settings(env=dict(node["environment"]), overrides={}).settings
        assert settings.cluster.replicas == 3
    assert len(node_ids) == 3 and len(set(published)) == 3  # one port a node, API included
    assert (COMPOSE.parent / node["build"]["context"] / node["build"]["dockerfile"]).is_file()
    assert spec["secrets"]["hivectl_secret"] == {"file": "./hivectl.secret"}


def test_every_file_compose_mounts_is_in_the_kit() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), source


def test_the_nats_config_is_valid_for_each_server() -> None:
    for name in ("nats1", "nats2", "nats3"):
        checked = subprocess.run(
            [nats_server_binary(), "-c", str(NATS_CONF), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            env={"NATS_SERVER_NAME": name},
        )
        assert checked.returncode == 0, checked.stderr
    assert NATS_CONF.read_text().count("nats-route://") == 3


# -- systemd -------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in SYSTEMD_UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart at this environment's hivectl, so that verify finds it."""
    hivectl = shutil.which("hivectl")
    assert hivectl, "hivectl is not on PATH: pip install -e ."
    unit = tmp_path / "hivectl.service"
    text = SYSTEMD_UNIT.read_text()
    assert text.count("ExecStart=/usr/local/bin/hivectl ") == 1
    unit.write_text(text.replace("ExecStart=/usr/local/bin/hivectl ", f"ExecStart={hivectl} "))
    return unit


def test_the_systemd_unit_verifies_without_a_warning(installed_unit: Path) -> None:
    verified = run(tool("systemd-analyze"), "verify", str(installed_unit))
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr  # unknown keys are only warnings


def test_the_systemd_unit_is_sandboxed(installed_unit: Path) -> None:
    security = run(tool("systemd-analyze"), "security", "--offline=yes", str(installed_unit))
    exposure = re.search(r"Overall exposure level for hivectl.service: ([\d.]+)", security.stdout)
    assert exposure, security.stdout + security.stderr
    assert float(exposure[1]) <= 2.0  # systemd calls up to 2.0 "OK"
    unit = unit_settings()
    assert unit["ExecStart"] == ["/usr/local/bin/hivectl serve --config /etc/hivectl/hivectl.toml"]
    assert unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert unit["SystemCallFilter"][0] == "@system-service"
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "DynamicUser"):
        assert unit[key][0] in {"yes", "strict"}, key
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["StateDirectory"] == ["hivectl"]


def test_the_unit_waits_longer_than_the_server_drains_and_reloads_with_sighup() -> None:
    unit = unit_settings()
    settings = load_settings(env={}, config_file=SYSTEMD_CONFIG).settings
    assert parse_duration(unit["TimeoutStopSec"][0]) > settings.server.shutdown_timeout
    assert settings.storage.path.startswith("/var/lib/hivectl/")  # StateDirectory
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # server/io/runner.py reloads


@pytest.mark.parametrize("config", [DOCKER_CONFIG, SYSTEMD_CONFIG], ids=lambda p: p.parent.name)
def test_the_shipped_configs_pass_config_check(config: Path) -> None:
    checked = run(sys.executable, "-m", "hivectl", "config", "check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    load_settings(env={}, config_file=config, strict=True)  # no warning either


# -- Prometheus and Grafana ----------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = tool("promtool")
    checked = run(promtool, "check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "hivectl-alerts.test.yml", cwd=ALERTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = run(promtool, "check", "config", "prometheus.yml", cwd=ALERTS.parent)
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_dashboard_takes_its_datasource_from_a_variable() -> None:
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "$job" in target["expr"] and "$instance" in target["expr"], target["expr"]


def test_the_grafana_provisioning_files_point_at_the_dashboard_and_prometheus() -> None:
    import yaml

    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "hivectl.yml").read_text())[
        "providers"
    ]
    grafana = compose()["services"]["grafana"]
    assert (
        f"./grafana/hivectl-dashboard.json:{provider['options']['path']}/hivectl.json:ro"
        in (grafana["volumes"])
    )
