"""`hivectl serve` flags -> the settings handed to the runner (uvicorn's test style: the
runner and the logging setup are replaced, the command's arguments are checked)."""

from __future__ import annotations

import json
import logging
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from hivectl.cli.logs import JsonLinesFormatter
from hivectl.core.settings import Settings
from tests.cli.conftest import invoke, words


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the runner and the logging setup; record what they were given."""
    seen: dict[str, Any] = {}

    def run(settings: Settings, **kwargs: Any) -> int:
        seen["settings"] = settings
        seen["run_kwargs"] = kwargs
        return 0

    def configure_logging(level: str, fmt: str) -> None:
        seen["logging"] = (level, fmt)

    monkeypatch.setattr("server.io.runner.run", run)
    monkeypatch.setattr("hivectl.cli.logs.configure_logging", configure_logging)
    return seen


def test_flags_become_settings(tmp_path: Path, calls: dict[str, Any]) -> None:
    secret = tmp_path / "jwt.secret"
    secret.write_text("flag-secret-0123456789-abcdefghijklmnop")
    result = invoke(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--api-port",
        "9001",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--shutdown-timeout",
        "3s",
        "--secret-file",
        str(secret),
    )
    assert result.exit_code == 0, result.stderr
    settings: Settings = calls["settings"]
    assert (settings.server.host, settings.server.port, settings.server.api_port) == (
        "0.0.0.0",
        0,
        9001,
    )
    assert settings.server.shutdown_timeout == 3.0
    assert (settings.log.level, settings.log.format) == ("debug", "json")
    assert settings.auth.secret_file == str(secret)
    assert calls["logging"] == ("debug", "json")
    assert callable(calls["run_kwargs"]["announce"])


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, calls: dict[str, Any]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[server]\nhost = "10.0.0.1"\nport = 1111\napi_port = 1112\n')
    env = {
        "HIVECTL_SERVER_PORT": "2222",
        "HIVECTL_LOG_LEVEL": "warning",
        "HIVECTL_AUTH_SECRET": "env-secret-0123456789-abcdefghijklmnop",
    }
    result = invoke("serve", "--config", str(config), "--port", "3333", env=env)
    assert result.exit_code == 0, result.stderr
    settings: Settings = calls["settings"]
    assert settings.server.host == "10.0.0.1"  # file
    assert settings.server.port == 3333  # flag over env over file
    assert settings.log.level == "warning"  # env
    assert settings.auth.secret == "env-secret-0123456789-abcdefghijklmnop"


def test_secret_file_flag_wins_over_the_secret_variable(
    tmp_path: Path, calls: dict[str, Any]
) -> None:
    secret = tmp_path / "jwt.secret"
    secret.write_text("file-secret-0123456789-abcdefghijklmnop")
    env = {"HIVECTL_AUTH_SECRET": "env-secret-0123456789-abcdefghijklmnop"}
    result = invoke("serve", "--secret-file", str(secret), env=env)
    assert result.exit_code == 0, result.stderr
    assert (calls["settings"].auth.secret, calls["settings"].auth.secret_file) == ("", str(secret))


def test_zero_config_generates_a_private_secret_beside_the_data(
    isolated: Path, calls: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hivectl.serve")
    result = invoke("serve", env={"HIVECTL_STORAGE_PATH": "data/hive.db"})
    assert result.exit_code == 0, result.stderr
    secret = isolated / "data" / "hivectl.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert calls["settings"].auth.secret_file == str(Path("data") / "hivectl.secret")
    assert f"generated a signing secret in {secret}" in caplog.text
    first = secret.read_text()

    caplog.clear()
    invoke("serve", env={"HIVECTL_STORAGE_PATH": "data/hive.db"})
    assert "generated" not in caplog.text
    assert secret.read_text() == first  # found, never replaced


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-level", "loud"], "Invalid value for '--log-level'"),
        (["--port", "http"], "Invalid value for '--port'"),
        (["--port", "70000"], "[server].port: expected an integer from 0 to 65535"),
        (["--shutdown-timeout", "later"], "[server].shutdown_timeout"),
    ],
)
def test_bad_flags_exit_2(args: list[str], message: str, calls: dict[str, Any]) -> None:
    result = invoke("serve", *args)
    assert result.exit_code == 2
    assert message in words(result.stderr)
    assert "settings" not in calls


def test_an_unusable_key_is_a_config_error(tmp_path: Path, calls: dict[str, Any]) -> None:
    result = invoke("serve", "--secret-file", str(tmp_path / "missing.secret"))
    assert result.exit_code == 2
    assert "cannot read key file" in words(result.stderr)
    assert "settings" not in calls


def test_a_runtime_failure_exits_1(monkeypatch: pytest.MonkeyPatch, calls: dict[str, Any]) -> None:
    def cannot_bind(settings: Settings, **kwargs: Any) -> int:
        raise OSError(98, "address already in use")

    monkeypatch.setattr("server.io.runner.run", cannot_bind)
    result = invoke("serve", env={"HIVECTL_AUTH_SECRET": "x" * 32})
    assert result.exit_code == 1
    assert "address already in use" in result.stderr


def test_json_log_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("hivectl.server", logging.ERROR, "", 0, "a %s", ("b",), exc_info)
    line = JsonLinesFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert (entry["level"], entry["logger"], entry["msg"]) == ("error", "hivectl.server", "a b")
    assert entry["ts"].endswith("+00:00")
    assert "ValueError: boom" in entry["exc"]
