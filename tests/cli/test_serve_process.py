"""`hivectl serve` as a real process: endpoints, metrics, graceful SIGTERM, zero-config start,
`hivectl health`, `python -m hivectl` and shell completion."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.cli.conftest import Client, ServeProcess, clean_env, run_cli
from tests.server.wsutil import eventually

SECRET = "process-test-secret-0123456789-abcdefgh"


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, without any proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def metrics(process: ServeProcess) -> dict[str, float]:
    """Every sample of /metrics by name and labels, e.g. ``hivectl_errors_total{code="401"}``."""
    status, content_type, body = get(process.http_url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def mint(cwd: Path, env: dict[str, str], *args: str) -> str:
    result = run_cli("token", "mint", "--sub", "tester", *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def env() -> dict[str, str]:
    return clean_env(HIVECTL_AUTH_SECRET=SECRET)


async def test_health_readiness_and_metrics_that_move(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    process = ServeProcess(tmp_path, env)
    serve_process.append(process)
    assert get(process.http_url + "/healthz")[0] == 200
    assert get(process.http_url + "/readyz")[:1] == (200,)

    before = metrics(process)
    assert before["hivectl_ready"] == 1
    assert before["hivectl_connections"] == 0
    assert before['hivectl_connected_objects{realm="other"}'] == 0

    admin = await Client.open(process.ws_url)
    await admin.authenticate(mint(tmp_path, env, "--per", "london:*=CRUD"))
    await admin.call(typ="rea", act="cre", id="london")
    await admin.call(typ="obj", act="cre", rea="london", id="cars/1")
    rider = await Client.open(process.ws_url)
    await rider.authenticate(mint(tmp_path, env, "--dpv", "london:cars/1"))
    stranger = await Client.open(process.ws_url)
    assert (await stranger.authenticate("not-a-token"))["erc"] == 401
    await admin.call(typ="sys", act="hbt")

    after = metrics(process)
    assert after["hivectl_connections"] == 3
    assert after["hivectl_authenticated_connections"] == 2
    assert after["hivectl_providers"] == 1
    assert after['hivectl_connected_objects{realm="london"}'] == 1
    assert after["hivectl_messages_received_total"] == 3  # Bearer frames are not messages
    assert after["hivectl_messages_sent_total"] > before["hivectl_messages_sent_total"]
    assert after["hivectl_presence_events_total"] == 1
    assert after['hivectl_errors_total{code="401"}'] == 1
    assert after['hivectl_auth_refused_total{reason="malformed"}'] == 1
    assert after['hivectl_auth_refused_total{reason="expired"}'] == 0  # every reason, from 0
    assert after["process_resident_memory_bytes"] > 0
    assert after["process_open_fds"] > 3
    assert after["hivectl_send_queue_bytes_gcount"] == 3
    assert after["hivectl_presence_latency_seconds_count"] >= 1
    assert after["hivectl_storage_commit_seconds_count"] >= 2  # the two acknowledged writes

    await rider.close()

    async def disconnected_counted() -> bool:
        counts = await asyncio.to_thread(metrics, process)
        return counts["hivectl_presence_events_total"] == 2

    await eventually(disconnected_counted)
    for client in (admin, stranger):
        await client.close()

    async def closes_counted() -> bool:
        counts = await asyncio.to_thread(metrics, process)
        return counts.get('hivectl_closes_total{by="client",code="1000"}') == 3

    await eventually(closes_counted)
    refusal = process.wait_for(re.compile(r"authentication refused \(malformed\) for - from"))
    assert "INFO" in refusal.string
    closed = process.wait_for(re.compile(r"closed by client: 1000 .*after .* s, sub tester\)"))
    assert "INFO" in closed.string

    openmetrics = urllib.request.Request(
        process.http_url + "/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(openmetrics, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().endswith("# EOF\n")

    healthy = run_cli("health", "--url", process.ws_url, "--ready", cwd=tmp_path, env=env)
    assert (healthy.returncode, healthy.stdout.strip()) == (0, f"{process.http_url}/readyz: ok")
    as_json = run_cli("health", "--url", process.ws_url, "--json", cwd=tmp_path, env=env)
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "url": f"{process.http_url}/healthz",
        "ok": True,
        "status": 200,
        "error": None,
    }
    assert process.stop() == 0
    down = run_cli("health", "--url", process.http_url, cwd=tmp_path, env=env)
    assert down.returncode == 3
    assert "/healthz" in down.stderr
    down_json = run_cli("health", "--url", process.http_url, "--json", cwd=tmp_path, env=env)
    assert down_json.returncode == 3
    answer = json.loads(down_json.stdout)
    assert (answer["ok"], answer["status"]) == (False, None)
    assert "refused" in answer["error"].lower()


def test_a_port_in_use_is_named_by_its_flag_on_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flags, named in (
            (
                ("--port", "0", "--api-port", str(port)),
                "the HTTP API port ([server].api_port, --api-port)",
            ),
            (("--port", str(port)), "the WebSocket port ([server].port, --port)"),
        ):
            result = run_cli("serve", "--storage", "memory", *flags, cwd=tmp_path, env=env)
            assert result.returncode == 1
            (line,) = [line for line in result.stderr.splitlines() if "error" in line]
            assert f"cannot listen on 127.0.0.1:{port}, {named}: " in line
            assert line.lower().endswith("address already in use")


async def test_sigterm_closes_clients_with_1001_keeps_acknowledged_writes_and_exits_0(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    process = ServeProcess(tmp_path, env, "--log-format", "json")
    serve_process.append(process)
    token = mint(tmp_path, env, "--per", "berlin:*=CRUD")
    client = await Client.open(process.ws_url)
    await client.authenticate(token)
    assert (await client.call(typ="rea", act="cre", id="berlin"))["res"] == "suc"
    created = await client.call(typ="obj", act="cre", rea="berlin", id="bikes/7", dat={"n": 7})
    assert created["res"] == "suc"

    exit_code = await asyncio.to_thread(process.stop)

    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(client.ws.recv(), 5)
    assert client.ws.close_code == 1001
    assert exit_code == 0, process.stderr
    # Every line on stderr is one JSON object, the startup line included, with its fields.
    logged = [json.loads(line) for line in process.stderr.splitlines() if line.strip()]
    assert {"level": "info", "logger": "hivectl.server"}.items() <= logged[-1].items()
    assert any(entry.get("url") == process.ws_url for entry in logged)
    assert any(entry["msg"] == "received SIGTERM: shutting down" for entry in logged)

    restarted = ServeProcess(tmp_path, env)
    serve_process.append(restarted)
    again = await Client.open(restarted.ws_url)
    await again.authenticate(token)
    read = await again.call(typ="obj", act="rea", rea="berlin", id="bikes/7")
    assert read["res"] == "suc", read
    assert read["dat"]["dat"] == {"n": 7}
    await again.close()
    assert restarted.stop() == 0


def silent_client(port: int) -> socket.socket:
    """A WebSocket client that opens and then never reads or answers the close frame."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 101")
    return sock


