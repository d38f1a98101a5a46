"""The bench report: the runner's raw results -> comparison rows, targets, notes (pure).

`build_report` returns one JSON-ready dictionary, the schema of ``--json``: what the runner
collected (``date``, ``machine``, ``versions``, ``plan``, ``url``, ``runs``) plus

* ``rows``: one per figure -- ``scenario``, ``figure``, ``unit``, ``hivectl``, ``baseline``
  (None: not measured, or "n/a" for the baseline's *ingest*), ``ratio`` (hivectl / baseline,
  from the two figures, for figures where a ratio means something), ``better``
  (``higher``/``lower``) and ``rounds`` (each target's figure in each round). Over several
  rounds a figure is the rounds' median; a count of failures (lost, duplicated, missing) is
  the worst round's, so that one bad round shows;
* ``targets``: the project's performance targets, each ``met`` True, False, or None when
  the run cannot judge it (a scenario not run or failed; *silent* with a non-default
  keepalive); among them issue 19's, on the server's CPU time per operation;
* ``notes``: what the reader must know to trust the figures -- above all, a run whose load
  side used (nearly) all the CPU it could while the server used less: its rates are the
  load side's limit, not the server's. The server's CPU time per operation (per
  authenticated connect, per connect + close, per delivered push) is the figure such a run
  does not bend: the server's CPU seconds over the window divided by the operations done;
* ``errors``: jobs that did not produce figures, and why;
* ``growth``: for *scale*, how each figure grows from the smallest realm to the largest,
  per storage backend, set against the growth of the realm (linear or better, or not).

*Scale* rows have the label ``scale <objects> <storage>`` and no baseline figure ("n/a"):
the baseline has no realms. Its targets are the issue's, judged per realm size and storage.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hivectl.bench.plan import NEW_TOKENS, SCALE, TARGETS

KIB = 1024.0
LOAD_BOUND_SHARE = 0.9
"""A load generator using this share of one core or more may be what limits a figure."""
NOT_APPLICABLE = "n/a"
HIVECTL_ONLY = ("ingest", SCALE)
"""Scenarios the baseline cannot run: it has no storage and no realms."""
LINEAR_SLACK = 1.2
"""A figure that grows up to this much faster than the realm still counts as linear: single
runs vary by 10-20 % on a small machine (see ``rounds``), and *scale* runs once."""

Result = Mapping[str, Any]
CPU_PER_CONNECT = "server CPU per authenticated connect"
CPU_PER_CYCLE = "server CPU per connect + close"
CPU_PER_PUSH = "server CPU per delivered push"


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    read: Callable[[Result], float | None]
    better: str = "lower"
    ratio: bool = True
    combine: Callable[[Sequence[float]], float] = statistics.median
    """How the rounds' figures make the one shown."""
    growth: str | None = None
    """For *scale*: how the figure should grow with the realm. ``total``: a time over the
    whole realm, at most in proportion to it; ``each``: a cost per object or per update,
    flat. None: a count of failures, not compared across sizes."""


def _get(*path: str) -> Callable[[Result], float | None]:
    def read(result: Result) -> float | None:
        value: Any = result
        for key in path:
            if not isinstance(value, Mapping) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)

    return read


def _kib_per_connection(result: Result) -> float | None:
    value = result.get("bytes_per_connection")
    return None if value is None else round(value / KIB, 2)


def _server_cpu_percent(result: Result) -> float | None:
    cpu, seconds = result.get("server_cpu_s"), result.get("seconds")
    return None if cpu is None or not seconds else round(100.0 * cpu / seconds, 1)


def _server_cpu_per(count: str, scale: float) -> Callable[[Result], float | None]:
    """The server's CPU time per operation (the window's CPU seconds / the `count` it
    served), times `scale`: what an operation costs the server whatever the load side
    could drive. None without CPU figures or operations."""

    def read(result: Result) -> float | None:
        cpu, done = result.get("server_cpu_s"), result.get(count)
        if cpu is None or not done:
            return None
        return round(float(cpu) / float(done) * scale, 4)

    return read


