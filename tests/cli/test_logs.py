"""`hivectl serve`'s log lines on stderr: batched under load, yet prompt and never lost at
exit (`hivectl.cli.logs.BatchingHandler`)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hivectl.cli.logs import TEXT_FORMAT, TextFormatter
from tests.cli.conftest import Client, ServeProcess, clean_env
from tests.conftest import SECRET

BURST = 20
LOGGING = """
import logging, os
from hivectl.cli.logs import configure_logging
configure_logging("info", "text")
log = logging.getLogger("hivectl.test")
for n in range(5):
    log.info("line %d", n)
"""


async def test_close_lines_of_a_burst_reach_stderr_while_the_server_runs(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    process = ServeProcess(tmp_path, clean_env(HIVECTL_AUTH_SECRET=SECRET), "--storage", "memory")
    serve_process.append(process)
    clients = [await Client.open(process.ws_url) for _ in range(BURST)]
    await asyncio.gather(*(client.close() for client in clients))
    closed = re.compile(r"connection (\S+) closed by client: 1000")
    seen = {(await asyncio.to_thread(process.wait_for, closed))[1] for _ in range(BURST)}
    assert len(seen) == BURST
    assert process.proc.poll() is None


async def test_close_lines_of_a_shutdown_are_written_before_the_process_exits(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    """The closes and the last line come within `BATCH_S` of the first shutdown line: they
    are still batched when the process exits."""
    process = ServeProcess(tmp_path, clean_env(HIVECTL_AUTH_SECRET=SECRET), "--storage", "memory")
    serve_process.append(process)
    clients = [await Client.open(process.ws_url) for _ in range(BURST)]
    assert await asyncio.to_thread(process.stop) == 0
    assert {client.ws.close_code for client in clients} == {1001}
    lines = process.stderr.splitlines()
    assert sum("closed by server: 1001" in line for line in lines) == BURST
    assert lines[-1].endswith("INFO hivectl.server: stopped")


async def test_a_close_line_in_json_carries_its_fields(
    tmp_path: Path, serve_process: list[ServeProcess]
) -> None:
    env = clean_env(HIVECTL_AUTH_SECRET=SECRET)
    process = ServeProcess(tmp_path, env, "--storage", "memory", "--log-format", "json")
    serve_process.append(process)
    client = await Client.open(process.ws_url)
    await client.close()
    line = await asyncio.to_thread(process.wait_for, re.compile(r'"event":"closed"'))
    entry = json.loads(line.string)
    assert entry["msg"].startswith(f"connection {entry['conn']} closed by client: 1000")
    assert entry["level"] == "info"
    assert {key: entry[key] for key in ("code", "by", "presence_reason", "sub")} == {
        "code": 1000,
        "by": "client",
        "presence_reason": "closed",
        "sub": None,
    }
    assert entry["duration_s"] >= 0
    assert entry["remote"].startswith("127.0.0.1:")
    assert "close_reason" in entry


@pytest.mark.parametrize(
    ("ending", "code"),
    [("", 0), ("log.warning('line 5'); os._exit(3)", 3)],
    ids=["exit", "warning then os._exit"],
)
def test_lines_still_batched_are_written_at_exit_and_with_a_warning(ending: str, code: int) -> None:
    """Only the first line goes out at once; the next four wait for the batch, which exit
    writes, and which a WARNING writes before ``os._exit`` skips the exit handlers."""
    done = subprocess.run(
        [sys.executable, "-c", LOGGING + ending],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    expected = 6 if ending else 5
    assert [line.split(": ", 1)[1] for line in lines] == [f"line {n}" for n in range(expected)]


def test_text_lines_are_the_stdlib_formatters_lines() -> None:
    stdlib = logging.Formatter(TEXT_FORMAT)
    line = logging.LogRecord("hivectl.server", logging.INFO, "", 0, "a %s %d", ("b", 1), None)
    assert TextFormatter().format(line) == stdlib.format(line)
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord(
            "hivectl.server", logging.ERROR, "", 0, "failed", (), sys.exc_info()
        )
    assert TextFormatter().format(failed) == stdlib.format(failed)
    assert stdlib.format(failed).endswith("ValueError: boom")
