"""`hivectl serve`: run the presence server."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from hivectl.cli.common import CONFIG_OPTION, EXIT_USAGE, err_console, settings_from


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  hivectl serve\n\n  hivectl serve --host 0.0.0.0 --port 8765"
    )(serve)


def serve(
    host: str | None = typer.Option(None, help="Address to listen on [server.host]."),
    port: int | None = typer.Option(None, help="WebSocket port; 0 picks a free one [server.port]."),
    api_port: int | None = typer.Option(None, help="HTTP API port [server.api_port]."),
    config: Path | None = CONFIG_OPTION,
    log_level: str | None = typer.Option(None, help="debug, info, warning, error [log.level]."),
) -> None:
    """Run the presence server (WebSocket, health endpoints and the HTTP API)."""
    loaded = settings_from(
        config,
        {
            "server.host": host,
            "server.port": port,
            "server.api_port": api_port,
            "log.level": log_level,
        },
    )
    settings = loaded.settings
    logging.basicConfig(
        level=settings.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from server.app import HivekitServer
    from server.auth import AuthConfigError
    from server.runner import run

    def announce(server: HivekitServer) -> None:
        api = f", HTTP API {server.api_url}" if server.api_url else ""
        typer.echo(f"hivectl serving {server.ws_url}{api}", err=True)

    try:
        code = run(settings, announce=announce)
    except AuthConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    raise typer.Exit(code)