def _missing_deliveries(result: Result) -> float | None:
    return float(result["expected_deliveries"] - result["deliveries"])


def _per_object_after_restart(result: Result) -> float | None:
    loaded = _get("restart", "rss_bytes")(result)
    empty, objects = result.get("rss_empty_bytes"), result.get("objects")
    if loaded is None or empty is None or not objects:
        return None
    return round((loaded - float(empty)) / float(objects), 1)


def _incomplete(result: Result) -> float | None:
    """Subscribers at once that never held the full state (closed, or out of time)."""
    many = result.get("full_state_many")
    return None if many is None else float(many["subscribers"] - many["complete"])


def _gateway_close(result: Result) -> float | None:
    """The code the server closed the updating gateway with; 0 when it did not."""
    updates = result.get("updates")
    return None if updates is None else float(updates.get("closed") or 0)


def _lost_transitions(result: Result) -> float | None:
    """Presence events plus object updates some subscriber never saw, over all of them."""
    gone = result.get("transitions")
    return None if gone is None else float(gone["lost_events"] + gone["lost_updates"])


FIGURES: dict[str, tuple[Figure, ...]] = {
    "connect": (
        Figure("connections/s", "/s", _get("connections_per_s"), "higher"),
        Figure("connect p99", "ms", _get("connect_ms", "p99")),
        Figure("connect max", "ms", _get("connect_ms", "max")),
        Figure("memory per idle connection", "KiB", _kib_per_connection),
        Figure(CPU_PER_CONNECT, "ms", _server_cpu_per("connected", 1e3)),
        Figure("server CPU", "% of a core", _server_cpu_percent),
    ),
    "latency": tuple(
        Figure(f"{side} {p}", "ms", _get(f"{side}_ms", p))
        for side in ("join", "leave")
        for p in ("p50", "p90", "p99", "max")
    ),
    "churn": (
        Figure("presence events/s", "/s", _get("events_per_s"), "higher"),
        Figure("lost", "", _get("presence", "lost"), ratio=False, combine=max),
        Figure("duplicated", "", _get("presence", "duplicated"), ratio=False, combine=max),
        Figure(CPU_PER_CYCLE, "ms", _server_cpu_per("cycles", 1e3)),
        Figure("server CPU", "% of a core", _server_cpu_percent),
    ),
    "fanout": (
        Figure("deliveries/s", "/s", _get("deliveries_per_s"), "higher"),
        Figure("latency p50", "ms", _get("latency_ms", "p50")),
        Figure("latency p99", "ms", _get("latency_ms", "p99")),
        Figure("server CPU", "% of a core", _server_cpu_percent),
        Figure(CPU_PER_PUSH, "µs", _server_cpu_per("deliveries", 1e6)),
        Figure("missing deliveries", "", _missing_deliveries, ratio=False, combine=max),
    ),
    "ingest": (Figure("durable updates/s", "/s", _get("updates_per_s"), "higher"),),
    "silent": (
        Figure("time to disconnected, min", "s", _get("detection_s", "min")),
        Figure("time to disconnected, max", "s", _get("detection_s", "max")),
    ),
    SCALE: (
        Figure("setup: creating the objects", "s", _get("setup", "seconds"), growth="total"),
        Figure("server memory per object", "B", _get("bytes_per_object"), growth="each"),
        Figure(
            "server memory per object, restarted", "B", _per_object_after_restart, growth="each"
        ),
        Figure("start, empty", "s", _get("start_empty_s")),
        Figure("restart: /readyz", "s", _get("restart", "ready_s"), growth="total"),
        Figure("restart: realm readable", "s", _get("restart", "readable_s"), growth="total"),
        Figure(
            "presence count p50", "ms", _get("presence_count", "latency_ms", "p50"), growth="total"
        ),
        Figure(
            "full state, 1 exe subscriber",
            "s",
            _get("full_state_one", "slowest_s"),
            growth="total",
        ),
        Figure(
            "full state, 1 exe subscriber: closed",
            "",
            _get("full_state_one", "closed"),
            combine=max,
        ),
        Figure(
            "full state, exe subscribers at once: slowest",
            "s",
            _get("full_state_many", "slowest_s"),
            growth="total",
        ),
        Figure(
            "full state, exe subscribers at once: closed",
            "",
            _get("full_state_many", "closed"),
            combine=max,
        ),
        Figure(
            "full state, exe subscribers at once: incomplete",
            "",
            _incomplete,
            combine=max,
        ),
        Figure(
            "one gateway: updates applied/s",
            "/s",
            _get("updates", "updates_per_s"),
            "higher",
            growth="each",
        ),
        Figure("one gateway: rejected (429)", "", _get("updates", "rejected"), combine=max),
        Figure("one gateway: closed with", "code", _gateway_close, combine=max),
        Figure(
            "gateway gone: transitions seen, slowest",
            "s",
            _get("transitions", "slowest_s"),
            growth="total",
        ),
        Figure("gateway gone: lost (events + updates)", "", _lost_transitions, combine=max),
        Figure("gateway gone: subscribers closed", "", _get("transitions", "closed"), combine=max),
    ),
}


