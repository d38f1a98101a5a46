"""Issue 19's measuring: load processes, pinning, the baseline's token check, CPU per operation.

The quick run with two load processes is `test_bench`'s; here are the parts around it: a
pinned run, the affinity a started process gets, a real baseline refusing bad tokens, and
the pure parts (shares, placement, the report's figures and notes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from hivectl.bench.baseline import REFUSED
from hivectl.bench.flavors import Baseline, key_from, key_line, provider_claims
from hivectl.bench.plan import QUICK, default_load_processes
from hivectl.bench.procstat import running_on, usable_cores
from hivectl.bench.report import build_report
from hivectl.bench.runner import PinError, placement
from hivectl.bench.scenarios.churn import ChurnShare, tokens_per_provider
from hivectl.bench.scenarios.fanout import counts
from hivectl.bench.servers import baseline_server
from hivectl.bench.worker import split
from hivectl.cli import app
from hivectl.core.tokens import SigningKey

SECRET = "bench-baseline-secret-0123456789abcdef"
KEY = SigningKey("HS256", SECRET.encode())


def test_a_pinned_run_puts_the_load_on_the_cores_the_server_leaves() -> None:
    cores = usable_cores()
    result = CliRunner().invoke(app, ["bench", "connect", "--quick", "--pin", "--json"])
    if len(cores) < 2:
        assert result.exit_code == 2
        assert "pinning needs two cores" in result.output
        return
    report = json.loads(result.stdout)
    missed = any(target["met"] is False for target in report["targets"])
    assert result.exit_code == (3 if missed else 0), result.output
    first = min(cores)
    assert report["load"] == {
        "processes": len(cores) - 1,
        "pinned": {"server": [first], "load": sorted(cores - {first})},
    }
    for run in report["runs"]:
        # The load process saw only the load cores: the pin reached it and its workers.
        assert run["result"]["load_cores"] == len(cores) - 1
        assert run["result"]["load_processes"] == len(cores) - 1
        assert run["result"]["connected"] == QUICK.connect_sizes[0]


def test_pinning_a_server_the_bench_did_not_start_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HIVECTL_AUTH_SECRET", "x" * 32)
    result = CliRunner().invoke(
        app, ["bench", "latency", "--quick", "--pin", "--url", "ws://127.0.0.1:1/ws"]
    )
    assert result.exit_code == 2
    assert "not with --url" in result.output


def test_a_process_started_while_pinned_keeps_the_pin_and_this_one_gets_its_cores_back() -> None:
    before = usable_cores()
    core = {min(before)}
    with running_on(core):
        child = subprocess.Popen(
            [sys.executable, "-c", "import os, sys; print(sorted(os.sched_getaffinity(0)))"],
            stdout=subprocess.PIPE,
            text=True,
        )
    output, _ = child.communicate(timeout=30)
    assert json.loads(output) == sorted(core)
    assert usable_cores() == before


async def _hello_reply(url: str, hello: dict[str, Any]) -> tuple[str, int | None]:
    async with connect(url, proxy=None) as ws:
        await ws.send(orjson.dumps(hello).decode())
        reply = await ws.recv()
        if reply == REFUSED:
            await ws.wait_closed()
        return str(reply), ws.close_code


def _token(claims: dict[str, Any], secret: str = SECRET, **times: float) -> str:
    now = time.time()
    payload = {**claims, "iat": int(now), "exp": int(now + times.get("ttl", 3600))}
    return jwt.encode(payload, secret, algorithm="HS256")


async def test_the_baseline_verifies_a_token_on_every_connection(tmp_path: Path) -> None:
    with baseline_server(tmp_path, SECRET, QUICK) as served:
        good = _token(provider_claims("p/1", 0))
        assert await _hello_reply(served.url, {"role": "provide", "token": good}) == ("ok", None)
        for bad in (
            _token(provider_claims("p/1", 0), secret="another-secret-0123456789abcdefgh"),
            _token(provider_claims("p/1", 0), ttl=-10),
            good[:-4] + "AAAA",
            None,
        ):
            hello = {"role": "provide", "token": bad}
            assert await _hello_reply(served.url, hello) == ("refused", 1008), bad


async def test_the_baseline_flavor_registers_and_watches_with_tokens(tmp_path: Path) -> None:
    flavor = Baseline(KEY)
    with baseline_server(tmp_path, SECRET, QUICK) as served:
        watcher = await flavor.watch(served.url)
        async with connect(served.url, proxy=None) as provider:
            await provider.send(flavor.hello("p/7", 3))
            assert flavor.accepted(await provider.recv())
            assert list(flavor.presence(await watcher.recv())) == [("p/7", "con")]
        assert list(flavor.presence(await watcher.recv())) == [("p/7", "dis")]
        await watcher.close()


def test_the_baseline_needs_its_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HIVECTL_BENCH_BASELINE_SECRET"}
    completed = subprocess.run(
        [sys.executable, "-m", "hivectl.bench.baseline", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 2
    assert "HIVECTL_BENCH_BASELINE_SECRET" in completed.stderr


# -- pure parts ----------------------------------------------------------------------------


def test_shares_are_contiguous_even_and_never_empty() -> None:
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split(list(range(2)), 4) == [[0], [1]]
    assert split([], 3) == []
    assert counts(5, 3) == [2, 2, 1]
    assert counts(1, 3) == [1, 0, 0]


def test_placement_leaves_the_server_a_core_of_its_own() -> None:
    assert placement({0, 1}, pin=True, processes=None).as_dict() == {
        "processes": 1,
        "pinned": {"server": [0], "load": [1]},
    }
    assert placement({2, 3, 5}, pin=True, processes=4).as_dict() == {
        "processes": 4,
        "pinned": {"server": [2], "load": [3, 5]},
    }
    free = placement({0, 1, 2, 3}, pin=False, processes=None)
    assert (free.server, free.load, free.load_processes) == (None, None, 3)
    with pytest.raises(PinError):
        placement({0}, pin=True, processes=None)
    assert [default_load_processes(cores) for cores in (1, 2, 8, 64)] == [1, 1, 7, 16]


def test_the_signing_key_travels_as_one_line() -> None:
    assert key_from(orjson.loads(key_line(KEY))) == SigningKey("HS256", SECRET, None)
    with pytest.raises(ValueError):
        key_from({"algorithm": "HS256"})


async def test_new_tokens_are_minted_up_front_each_one_different() -> None:
    share = ChurnShare(
        Baseline(KEY), "ws://unused", {"ids": ["p/0", "p/1"], "in_flight": 1, "tokens": 3}
    )
    await share.setup()
    hellos = [share._hello(index, serial) for index in (0, 1) for serial in (1, 2, 3, 4)]
    assert len(set(hellos)) == len(hellos) == 8
    assert share.late == 2  # the fourth of each provider was minted during the run
    reused = ChurnShare(Baseline(KEY), "ws://unused", {"ids": ["p/0"], "in_flight": 1, "tokens": 0})
    await reused.setup()
    assert {reused._hello(0, serial) for serial in (1, 2, 3)} == {reused.pools[0][0]}
    assert tokens_per_provider(QUICK) > QUICK.churn_seconds * 100


def a_run(scenario: str, target: str, **result: Any) -> dict[str, Any]:
    return {"scenario": scenario, "label": scenario, "target": target, "result": result}


def a_raw(*runs: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": {},
        "versions": {},
        "plan": {"ping_interval": None, "ping_timeout": None},
        "runs": list(runs),
    }


def test_cpu_per_operation_is_the_windows_cpu_over_the_operations() -> None:
    presence = {"lost": 0, "duplicated": 0}
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", server_cpu_s=1.2, cycles=2000, presence=presence),
            a_run("churn", "baseline", server_cpu_s=1.5, cycles=2000, presence=presence),
        )
    )
    (cost,) = [row for row in report["rows"] if row["figure"] == "server CPU per connect + close"]
    assert (cost["hivectl"], cost["baseline"], cost["ratio"]) == (0.6, 0.75, 0.8)
    (target,) = [t for t in report["targets"] if "server CPU" in t["target"]]
    assert (target["value"], target["met"]) == (0.8, False)  # at most 0.7x with reused tokens


def test_no_cpu_per_operation_without_the_servers_cpu_or_operations() -> None:
    presence = {"lost": 0, "duplicated": 0}
    report = build_report(
        a_raw(
            a_run("churn", "hivectl", server_cpu_s=None, cycles=10, presence=presence),
            a_run("churn", "baseline", server_cpu_s=0.5, cycles=0, presence=presence),
        )
    )
    (cost,) = [row for row in report["rows"] if row["figure"] == "server CPU per connect + close"]
    assert (cost["hivectl"], cost["baseline"], cost["ratio"]) == (None, None, None)


def test_load_processes_that_fill_their_cores_are_named_as_the_bottleneck() -> None:
    presence = {"lost": 0, "duplicated": 0}
    window = {"seconds": 10.0, "server_cpu_s": 5.0, "presence": presence, "load_processes": 2}
    # Two processes on one core, each at half of it: together the whole core.
    crowded = {**window, "load_cpu_s": 9.6, "load_cpu_max_s": 4.9, "load_cores": 1}
    # The same on two cores: half of what they could use.
    roomy = {**crowded, "load_cores": 2}
    report = build_report(
        a_raw(a_run("churn", "hivectl", **crowded), a_run("churn", "baseline", **roomy))
    )
    assert report["notes"] == [
        "churn on hivectl: the load side (2 load processes and the coordinator) used 96% of"
        " its cores, the server 50% of a core -- the load side was the bottleneck; the"
        " server's CPU per operation does not depend on it"
    ]
    alone = {**crowded, "load_processes": 1, "load_cpu_max_s": 9.6}
    (note,) = build_report(a_raw(a_run("churn", "hivectl", **alone)))["notes"]
    assert "(1 load process and the coordinator)" in note
