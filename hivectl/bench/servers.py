"""The servers a bench run loads, each a subprocess on a loopback port chosen by the kernel.

`hivectl_server` runs ``hivectl serve`` the way an operator would after `pip install`: its
defaults, in an empty directory (a fresh SQLite file), with the bench's secret in
``HIVECTL_AUTH_SECRET``. Three settings differ, each for a reason: the per-connection rate
limit is lifted (setup creates thousands of objects on one connection, and the bench
measures capacity, not the limiter), logging is at warning (no line per connection; the
plan's ``log_level`` when a run measures what logging costs), and
the keepalive follows the plan when it sets one. The caller's ``HIVECTL_*`` variables are
not passed on: the figures are the defaults'. *Scale* differs in two ways: it names the
storage backend, and it keeps the default rate limit, since whether one gateway connection
may send 10,000 updates per second under the defaults is one of its questions.

`baseline_server` runs `hivectl.bench.baseline`, with the same secret (in its own
variable). Either may be pinned to cores (`running_on`). Both print a ``... serving ws://...``
line when ready; output goes to a log file beside the run (a pipe nobody reads would fill
and stall the server). Stopping is SIGTERM to the pid started here, then SIGKILL if it
overstays.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hivectl.bench.baseline import HOST, SECRET_VARIABLE
from hivectl.bench.plan import BenchPlan
from hivectl.bench.procstat import running_on

SERVING = re.compile(r"serving (ws://[^\s,]+)")
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.01
"""How often the startup line is looked for: *scale* times a restart by it."""
UNLIMITED_RATE = "100000000"


class ServerFailed(Exception):
    """A server did not start; the message carries its log."""


@dataclass(frozen=True)
class Served:
    url: str
    pid: int | None
    """None for a server the bench did not start (``--url``): no CPU or memory figures."""


@contextlib.contextmanager
def hivectl_server(
    directory: Path,
    secret: str,
    plan: BenchPlan,
    *,
    storage: str | None = None,
    rate_limited: bool = False,
    settings: Mapping[str, str] | None = None,
    cores: set[int] | None = None,
) -> Iterator[Served]:
    """``hivectl serve`` in `directory` (its SQLite file stays there: a second server in the
    same directory finds what the first kept). `storage` names the backend (None: the
    default); `rate_limited` keeps the default rate limit; `settings` are ``HIVECTL_*``
    variables applied last (a test raising a limit the scenario leaves at its default);
    `cores` pins the server (None: not pinned)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HIVECTL_")}
    env.update(HIVECTL_AUTH_SECRET=secret, HIVECTL_LOG_LEVEL=plan.log_level)
    if not rate_limited:
        env.update(
            HIVECTL_LIMITS_MESSAGES_PER_SECOND=UNLIMITED_RATE, HIVECTL_LIMITS_BURST=UNLIMITED_RATE
        )
    if storage is not None:
        env["HIVECTL_STORAGE_BACKEND"] = storage
    if plan.ping_interval is not None:
        env["HIVECTL_LIMITS_PING_INTERVAL"] = f"{plan.ping_interval}s"
    if plan.ping_timeout is not None:
        env["HIVECTL_LIMITS_PING_TIMEOUT"] = f"{plan.ping_timeout}s"
    env.update(settings or {})
    command = ["-m", "hivectl", "serve", "--host", HOST, "--port", "0", "--api-port", "0"]
    with _serving(command, directory, env, cores) as served:
        yield served


@contextlib.contextmanager
def baseline_server(
    directory: Path, secret: str, plan: BenchPlan, *, cores: set[int] | None = None
) -> Iterator[Served]:
    """The baseline, verifying tokens signed with `secret` (HS256)."""
    command = ["-m", "hivectl.bench.baseline", "--port", "0"]
    if plan.ping_interval is not None:
        command += ["--ping-interval", str(plan.ping_interval)]
    if plan.ping_timeout is not None:
        command += ["--ping-timeout", str(plan.ping_timeout)]
    env = {**os.environ, SECRET_VARIABLE: secret}
    with _serving(command, directory, env, cores) as served:
        yield served


@contextlib.contextmanager
def _serving(
    arguments: list[str], directory: Path, env: dict[str, str], cores: set[int] | None
) -> Iterator[Served]:
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "server.log"
    with log_path.open("w") as log_file, running_on(cores):
        process = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Served(_wait_for_url(process, log_path, " ".join(arguments[1:])), process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[bytes], log_path: Path, name: str) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        match = SERVING.search(log_path.read_text())
        if match:
            return match[1]
        if process.poll() is not None:
            break
        time.sleep(POLL_S)
    raise ServerFailed(f"{name} did not start:\n{log_path.read_text()}")
