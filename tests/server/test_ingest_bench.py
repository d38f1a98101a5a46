"""The ingest benchmark end to end on a tiny plan: it runs and reports; no timing is judged."""

from __future__ import annotations

import json

import pytest

from server.ingest_bench import IngestPlan, main, run_bench


def test_a_small_run_reports_the_plan_and_a_rate(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--clients", "3", "--updates", "40", "--per-frame", "7", "--objects", "5", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["plan"] == {
        "clients": 3,
        "updates_per_client": 40,
        "per_frame": 7,
        "objects_per_client": 5,
    }
    assert result["updates"] == 120
    assert result["seconds"] > 0
    assert result["updates_per_second"] > 0


def test_a_server_given_by_url_needs_a_token() -> None:
    with pytest.raises(ValueError, match="needs a token"):
        run_bench(IngestPlan(), url="ws://127.0.0.1:1/ws")
