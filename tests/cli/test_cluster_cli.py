"""`hivectl cluster status`: the flags become one ``cst`` request (`hivectl.cli.admin.call`
replaced by a recorder, as uvicorn's tests replace ``uvicorn.run``), the answer is
rendered by pure functions fed here with data, the exit code says whether the cluster is
whole; then end to end against a real server run in this process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rich.console import Console

from hivectl.cli import admin
from hivectl.cli.cluster import problems, status_table, stream_lines
from server.io.app import HivekitServer
from tests.cli.conftest import invoke, words
from tests.conftest import mint

Calls = list[tuple[str, dict[str, Any]]]


def row(node: str, **fields: Any) -> dict[str, Any]:
    return {
        "node": node,
        "incarnation": node.partition("#")[2],
        "state": "following",
        "writable": True,
        "applied": 120,
        "lag": 0,
        "leaseAge": 0.4,
        "missed": False,
        "lostAt": None,
        "nats": {"url": "nats://10.0.0.1:4222", "name": "n1", "version": "2.11.0"},
        **fields,
    }


STREAM = {
    "name": "HIVE",
    "replicas": 3,
    "cluster": "hive",
    "leader": "n1",
    "followers": [
        {"name": "n2", "current": True, "offline": False, "lag": 0, "active": 0.1},
        {"name": "n3", "current": False, "offline": True, "lag": 7, "active": None},
    ],
    "firstSeq": 1,
    "lastSeq": 120,
    "messages": 80,
    "error": None,
}
HEALTHY = {
    "mode": "cluster",
    "node": "a#3f2a1c",
    "nodes": [row("a#3f2a1c"), row("b#9e0d44", applied=118, lag=2)],
    "unanswered": [],
    "stream": STREAM,
    "natsServers": ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"],
}
BROKEN = {
    **HEALTHY,
    "nodes": [
        row("a#3f2a1c"),
        row(
            "b#9e0d44",
            state=None,
            writable=None,
            applied=None,
            lag=None,
            leaseAge=1.8,
            missed=True,
            nats=None,
        ),
        row(
            "c#11aa22",
            state="lost",
            writable=None,
            applied=None,
            lag=None,
            leaseAge=None,
            missed=True,
            lostAt="2026-11-30T12:00:03.000Z",
            nats=None,
        ),
    ],
    "unanswered": ["b#9e0d44"],
    "stream": {**STREAM, "error": "TimeoutError: not done within 2s"},
}
EMBEDDED = {
    "mode": "embedded",
    "node": "node-1",
    "nodes": [row("node-1", incarnation=None, state=None, leaseAge=None, nats=None)],
    "unanswered": [],
    "stream": None,
    "natsServers": [],
}


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> tuple[Calls, list[dict[str, Any]]]:
    """The requests made, and the answer to give (the last one set)."""
    calls: Calls = []
    answers: list[dict[str, Any]] = [HEALTHY]

    def record(
        config: Any, url: Any, token: Any, timeout: float, act: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        calls.append((act, options))
        return answers[-1]

    monkeypatch.setattr(admin, "call", record)
    return calls, answers


def rendered(result: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    console.print(status_table(result))
    return words(console.export_text())


def test_the_flags_become_one_request(answer: tuple[Calls, list[dict[str, Any]]]) -> None:
    calls, _ = answer
    result = invoke("cluster", "status", "--json")
    assert result.exit_code == 0, result.output
    assert calls == [("cst", {})]
    assert json.loads(result.stdout) == HEALTHY


def test_a_whole_cluster_exits_0_and_shows_every_node(
    answer: tuple[Calls, list[dict[str, Any]]],
) -> None:
    result = invoke("cluster", "status", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = words(result.stdout)
    assert "a * 3f2a1c following yes 120 0 0.4s n1 10.0.0.1:4222" in text
    assert "b 9e0d44 following yes 118 2 0.4s" in text
    assert "stream HIVE: 3 replicas, leader n1 in NATS cluster hive" in text
    assert result.stderr == ""


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["table", "json"])
def test_a_missed_lease_or_a_silent_node_exits_3(
    answer: tuple[Calls, list[dict[str, Any]]], json_flag: list[str]
) -> None:
    answer[1].append(BROKEN)
    result = invoke("cluster", "status", *json_flag)
    assert result.exit_code == 3
    complaints = words(result.stderr)
    assert "missed their lease: b#9e0d44, c#11aa22" in complaints
    assert "no answer from nodes: b#9e0d44" in complaints


def test_a_server_that_is_no_cluster_says_so_and_exits_0(
    answer: tuple[Calls, list[dict[str, Any]]],
) -> None:
    answer[1].append(EMBEDDED)
    result = invoke("cluster", "status")
    assert result.exit_code == 0
    assert result.stdout == "node-1 is not a cluster: it serves alone (embedded)\n"


def test_the_table_marks_missed_leases_silent_and_lost_nodes() -> None:
    text = rendered(BROKEN)
    assert "b 9e0d44 no answer - - - 1.8s missed -" in text
    assert "c 11aa22 lost at 12:00:03Z - - - - missed -" in text
    assert problems(HEALTHY) == []
    assert problems(BROKEN) == [
        "missed their lease: b#9e0d44, c#11aa22",
        "no answer from nodes: b#9e0d44",
    ]


def test_the_stream_lines_name_leader_followers_and_servers() -> None:
    assert stream_lines(HEALTHY) == [
        "stream HIVE: 3 replicas, leader n1 in NATS cluster hive; sequences 1..120, 80 messages",
        "  follower n2: current",
        "  follower n3: behind by 7, offline",
        "NATS servers: nats://10.0.0.1:4222, nats://10.0.0.2:4222",
    ]
    assert stream_lines(BROKEN)[0] == (
        "stream HIVE: not described by JetStream (TimeoutError: not done within 2s)"
    )


async def test_json_against_a_real_server(server: HivekitServer) -> None:
    flags = ["--url", server.ws_url, "--token", mint("ops", adm=True)]
    result = await asyncio.to_thread(invoke, "cluster", "status", "--json", *flags)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert (status["mode"], status["node"]) == ("embedded", server.hub.node_id)
    assert [entry["node"] for entry in status["nodes"]] == [server.hub.node_id]
    refused = await asyncio.to_thread(
        invoke, "cluster", "status", "--url", server.ws_url, "--token", mint("someone")
    )
    assert refused.exit_code == 1
    assert "admin operations need a token with the adm claim" in words(refused.stderr)
