"""`hivectl cluster status`: every node of a cluster, its lease and log position, the
stream and the NATS servers, asked of any one node (``adm``/``cst``, README "Operating").

It connects like the other operator commands (`hivectl.cli.admin.call`). The answer is
rendered by pure functions (`status_table`, `stream_lines`, `problems`), and the exit
code says whether the cluster is whole, so a cron job or a health check can run it:
0 when every node answered and renews its lease (a server that is no cluster included),
3 when a node missed its lease (or was declared lost lately) or did not answer, 1 when
the server could not be asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hivectl.cli import admin
from hivectl.cli.common import CONFIG_OPTION, EXIT_CHECK_FAILED, warn

app = typer.Typer(help="See the cluster's nodes, stream and NATS servers.", no_args_is_help=True)


@app.command(
    epilog="Examples:\n\n  hivectl cluster status\n\n"
    "  hivectl cluster status --json --url wss://node-b.example.com/ws\n\n"
    "Exit codes: 0 every node answered and renews its lease; 3 a node missed its lease "
    "or did not answer; 1 the server could not be asked.",
)
def status(
    json_output: bool = admin.JSON_OPTION,
    url: str | None = admin.URL_OPTION,
    token: str | None = admin.TOKEN_OPTION,
    timeout: float = admin.TIMEOUT_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Every node with its incarnation, log state, applied position, lag and lease age."""
    result = admin.call(config, url, token, timeout, "cst", {})
    if json_output:
        admin.print_json(result)
    elif result["mode"] != "cluster":
        typer.echo(f"{result['node']} is not a cluster: it serves alone ({result['mode']})")
    else:
        Console().print(status_table(result))
        for line in stream_lines(result):
            typer.echo(line)
    found = problems(result)
    for problem in found:
        warn(problem)
    if found:
        raise typer.Exit(EXIT_CHECK_FAILED)


def status_table(result: dict[str, Any]) -> Table:
    """One row per node; the node that answered is marked ``*``, a missed lease in red."""
    table = admin.new_table(
        "node", "incarnation", "state", "writes", "applied", "lag", "lease age", "nats"
    )
    table.caption = "* the node that answered; lease ages as it sees them"
    unanswered = set(result["unanswered"])
    for row in result["nodes"]:
        node = row["node"]
        name = node.partition("#")[0] + (" *" if node == result["node"] else "")
        state = row["state"] or ("no answer" if node in unanswered else "-")
        if row["lostAt"] is not None:
            state = f"lost at {row['lostAt'][11:19]}Z"  # within the last minutes: the time
        age = row["leaseAge"]
        lease = Text("-" if age is None else f"{age:.1f}s")
        if row["missed"]:
            lease.append(" missed", style="bold red")
        nats = row["nats"]
        table.add_row(
            Text(name),
            Text(admin.show(row["incarnation"])),
            Text(state, style="" if row["state"] == "following" else "yellow"),
            {True: "yes", False: "no", None: "-"}[row["writable"]],
            admin.show(row["applied"]),
            admin.show(row["lag"]),
            lease,
            Text("-" if nats is None else f"{nats['name']} {nats['url'].partition('://')[2]}"),
        )
    return table


def stream_lines(result: dict[str, Any]) -> list[str]:
    """The stream (replicas, leader, followers, sequences) and the NATS servers known."""
    stream = result["stream"]
    if stream["error"] is not None:
        head = f"stream {stream['name']}: not described by JetStream ({stream['error']})"
    else:
        where = "" if stream["cluster"] is None else f" in NATS cluster {stream['cluster']}"
        head = (
            f"stream {stream['name']}: {stream['replicas']} replicas, leader "
            f"{admin.show(stream['leader'])}{where}; sequences {stream['firstSeq']}.."
            f"{stream['lastSeq']}, {stream['messages']} messages"
        )
    lines = [head]
    for follower in stream["followers"]:
        health = "current" if follower["current"] else f"behind by {follower['lag']}"
        offline = ", offline" if follower["offline"] else ""
        lines.append(f"  follower {follower['name']}: {health}{offline}")
    servers = ", ".join(result["natsServers"]) or "-"
    lines.append(f"NATS servers: {servers}")
    return lines


def problems(result: dict[str, Any]) -> list[str]:
    """What makes the exit code 3: nodes that missed their lease or did not answer."""
    found = []
    missed = [row["node"] for row in result["nodes"] if row["missed"]]
    if missed:
        found.append(f"missed their lease: {', '.join(missed)}")
    if result["unanswered"]:
        found.append(f"no answer from nodes: {', '.join(result['unanswered'])}")
    return found
