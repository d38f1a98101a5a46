"""Running a bench: for each scenario, a fresh server per target and one load process each
(which starts its own load processes for *connect*, *churn* and *fanout*).

A fresh server per job keeps jobs from paying for each other (memory a previous scenario
grew, objects it left, a SQLite file it filled). The two targets of a scenario run one right
after the other, so that both meet the same machine. Jobs run one at a time: the machine's
cores belong to the server and its load generator alone. *Churn* runs twice per round: with
each provider's one token (riders reconnecting), and with a new token per connect (new
riders), labelled ``churn new tokens``.

With ``pin``, every server runs on one core (the first this process may use) and the load
processes on the others, as in the peer benchmark of issue 19: the server's core is its
own, and a ratio of rates compares servers rather than the scheduler's whims. The number
of load processes is the plan's, or one per load core (`default_load_processes`); the raw
result says how many ran and what was pinned where.

*Scale* runs against hivectl only, one job per realm size and storage backend, each on a
server that keeps its default rate limit. With SQLite the job ends with a restart on the
populated database, timed here: what a restart costs is what an operator waits for.

The result is the raw material of the report (`hivectl.bench.report`): the machine, the
versions, the plan, and per job the load generator's JSON or the error that stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from websockets.exceptions import WebSocketException

from hivectl.bench.flavors import SetupError, key_line
from hivectl.bench.plan import (
    MAX_DURATION_S,
    NEW_TOKENS,
    SCALE,
    STORAGES,
    TARGETS,
    BenchPlan,
    PlanOptions,
    default_load_processes,
)
from hivectl.bench.procstat import machine, rss_bytes, running_on, usable_cores, versions
from hivectl.bench.scenarios.scale import restarted
from hivectl.bench.servers import Served, ServerFailed, baseline_server, hivectl_server
from hivectl.core.tokens import SigningKey
from hivectl.sim.driver import raise_open_file_limit

LOAD_TIMEOUT_S = MAX_DURATION_S + 900.0
"""The longest a load process may run: the longest scenario plus setup and drains."""
ERROR_LINES = 20


class PinError(ValueError):
    """Pinning asked for where it cannot be done."""


@dataclass(frozen=True)
class Placement:
    """Where the servers and the load processes run; None: anywhere."""

    server: set[int] | None
    load: set[int] | None
    load_processes: int

    def as_dict(self) -> dict[str, Any]:
        pinned = None
        if self.server is not None and self.load is not None:
            pinned = {"server": sorted(self.server), "load": sorted(self.load)}
        return {"processes": self.load_processes, "pinned": pinned}


@dataclass(frozen=True)
class Keys:
    """The signing key for each target: hivectl's (the bench's or the configured one with
    ``--url``), and the baseline's, always HS256 with the bench's secret."""

    hivectl: SigningKey
    baseline: SigningKey


def placement(cores: set[int], pin: bool, processes: int | None) -> Placement:
    """The server alone on the first of `cores` and the load on the rest (`pin`), or all
    free; `processes` load processes, or one per core but the server's."""
    count = processes or default_load_processes(len(cores))
    if not pin:
        return Placement(None, None, count)
    if len(cores) < 2:
        raise PinError("pinning needs two cores: one for the server, one for the load")
    first = min(cores)
    return Placement({first}, cores - {first}, count)


@dataclass(frozen=True)
class Job:
    scenario: str
    target: str
    size: int | None = None
    """Providers for *connect*, objects for *scale* (one job per size: each size gets a
    fresh server)."""
    round: int = 0
    storage: str | None = None
    """The server's storage backend, for *scale* (None: the default)."""
    new_tokens: bool = False
    """*churn* with a new token per connect."""

    @property
    def label(self) -> str:
        words = [self.scenario]
        if self.size is not None:
            words.append(f"{self.size:,}")
        if self.storage is not None:
            words.append(self.storage)
        if self.new_tokens:
            words.append(NEW_TOKENS)
        return " ".join(words)