def _by_label(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    """label -> target -> its runs (one per round), in the order the runs were made."""
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for run in runs:
        grouped.setdefault(run["label"], {}).setdefault(run["target"], []).append(run)
    return grouped


def ratio(hivectl: float, baseline: float) -> float | None:
    return None if baseline == 0 else round(hivectl / baseline, 2)


def build_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for label, targets in _by_label(runs).items():
        scenario = next(iter(targets.values()))[0]["scenario"]
        for figure in FIGURES[scenario]:
            values: dict[str, float | str | None] = {}
            rounds: dict[str, list[float | None]] = {}
            for target in TARGETS:
                rounds[target] = [
                    figure.read(run["result"]) if run.get("result") is not None else None
                    for run in targets.get(target, [])
                ]
                measured = [value for value in rounds[target] if value is not None]
                if scenario in HIVECTL_ONLY and target == "baseline":
                    values[target] = NOT_APPLICABLE
                else:
                    values[target] = float(figure.combine(measured)) if measured else None
            hivectl, baseline = values["hivectl"], values["baseline"]
            quotient = None
            if figure.ratio and isinstance(hivectl, float) and isinstance(baseline, float):
                quotient = ratio(hivectl, baseline)
            rows.append(
                {
                    "scenario": label,
                    "figure": figure.name,
                    "unit": figure.unit,
                    "hivectl": hivectl,
                    "baseline": baseline,
                    "ratio": quotient,
                    "better": figure.better,
                    "rounds": rounds,
                }
            )
    return rows


def _find(rows: list[dict[str, Any]], scenario: str, figure: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["scenario"] == scenario and r["figure"] == figure), None)


def _target(
    text: str, value: Any, unit: str, met: bool | None, detail: str | None = None
) -> dict[str, Any]:
    return {"target": text, "value": value, "unit": unit, "met": met, "detail": detail}


