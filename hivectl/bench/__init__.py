"""`hivectl bench`: the server's figures beside a bare `websockets` server's, from one run.

Every figure is only meaningful next to a ceiling measured on the same machine at the same
time (design.md §6), so each scenario runs twice: against `hivectl serve` and against
`baseline`, a `websockets` server that does the least a presence server must do.

Four kinds of process, so that CPU time is attributable and no two measured parties share an
interpreter lock:

* the orchestrator (`runner`, behind the CLI) starts the servers and the load generators and
  collects their JSON;
* the server under test: a ``hivectl serve`` subprocess, a fresh one per scenario;
* the baseline: ``python -m hivectl.bench.baseline``, likewise;
* the load generator: ``python -m hivectl.bench.load SCENARIO``, which speaks either
  protocol (`flavors`), runs one scenario (`scenarios`) and reads the server's CPU time and
  memory from ``/proc`` around its measured window (`procstat`). *connect*, *churn* and
  *fanout* spread their connections over load processes (``python -m
  hivectl.bench.share_process``, coordinated by `worker`), so that one Python process is
  not the limit; the load generator coordinates them. The *silent* scenario adds one
  more: a provider process (`provider`) that is stopped with SIGSTOP.

Pure parts: `plan` (what to run, full or quick), `report` (results -> comparison rows,
targets, notes and the ``--json`` document); `render` draws the report with Rich.
"""
