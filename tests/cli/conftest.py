"""CLI test helpers: an isolated working directory and environment, the CLI in-process
(CliRunner) and as a real process (`python -m hivectl`), and a tiny protocol client."""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result
from websockets.asyncio.client import ClientConnection, connect

from hivectl.cli import app
from tests.conftest import SECRET

STARTUP_TIMEOUT = 15.0
REPLY_TIMEOUT = 5.0
SERVING = re.compile(r"hivectl serving ws://(?P<host>[^\s:]+):(?P<port>\d+)/ws")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every CLI test runs in an empty directory with no HIVECTL_* variables of the caller."""
    for name in list(os.environ):
        if name.startswith("HIVECTL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
    """The CLI in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args), env=dict(env or {}), input=stdin)


def words(text: str) -> str:
    """Text with Rich's box drawing and line wrapping undone, for substring checks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HIVECTL_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process, the way an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "hivectl", *args],
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class ServeProcess:
    """`hivectl serve` in a subprocess; stderr is read by a thread so the pipe never fills."""

    def __init__(self, cwd: Path, env: Mapping[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hivectl", "serve", "--port", "0", "--api-port", "0", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        match = self.wait_for(SERVING)
        self.port = int(match["port"])
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.http_url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}; stderr:\n" + self.stderr)

    @property
    def stderr(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit code (the process is killed if it overstays)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def reaping_server(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    """A `hivectl serve --storage memory` process whose pings reap a silent peer in ~0.6 s."""
    env = clean_env(
        HIVECTL_AUTH_SECRET=SECRET,
        HIVECTL_LIMITS_PING_INTERVAL="0.3",
        HIVECTL_LIMITS_PING_TIMEOUT="0.3",
    )
    process = ServeProcess(tmp_path, env, "--storage", "memory")
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def serve_process() -> Iterator[list[ServeProcess]]:
    """Started servers are appended by the test; whatever is still running is killed after."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.kill()


class Client:
    """Just enough protocol for CLI tests: authenticate, send one request, get its reply."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._cids = itertools.count(1)

    @classmethod
    async def open(cls, url: str) -> Client:
        return cls(await connect(url, proxy=None, ping_interval=None, open_timeout=5))

    async def authenticate(self, token: str) -> dict[str, Any]:
        await self.ws.send(f"Bearer {token}")
        return await self._next(lambda m: m.get("act") == "aut")

    async def call(self, **message: Any) -> dict[str, Any]:
        cid = next(self._cids)
        await self.ws.send(orjson.dumps([{**message, "cid": cid}]).decode())
        return await self._next(lambda m: m.get("cid") == cid)

    async def _next(self, wanted: Any) -> dict[str, Any]:
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                frame = orjson.loads(await self.ws.recv())
                for message in frame if isinstance(frame, list) else [frame]:
                    if wanted(message):
                        return dict(message)

    async def close(self) -> None:
        await self.ws.close()
