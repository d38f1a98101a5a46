"""What a bench run does: the scenarios and their sizes, full or ``--quick``.

One frozen `BenchPlan` is built from the command-line options (`PlanOptions`), in the CLI and
again in each load process from the same options, so a load process started by hand
(``python -m hivectl.bench.load churn --url ... --quick``) runs exactly what the bench runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SCENARIOS = ("connect", "latency", "churn", "fanout", "ingest", "silent")
"""What ``hivectl bench`` runs when no scenario is named: each against both servers."""
SCALE = "scale"
"""Fleet scale: named only (``hivectl bench scale``). It runs against hivectl alone -- the
baseline has no realms to fill -- with realms of 10,000 and 100,000 objects, minutes of
work, so it is no part of the default run."""
SELECTABLE = (*SCENARIOS, SCALE)
TARGETS = ("hivectl", "baseline")
STORAGES = ("memory", "sqlite")
"""The ``[storage] backend`` values *scale* compares."""
REALM = "bench"
NEW_TOKENS = "new tokens"
"""The label's ending for *churn* with a new token per connect (``churn new tokens``)."""
MAX_CONNECTIONS = 8000
"""Providers per run at most: client and server sockets share the machine's open files
and ephemeral ports, and `hivectl serve` refuses more than 10,000 connections by default."""
MAX_DURATION_S = 600.0
MAX_ROUNDS = 9
MAX_LOAD_PROCESSES = 16
"""Load processes per scenario at most: each holds its share of the connections."""
MAX_OBJECTS = 1_000_000
"""Objects per *scale* realm at most: each takes memory in the server and the load side."""


@dataclass(frozen=True)
class BenchPlan:
    """Sizes and durations; ``ping_*`` None means each server's own default keepalive."""

    connect_sizes: tuple[int, ...] = (1000, 5000)
    in_flight: int = 200
    """Connects (handshake + authentication) in progress at once, in every scenario."""
    latency_cycles: int = 200
    churn_providers: int = 1000
    churn_seconds: float = 10.0
    fanout_riders: int = 1000
    fanout_subscribers: int = 50
    fanout_seconds: float = 10.0
    update_interval: float = 1.0
    """Each rider's location updates are due on this wall-clock grid (open model)."""
    ingest_clients: int = 64
    ingest_updates: int = 2000
    """Updates per ingest client."""
    silent_providers: int = 4
    """Stopped providers, connected at phases spread over one ping interval, so that their
    detection times span the keepalive's best and worst case."""
    ping_interval: float | None = None
    ping_timeout: float | None = None
    drain_seconds: float = 5.0
    """After the load stops, how long outstanding events may take before they count as lost."""
    scale_sizes: tuple[int, ...] = (10_000, 100_000)
    """Objects in the realm of *scale*, one job (a fresh server) per size and storage."""
    scale_subscribers: int = 10
    """Realm-wide subscribers at once, for the full state and for the presence transitions."""
    scale_gateway_objects: int = 50_000
    """Objects the disconnecting gateway covers in *scale*; at most half the realm."""
    scale_update_seconds: float = 5.0
    """How long one gateway connection sends location updates in *scale*."""
    scale_wait_s: float = 60.0
    """The longest *scale* waits for any one thing (a full state, a settled presence, the
    transitions): what has not come by then is reported missing, and the run goes on."""
    rounds: int = 3
    """Times each scenario but *silent* and *scale* runs per target, the targets taking
    turns; the report gives each figure's median. One short burst (1,000 connects take half
    a second) varies by 15-20 % on a small machine, enough to turn a ratio either way; the
    median of rounds run side by side does not. *Silent* measures timers, not throughput:
    one round. *Scale* has nothing to take turns with and runs for minutes: one round. A
    load process always runs one round."""

    load_processes: int | None = None
    """Processes that drive *connect*, *churn* and *fanout* (each its share of the
    connections); None: `default_load_processes` of the cores the load side may use."""
    log_level: str = "warning"
    """The started hivectl's ``log.level``: warning (no line per connection) unless a run
    asks what logging at the default level (info) costs."""

    @property
    def default_keepalive(self) -> bool:
        return self.ping_interval is None and self.ping_timeout is None


