"""`hivectl health`: ask a server's /healthz (or /readyz) and answer with the exit code.

Made for container health checks (slim images have no curl): exit 0 when the server
answers 200, 3 otherwise. An unreachable server is a failed check too (3), not a runtime
failure of the command, since "not reachable" is exactly what a health check reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import typer

from hivectl.cli.common import (
    CA_FILE_OPTION,
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    client_tls,
    duration_flag,
    fail,
    settings_from,
)


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  hivectl health\n\n"
        "  hivectl health --ready --url ws://127.0.0.1:8765/ws"
    )(health)


def probe_url(url: str, *, ready: bool) -> str:
    """``ws://h:p/ws`` or ``http://h:p`` -> ``http://h:p/healthz`` (``/readyz`` when `ready`)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    return f"{scheme}://{parts.netloc}/{'readyz' if ready else 'healthz'}"


def health(
    url: str | None = typer.Option(
        None, help="Server URL, ws:// or http:// (default: config client.url)."
    ),
    ready: bool = typer.Option(False, "--ready", help="Ask /readyz: is it accepting clients?"),
    timeout: float = typer.Option(
        "5s",
        parser=duration_flag,
        metavar="DURATION",
        help="How long to wait for the answer, e.g. 5s.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the answer as JSON on stdout: url, ok, status, error."
    ),
    config: Path | None = CONFIG_OPTION,
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """Check that a server is alive (or ready); exit 0 if so, 3 if not."""
    import urllib.error
    import urllib.request

    settings = settings_from(
        config,
        {"client.ca_file": str(ca_file) if ca_file else None},
        {"client.ca_file": "--ca-file"},
    ).settings
    target = url or settings.client.url
    try:
        probe = probe_url(target, ready=ready)
    except ValueError as exc:
        fail(f"--url: {exc}", EXIT_USAGE)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),  # never via a proxy
        urllib.request.HTTPSHandler(context=client_tls(settings.client.ca_file)),
    )
    status: int | None = None
    problem: str | None = None
    try:
        with opener.open(probe, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        problem = str(exc.reason if isinstance(exc, urllib.error.URLError) else exc)
    if problem is None and status != 200:
        problem = f"HTTP {status}"
    if as_json:
        answer = {"url": probe, "ok": problem is None, "status": status, "error": problem}
        typer.echo(json.dumps(answer))
        if problem is not None:
            raise typer.Exit(EXIT_CHECK_FAILED)
    elif problem is not None:
        fail(f"{probe}: {problem}", EXIT_CHECK_FAILED)
    else:
        typer.echo(f"{probe}: ok")