def _connect_targets(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        if row["scenario"].startswith("connect") and row["figure"] == "connections/s":
            share = row["ratio"]
            yield _target(
                f"{row['scenario']}: connections/s >= 0.8x the baseline's",
                share,
                "x",
                None if share is None else share >= 0.8,
            )
            memory = _find(rows, row["scenario"], "memory per idle connection")
            kib = memory["hivectl"] if memory is not None else None
            yield _target(
                f"{row['scenario']}: memory per idle provider <= 12 KiB",
                kib,
                "KiB",
                None if kib is None else kib <= 12.0,
            )


def build_targets(rows: list[dict[str, Any]], plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, judged on the rows (None: this run cannot tell)."""
    targets = list(_connect_targets(rows))
    leave = _find(rows, "latency", "leave p99")
    if leave is not None:
        share = leave["ratio"]
        targets.append(
            _target(
                "latency: leave p99 <= 1.5x the baseline's",
                share,
                "x",
                None if share is None else share <= 1.5,
            )
        )
    churn = _find(rows, "churn", "presence events/s")
    if churn is not None:
        share = churn["ratio"]
        lost = _find(rows, "churn", "lost")
        duplicated = _find(rows, "churn", "duplicated")
        counts = [row["hivectl"] if row else None for row in (lost, duplicated)]
        met = None
        if share is not None and None not in counts:
            met = share >= 0.8 and counts == [0.0, 0.0]
        shown = ["?" if count is None else f"{count:,.0f}" for count in counts]
        targets.append(
            _target(
                "churn: events/s >= 0.8x the baseline's, none lost or duplicated",
                share,
                "x",
                met,
                f"lost {shown[0]}, duplicated {shown[1]}",
            )
        )
    targets += _cpu_targets(rows)
    ingest = _find(rows, "ingest", "durable updates/s")
    if ingest is not None:
        rate = ingest["hivectl"]
        targets.append(
            _target(
                "ingest: >= 20,000 durable updates/s",
                rate,
                "/s",
                None if rate is None else rate >= 20_000,
            )
        )
    silent = _find(rows, "silent", "time to disconnected, max")
    if silent is not None:
        worst = silent["hivectl"]
        default = plan.get("ping_interval") is None and plan.get("ping_timeout") is None
        met = worst <= 30.0 if worst is not None and default else None
        detail = None if default else "not judged: the keepalive was not the default"
        targets.append(_target("silent: <= 30 s with default keepalive", worst, "s", met, detail))
    return targets


def _cpu_targets(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Issue 19: the server's CPU per connect at most a share of the baseline's."""
    for row in rows:
        limit = cpu_limit(row["scenario"], row["figure"])
        if limit is None:
            continue
        share = row["ratio"]
        words = " (reused tokens)" if row["scenario"] == "churn" else ""
        yield _target(
            f"{row['scenario']}: {row['figure']} <= {limit}x the baseline's{words}",
            share,
            "x",
            None if share is None else share <= limit,
        )


def cpu_limit(label: str, figure: str) -> float | None:
    """Issue 19's most hivectl / baseline for a CPU-per-operation row, None if it sets none:
    per authenticated connect 0.75, per connect + close 0.7 with reused tokens and 0.8 with
    new ones (where deepstream is on the 2-core machine)."""
    if figure == CPU_PER_CONNECT and label.startswith("connect"):
        return 0.75
    if figure == CPU_PER_CYCLE:
        return {"churn": 0.7, f"churn {NEW_TOKENS}": 0.8}.get(label)
    return None


def _load_notes(runs: list[dict[str, Any]]) -> Iterator[str]:
    """Figures the load generator, not the server, may have set: one note per scenario and
    target, from the busiest of the rounds where it was the bottleneck."""
    for label, targets in _by_label(runs).items():
        for target, made in targets.items():
            bound = [shares for run in made if (shares := _load_bound(run)) is not None]
            if not bound:
                continue
            load_share, server_share = max(bound, key=lambda shares: shares[0])
            server_text = "?" if server_share is None else f"{server_share:.0%}"
            rounds = f" (in {len(bound)} of {len(made)} rounds)" if len(made) > 1 else ""
            processes = next(
                (p for run in made if (p := (run.get("result") or {}).get("load_processes"))),
                None,
            )
            if processes is None:
                yield (
                    f"{label} on {target}: the load generator used {load_share:.0%} of a core,"
                    f" the server {server_text} -- the load generator was the bottleneck{rounds}"
                )
            else:
                yield (
                    f"{label} on {target}: the load side ({_processes(processes)} and the"
                    f" coordinator) used {load_share:.0%} of its cores, the server"
                    f" {server_text} of a core -- the load side was the bottleneck{rounds}; the"
                    " server's CPU per operation does not depend on it"
                )


def _processes(count: int) -> str:
    return "1 load process" if count == 1 else f"{count} load processes"


def _load_bound(run: Mapping[str, Any]) -> tuple[float, float | None] | None:
    """(load side's, server's) share, when the load side was the limit."""
    return _bound_window(run.get("result") or {})


def _bound_window(measured: Mapping[str, Any]) -> tuple[float, float | None] | None:
    """The same for one CPU window (``seconds``, ``load_cpu_s``, ``server_cpu_s``, and for a
    window of several load processes ``load_cpu_max_s`` and ``load_cores``).

    The load side is saturated when one of its processes used (nearly) a whole core, or all
    of them together (nearly) all the cores they may run on; its share is the larger of the
    two, and it is the limit when the server used less than that.
    """
    seconds, load, server = (measured.get(k) for k in ("seconds", "load_cpu_s", "server_cpu_s"))
    if not seconds or load is None:
        return None
    busiest = measured.get("load_cpu_max_s", load) / seconds
    together = load / seconds / (measured.get("load_cores") or 1)
    load_share = max(busiest, together)
    server_share = None if server is None else server / seconds
    if load_share >= LOAD_BOUND_SHARE and (server_share is None or server_share < load_share):
        return load_share, server_share
    return None


SCALE_PHASES = {
    "full_state_one": "full state, 1 subscriber",
    "full_state_many": "full state, subscribers at once",
    "updates": "one gateway's updates",
    "transitions": "gateway gone",
}
"""The measured phases of *scale* with a CPU window, and their names in notes."""
MIN_WINDOW_S = 0.5
"""Shorter CPU windows are not judged: ``/proc`` counts CPU time in 10 ms ticks."""
SCALE_NOTE = "scale runs against hivectl only: the baseline server has no realms"


def _scale_notes(runs: list[dict[str, Any]]) -> Iterator[str]:
    """That *scale* has no baseline, and each of its phases the load generator limited."""
    made = [run for run in runs if run["scenario"] == SCALE and run.get("result")]
    if any(run["scenario"] == SCALE for run in runs):
        yield SCALE_NOTE
    for run in made:
        for phase, name in SCALE_PHASES.items():
            figures = run["result"].get(phase) or {}
            measured = figures.get("cpu") or {}
            seconds = measured.get("seconds") or 0.0
            if seconds < MIN_WINDOW_S:
                continue
            shares = _bound_window(measured)
            if shares is not None:
                server = "?" if shares[1] is None else f"{shares[1]:.0%}"
                yield (
                    f"{run['label']}, {name}: the load generator used {shares[0]:.0%} of a"
                    f" core, the server {server} -- the load generator was the bottleneck"
                )
            together = (figures.get("subscriber_cpu_s") or 0.0) / seconds
            if together >= LOAD_BOUND_SHARE:
                server_cpu = measured.get("server_cpu_s")
                server = "?" if server_cpu is None else f"{server_cpu / seconds:.0%}"
                yield (
                    f"{run['label']}, {name}: the subscriber processes used {together:.0%} of"
                    f" a core together, the server {server}: on a machine of few cores they"
                    " competed with the server for CPU"
                )


def scale_growth(
    small: float, large: float, objects_growth: float, kind: str, better: str
) -> float | None:
    """How a *scale* figure grew from the smallest realm to the largest, per object: 1.0 is
    linear, below is better. A ``total`` (a time over the whole realm) is divided by how
    much the realm grew; an ``each`` (a cost per object, per update) should stay flat. A
    figure where higher is better (a rate) grows by its inverse, the time per update."""
    if small <= 0 or large <= 0 or objects_growth <= 0:
        return None
    cost = small / large if better == "higher" else large / small
    return round(cost / objects_growth if kind == "total" else cost, 2)


def build_growth(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per storage backend, each *scale* figure from the smallest realm to the largest."""
    sizes: dict[str, dict[int, str]] = {}
    for run in runs:
        if run["scenario"] == SCALE and run.get("result"):
            sizes.setdefault(run["storage"], {})[run["size"]] = run["label"]
    growth = []
    for storage, labels in sizes.items():
        if len(labels) < 2:
            continue
        smallest, largest = min(labels), max(labels)
        for figure in FIGURES[SCALE]:
            small = _find(rows, labels[smallest], figure.name)
            large = _find(rows, labels[largest], figure.name)
            if figure.growth is None or small is None or large is None:
                continue
            if small["hivectl"] is None or large["hivectl"] is None:
                continue
            per_object = scale_growth(
                small["hivectl"], large["hivectl"], largest / smallest, figure.growth, figure.better
            )
            if per_object is None:  # a zero: nothing to compare
                continue
            growth.append(
                {
                    "storage": storage,
                    "figure": figure.name,
                    "unit": figure.unit,
                    "objects": [smallest, largest],
                    "small": small["hivectl"],
                    "large": large["hivectl"],
                    "per_object": per_object,
                    "linear": per_object <= LINEAR_SLACK,
                }
            )
    return growth


def _scale_targets(runs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The issue's targets for fleet scale, for each realm size and storage backend."""
    for run in runs:
        result = run.get("result")
        if run["scenario"] != SCALE or not result:
            continue
        label = run["label"]
        per_object = result.get("bytes_per_object")
        yield _target(
            f"{label}: server memory per object <= 1 KiB",
            per_object,
            "B",
            None if per_object is None else per_object <= KIB,
        )
        one, many = result["full_state_one"], result["full_state_many"]
        yield _target(
            f"{label}: an exe subscriber holds the full state within 2 s",
            one["slowest_s"],
            "s",
            _held_within(one, 2.0),
            _subscribers_detail(one),
        )
        yield _target(
            f"{label}: {many['subscribers']} exe subscribers at once within 6 s, none closed",
            many["slowest_s"],
            "s",
            _held_within(many, 6.0),
            _subscribers_detail(many),
        )
        updates = result["updates"]
        rate, closed = updates["updates_per_s"], updates["closed"]
        yield _target(
            f"{label}: one gateway connection sustains >= 10,000 updates/s",
            rate,
            "/s",
            rate >= 10_000 and closed is None,
            f"{updates['rejected']:,} rejected (429)" + (f", closed {closed}" if closed else ""),
        )
        gone = result["transitions"]
        lost = gone["lost_events"] + gone["lost_updates"]
        slowest = gone["slowest_s"]
        yield _target(
            f"{label}: all {gone['transitions']:,} transitions reach {gone['subscribers']}"
            " subscribers within 5 s, none lost",
            slowest,
            "s",
            slowest is not None and slowest <= 5.0 and lost == 0 and gone["closed"] == 0,
            f"lost {lost:,}, {gone['closed']} closed",
        )


def _held_within(group: Mapping[str, Any], limit_s: float) -> bool:
    slowest = group["slowest_s"]
    return slowest is not None and slowest <= limit_s and group["closed"] == 0


def _subscribers_detail(group: Mapping[str, Any]) -> str:
    codes = ", ".join(f"{code} x{n}" for code, n in group["close_codes"].items())
    text = f"{group['complete']} of {group['subscribers']} held all"
    return f"{text}; closed {codes}" if codes else text


def build_report(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--json`` document: the raw results plus rows, targets, notes and errors."""
    runs = list(raw["runs"])
    rows = build_rows(runs)
    errors = [
        {"scenario": run["label"], "target": run["target"], "error": run["error"]}
        for run in runs
        if "error" in run
    ]
    return {
        **raw,
        "rows": rows,
        "targets": [*build_targets(rows, raw["plan"]), *_scale_targets(runs)],
        "growth": build_growth(rows, runs),
        "notes": [
            *raw.get("notes", []),
            *_log_level_notes(raw["plan"]),
            *_load_notes(runs),
            *_scale_notes(runs),
        ],
        "errors": errors,
    }


def _log_level_notes(plan: Mapping[str, Any]) -> list[str]:
    level = plan.get("log_level", "warning")
    if level == "warning":
        return []
    return [f"hivectl ran with log.level {level} (the bench's usual warning logs no connections)"]