QUICK = BenchPlan(
    connect_sizes=(200,),
    in_flight=20,
    latency_cycles=10,
    churn_providers=10,
    churn_seconds=1.0,
    fanout_riders=20,
    fanout_subscribers=10,
    fanout_seconds=2.0,
    update_interval=0.5,
    ingest_clients=4,
    ingest_updates=100,
    silent_providers=2,
    ping_interval=0.5,
    ping_timeout=0.5,
    drain_seconds=5.0,
    scale_sizes=(500,),
    scale_update_seconds=1.0,
    scale_wait_s=20.0,
    rounds=1,
)
"""A smoke run of every scenario in seconds; keepalive shortened so *silent* is quick too.
Big enough that each CPU window holds several of ``/proc``'s 10 ms ticks of server time, so
that CPU per operation is never a zero read from a window too short to show."""


@dataclass(frozen=True)
class PlanOptions:
    """The command-line options that shape a plan, as given (None: not given).

    ``connections`` replaces the providers of *connect* (one size instead of 1,000 and
    5,000), *churn* and the riders of *fanout*; ``duration`` the length of *churn* and
    *fanout*; ``objects`` the realm sizes of *scale*; a keepalive option given alone keeps
    the other at the plan's value.
    """

    quick: bool = False
    connections: int | None = None
    duration: float | None = None
    ping_interval: float | None = None
    ping_timeout: float | None = None
    rounds: int | None = None
    objects: tuple[int, ...] | None = None
    load_processes: int | None = None
    log_level: str | None = None

    def plan(self) -> BenchPlan:
        plan = QUICK if self.quick else BenchPlan()
        if self.connections is not None:
            plan = replace(
                plan,
                connect_sizes=(self.connections,),
                churn_providers=self.connections,
                fanout_riders=self.connections,
            )
        if self.duration is not None:
            plan = replace(plan, churn_seconds=self.duration, fanout_seconds=self.duration)
        if self.ping_interval is not None:
            plan = replace(plan, ping_interval=self.ping_interval)
        if self.ping_timeout is not None:
            plan = replace(plan, ping_timeout=self.ping_timeout)
        if self.rounds is not None:
            plan = replace(plan, rounds=self.rounds)
        if self.objects is not None:
            plan = replace(plan, scale_sizes=self.objects)
        if self.load_processes is not None:
            plan = replace(plan, load_processes=self.load_processes)
        if self.log_level is not None:
            plan = replace(plan, log_level=self.log_level)
        return plan

    def arguments(self) -> list[str]:
        """The same options for ``python -m hivectl.bench.load`` (which runs one round)."""
        words = ["--quick"] if self.quick else []
        for flag, value in (
            ("--connections", self.connections),
            ("--duration", self.duration),
            ("--ping-interval", self.ping_interval),
            ("--ping-timeout", self.ping_timeout),
            ("--load-processes", self.load_processes),
        ):
            if value is not None:
                words += [flag, str(value)]
        if self.objects is not None:
            words += ["--objects", ",".join(str(size) for size in self.objects)]
        return words


def default_load_processes(cores: int) -> int:
    """One load process per core but one: the server's (on two cores, one load process on
    the core the server leaves -- the peer benchmark's split). At least one, at most
    `MAX_LOAD_PROCESSES`."""
    return max(1, min(cores - 1, MAX_LOAD_PROCESSES))


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"10000,100000"`` (``_`` allowed as in Python: ``10_000``) -> (10000, 100000)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--objects takes sizes separated by commas, not {text!r}") from None


def plan_problems(plan: BenchPlan) -> list[str]:
    """What makes a plan unsafe to run: every count and duration is bounded."""
    problems = []
    counts = (*plan.connect_sizes, plan.churn_providers, plan.fanout_riders)
    if not all(1 <= count <= MAX_CONNECTIONS for count in counts):
        problems.append(f"--connections must be from 1 to {MAX_CONNECTIONS:,}")
    if not all(0.5 <= s <= MAX_DURATION_S for s in (plan.churn_seconds, plan.fanout_seconds)):
        problems.append(f"--duration must be from 0.5s to {MAX_DURATION_S:g}s")
    if not plan.scale_sizes or not all(2 <= n <= MAX_OBJECTS for n in plan.scale_sizes):
        problems.append(f"--objects must be sizes from 2 to {MAX_OBJECTS:,}")
    if plan.load_processes is not None and not 1 <= plan.load_processes <= MAX_LOAD_PROCESSES:
        problems.append(f"--load-processes must be from 1 to {MAX_LOAD_PROCESSES}")
    if not 1 <= plan.rounds <= MAX_ROUNDS:
        problems.append(f"--rounds must be from 1 to {MAX_ROUNDS}")
    keepalive = {"--ping-interval": plan.ping_interval, "--ping-timeout": plan.ping_timeout}
    for name, value in keepalive.items():
        if value is not None and not 0.1 <= value <= 120:
            problems.append(f"{name} must be from 0.1s to 120s")
    return problems