def plan_jobs(scenarios: Sequence[str], plan: BenchPlan) -> list[Job]:
    """Every (scenario, size, round, target) to run, in order; the baseline has no *ingest*
    and no *scale*, which runs once per realm size and storage backend.

    The targets take turns, and which goes first alternates from round to round, so that
    neither always meets the machine warmer or cooler.
    """
    jobs = []
    for scenario in scenarios:
        if scenario == SCALE:
            for objects in plan.scale_sizes:
                jobs += [Job(SCALE, "hivectl", objects, storage=storage) for storage in STORAGES]
            continue
        sizes: Sequence[int | None] = plan.connect_sizes if scenario == "connect" else (None,)
        rounds = 1 if scenario == "silent" else plan.rounds
        variants = (False, True) if scenario == "churn" else (False,)
        for size in sizes:
            for new_tokens in variants:
                for turn in range(rounds):
                    for target in TARGETS if turn % 2 == 0 else TARGETS[::-1]:
                        if not (scenario == "ingest" and target == "baseline"):
                            jobs.append(Job(scenario, target, size, turn, new_tokens=new_tokens))
    return jobs


def run_bench(
    scenarios: Sequence[str],
    options: PlanOptions,
    *,
    url: str | None = None,
    key: SigningKey | None = None,
    progress: Callable[[Job], None] | None = None,
    server_settings: Mapping[str, str] | None = None,
    pin: bool = False,
) -> dict[str, Any]:
    """Run the scenarios against hivectl (started here, or `url` with `key`) and the baseline.

    Ctrl-C stops the run where it is: the job under way is dropped (its servers and load
    generator stopped), the finished ones are returned with ``interrupted`` true, so a long
    bench cut short still reports what it measured.

    `server_settings` are ``HIVECTL_*`` variables for the hivectl servers started here, over
    the bench's own: for a test that must lift a limit a scenario keeps at its default.
    `pin` puts each server on a core of its own and the load on the others (`placement`;
    PinError with one core, or with `url`: a server the bench did not start stays where it
    is). The baseline always verifies HS256 tokens signed with a secret made here.
    """
    plan = options.plan()
    secret = secrets.token_urlsafe(32)
    baseline_key = SigningKey("HS256", secret.encode())
    if url is None:
        key = baseline_key
    elif key is None:
        raise ValueError("a server given by URL needs its signing key")
    if pin and url is not None:
        raise PinError("pinning moves the servers the bench starts: not with --url")
    where = placement(usable_cores(), pin, plan.load_processes)
    options = replace(options, load_processes=where.load_processes)
    biggest = max(*plan.connect_sizes, plan.churn_providers, plan.fanout_riders)
    open_files = raise_open_file_limit(2 * biggest + 512)  # inherited by every process
    raw: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "plan": asdict(plan),
        "url": url,
        "load": where.as_dict(),
        "notes": [open_files.note] if open_files.note else [],
        "interrupted": False,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="hivectl-bench-") as work:
        try:
            _run_jobs(
                raw,
                scenarios,
                plan,
                Path(work),
                url,
                secret,
                options,
                Keys(key, baseline_key),
                progress,
                server_settings,
                where,
            )
        except KeyboardInterrupt:
            raw["interrupted"] = True
    raw["machine"]["load_average_end"] = machine()["load_average"]
    return raw


def _run_jobs(
    raw: dict[str, Any],
    scenarios: Sequence[str],
    plan: BenchPlan,
    work: Path,
    url: str | None,
    secret: str,
    options: PlanOptions,
    keys: Keys,
    progress: Callable[[Job], None] | None,
    server_settings: Mapping[str, str] | None,
    where: Placement,
) -> None:
    """Each job in turn, its outcome appended to ``raw["runs"]`` as soon as it is known."""
    for number, job in enumerate(plan_jobs(scenarios, plan)):
        if progress is not None:
            progress(job)
        directory = work / f"{number:03d}-{job.scenario}-{job.target}"
        record = {
            "scenario": job.scenario,
            "label": job.label,
            "target": job.target,
            "size": job.size,
            "round": job.round,
            "storage": job.storage,
            "new_tokens": job.new_tokens,
        }
        try:
            if job.scenario == SCALE:
                outcome = _scale(
                    job, plan, directory, url, secret, options, keys.hivectl, server_settings, where
                )
            else:
                with _server(job, plan, directory, url, secret, where) as served:
                    key = keys.hivectl if job.target == "hivectl" else keys.baseline
                    outcome = _load(job, served, options, key, where)
        except ServerFailed as exc:
            outcome = {"error": str(exc)}
        raw["runs"].append({**record, **outcome})


