"""The nginx and Caddy examples, run for real in front of a real server.

Each example is taken as shipped; only what a reader is told to change is changed: the
listening address (a free loopback port instead of 443 and 80), the certificate (one
signed by the test's CA) and the upstreams' ports (the test server's). Then a WebSocket
client speaks the protocol through the proxy over TLS, the health endpoints and the HTTP
API answer through it, and /metrics does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from hivectl.core.tls import client_context
from server.io.app import HivekitServer
from tests.conftest import Mint, running
from tests.deploy.conftest import Pki
from tests.deploy.files import CADDYFILE, NGINX, tool
from tests.natsutil import free_port

STARTUP_TIMEOUT = 15.0


def replaced(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` replaced, failing if the example no longer has it `count` times."""
    assert text.count(old) == count, f"the example has {text.count(old)} x {old!r}"
    return text.replace(old, new)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text() if log.exists() else "exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {log.read_text() if log.exists() else ''}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def get(url: str, context: ssl.SSLContext) -> int:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def post_api(url: str, token: str, context: ssl.SSLContext) -> tuple[int, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps([{"typ": "sys", "act": "hbt", "cid": "h"}]).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=5) as response:
        return int(response.status), json.loads(response.read())


async def check_through(base: str, server: HivekitServer, token: Mint, pki: Pki) -> None:
    """What a client sees through the proxy at `base` (https://127.0.0.1:PORT)."""
    context = client_context(str(pki.ca))
    wss = base.replace("https://", "wss://") + "/ws"
    async with connect(wss, ssl=context, proxy=None, ping_interval=None, open_timeout=5) as ws:
        await ws.send(f"Bearer {token('admin')}")
        auth = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert auth[0]["act"] == "aut" and auth[0]["res"] == "suc", auth
        await ws.send(json.dumps([{"typ": "sys", "act": "hbt", "cid": "through"}]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == [{"typ": "sys", "act": "hbt", "cid": "through", "res": "suc"}]
        assert len(server.hub.sessions) == 1  # the proxy holds one upstream WebSocket

    assert await asyncio.to_thread(get, f"{base}/healthz", context) == 200
    assert await asyncio.to_thread(get, f"{base}/readyz", context) == 200
    assert await asyncio.to_thread(get, f"{base}/metrics", context) == 403
    assert await asyncio.to_thread(get, f"{base}/elsewhere", context) == 404
    status, body = await asyncio.to_thread(post_api, f"{base}/api/v1", token("admin"), context)
    assert (status, body) == (200, [{"typ": "sys", "act": "hbt", "cid": "h", "res": "suc"}])


@pytest.fixture
async def server() -> AsyncIterator[HivekitServer]:
    """A server as the examples expect one: everything, the HTTP API included, on one port."""
    async with running({"server.api_enabled": False}) as started:
        yield started


def nginx_conf(directory: Path, server: HivekitServer, pki: Pki) -> tuple[Path, int]:
    """The example wrapped in a minimal nginx.conf, as /etc/nginx/nginx.conf includes it."""
    https, http = free_port(), free_port()
    site = NGINX.read_text()
    site = replaced(site, "listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
    site = replaced(site, "listen [::]:443 ssl;\n", "")
    site = replaced(site, "listen 80;", f"listen 127.0.0.1:{http};")
    site = replaced(site, "listen [::]:80;\n", "")
    site = replaced(site, "/etc/ssl/hivectl/fullchain.pem", str(pki.cert))
    site = replaced(site, "/etc/ssl/hivectl/privkey.pem", str(pki.key))
    site = replaced(site, "server 127.0.0.1:8765;", f"server 127.0.0.1:{server.port};")
    (directory / "hivectl.conf").write_text(site)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\n"
        "events {}\n"
        "http {\n"
        f"    access_log {directory}/access.log;\n"
        f"    client_body_temp_path {directory}/body;\n"
        f"    proxy_temp_path {directory}/proxy;\n"
        f"    include {directory}/hivectl.conf;\n"
        "}\n"
    )
    return conf, https


def nginx(conf: Path, *args: str) -> list[str]:
    log = conf.parent / "error.log"
    return [tool("nginx"), "-p", str(conf.parent), "-e", str(log), "-c", str(conf), *args]


@pytest.fixture
def nginx_proxy(tmp_path: Path, server: HivekitServer, pki: Pki) -> Iterator[int]:
    """nginx running the example (checked by `nginx -t` first, warnings included)."""
    conf, port = nginx_conf(tmp_path, server, pki)
    checked = subprocess.run(nginx(conf, "-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr
    process = subprocess.Popen(nginx(conf, "-g", "daemon off;"), stdin=subprocess.DEVNULL)
    try:
        wait_listening(port, process, tmp_path / "error.log")
        yield port
    finally:
        stop(process)


async def test_nginx_example_passes_websockets_health_and_the_api_but_not_metrics(
    nginx_proxy: int, server: HivekitServer, token: Mint, pki: Pki
) -> None:
    await check_through(f"https://127.0.0.1:{nginx_proxy}", server, token, pki)


def caddyfile(directory: Path, server: HivekitServer, pki: Pki) -> tuple[Path, int]:
    """The example with a loopback site address and the test's certificate."""
    port = free_port()
    site = CADDYFILE.read_text()
    site = replaced(
        site,
        "hive.example.com {\n",
        # admin off: no admin endpoint on :2019; no redirect listener on :80.
        "{\n\tadmin off\n\tauto_https disable_redirects\n}\n\n"
        f"https://127.0.0.1:{port} {{\n\ttls {pki.cert} {pki.key}\n",
    )
    site = replaced(site, "reverse_proxy 127.0.0.1:8765", f"reverse_proxy 127.0.0.1:{server.port}")
    path = directory / "Caddyfile"
    path.write_text(site)
    return path, port


def caddy_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def test_caddy_example_adapts_without_warnings_and_routes_as_documented(tmp_path: Path) -> None:
    adapted = subprocess.run(
        [tool("caddy"), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=caddy_env(tmp_path),
        timeout=30,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert "WARN" not in adapted.stderr, adapted.stderr
    config = json.loads(adapted.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]  # HTTPS, with a certificate Caddy manages
    assert server["routes"][0]["match"] == [{"host": ["hive.example.com"]}]


@pytest.fixture
def caddy_proxy(tmp_path: Path, server: HivekitServer, pki: Pki) -> Iterator[int]:
    """Caddy running the example (checked by `caddy validate` first)."""
    path, port = caddyfile(tmp_path, server, pki)
    env = caddy_env(tmp_path)
    config = ["--config", str(path), "--adapter", "caddyfile"]
    validated = subprocess.run(
        [tool("caddy"), "validate", *config], capture_output=True, text=True, env=env, timeout=30
    )
    assert validated.returncode == 0, validated.stderr
    log = tmp_path / "caddy.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [tool("caddy"), "run", *config],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
        )
    try:
        wait_listening(port, process, log)
        yield port
    finally:
        stop(process)


async def test_caddy_example_passes_websockets_health_and_the_api_but_not_metrics(
    caddy_proxy: int, server: HivekitServer, token: Mint, pki: Pki
) -> None:
    await check_through(f"https://127.0.0.1:{caddy_proxy}", server, token, pki)