def test_the_shutdown_timeout_bounds_a_stop_and_a_second_signal_forces_it(
    tmp_path: Path, env: dict[str, str], serve_process: list[ServeProcess]
) -> None:
    bounded = ServeProcess(tmp_path, env, "--storage", "memory", "--shutdown-timeout", "1s")
    serve_process.append(bounded)
    with silent_client(bounded.port):
        started = time.monotonic()
        assert bounded.stop() == 0
        assert time.monotonic() - started < 5  # not the 10 s closing handshake
    assert "aborting 1 connections" in bounded.stderr

    forced = ServeProcess(tmp_path, env, "--storage", "memory", "--shutdown-timeout", "30s")
    serve_process.append(forced)
    with silent_client(forced.port):
        forced.proc.send_signal(signal.SIGTERM)
        forced.wait_for(re.compile("received SIGTERM"))
        forced.proc.send_signal(signal.SIGTERM)
        assert forced.proc.wait(5) == 1
    assert "second signal: exiting at once" in forced.stderr


async def test_zero_config_serve_then_mint_in_the_same_place(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    env = clean_env()
    process = ServeProcess(tmp_path, env)
    serve_process.append(process)
    secret = tmp_path / "hivectl.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert f"generated a signing secret in {secret}" in process.stderr

    token = mint(tmp_path, env, "--per", "london:*=CRUD")
    client = await Client.open(process.ws_url)
    assert (await client.authenticate(token))["res"] == "suc"
    await client.close()
    assert run_cli("token", "verify", token, cwd=tmp_path, env=env).returncode == 0
    assert process.stop() == 0


def test_a_port_in_use_exits_1(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "--port", port, "--api-port", "0", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "error" in result.stderr


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("hivectl ")
    helped = run_cli("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "Usage: hivectl" in helped.stdout
    for command in ("serve", "token", "config", "health"):
        assert command in helped.stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; import hivectl.cli; "
        "heavy = {'server', 'websockets', 'jwt', 'cryptography', 'prometheus_client', 'tomli_w'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_shell_completion(tmp_path: Path) -> None:
    script = run_cli("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0
    assert "_HIVECTL_COMPLETE" in script.stdout
    completions = run_cli(
        cwd=tmp_path,
        env=clean_env(
            _HIVECTL_COMPLETE="complete_bash",
            COMP_WORDS="hivectl serve --log-level ",
            COMP_CWORD="3",
        ),
    )
    assert completions.stdout.split() == ["debug", "info", "warning", "error"]