@contextlib.contextmanager
def _server(
    job: Job, plan: BenchPlan, directory: Path, url: str | None, secret: str, where: Placement
) -> Iterator[Served]:
    if job.target == "baseline":
        with baseline_server(directory, secret, plan, cores=where.server) as served:
            yield served
    elif url is not None:
        yield Served(url, None)
    else:
        with hivectl_server(directory, secret, plan, cores=where.server) as served:
            yield served


def _scale(
    job: Job,
    plan: BenchPlan,
    directory: Path,
    url: str | None,
    secret: str,
    options: PlanOptions,
    key: SigningKey,
    settings: Mapping[str, str] | None,
    where: Placement,
) -> dict[str, Any]:
    """A *scale* job: its server (rate limit at the default), the load process, and with
    SQLite a restart on the database it filled, with the empty server's start beside it."""
    if url is not None:
        return {"error": "scale starts servers of its own (per storage, restarted): not --url"}
    started = time.monotonic()
    with hivectl_server(
        directory,
        secret,
        plan,
        storage=job.storage,
        rate_limited=True,
        settings=settings,
        cores=where.server,
    ) as served:
        start_s = time.monotonic() - started
        outcome = _load(job, served, options, key, where)
    result = outcome.get("result")
    if result is None:
        return outcome
    result["start_empty_s"] = round(start_s, 3)
    if job.storage == "sqlite":
        started = time.monotonic()
        with hivectl_server(
            directory,
            secret,
            plan,
            storage=job.storage,
            rate_limited=True,
            settings=settings,
            cores=where.server,
        ) as served:
            try:
                restart = asyncio.run(restarted(served.url, key, job.size or 0, started))
            except (OSError, TimeoutError, SetupError, WebSocketException) as exc:
                restart = {"error": f"the restarted server did not answer: {exc!r}"}
            restart["rss_bytes"] = rss_bytes(served.pid) if served.pid else None
            result["restart"] = restart
    return outcome


def _load(
    job: Job, served: Served, options: PlanOptions, key: SigningKey, where: Placement
) -> dict[str, Any]:
    """One load process (on the load cores); its figures, or the error it ended with."""
    if job.scenario == "connect":
        options = replace(options, connections=job.size)
    elif job.scenario == SCALE and job.size is not None:
        options = replace(options, objects=(job.size,))
    command = [sys.executable, "-m", "hivectl.bench.load", job.scenario, "--url", served.url]
    command += ["--flavor", job.target, *options.arguments(), "--json"]
    if served.pid is not None:
        command += ["--server-pid", str(served.pid)]
    if job.new_tokens:
        command.append("--new-tokens")
    try:
        with running_on(where.load):
            completed = subprocess.run(
                command,
                input=key_line(key).decode(),
                capture_output=True,
                text=True,
                timeout=LOAD_TIMEOUT_S,
            )
    except subprocess.TimeoutExpired:
        return {"error": f"the load generator did not finish in {LOAD_TIMEOUT_S:g} s"}
    errors = completed.stderr.strip().splitlines()[-ERROR_LINES:]
    if completed.returncode != 0:
        return {"error": "\n".join(errors) or f"load generator exit {completed.returncode}"}
    result = orjson.loads(completed.stdout)["result"]
    if job.scenario == "connect":
        (result,) = result["runs"]  # one size per job, each on a fresh server
    outcome: dict[str, Any] = {"result": result}
    if errors:
        outcome["warnings"] = errors
    return outcome
