"""`hivectl serve`: run the presence server.

Flags read like uvicorn's and land in the settings as the top layer; everything else comes
from the config file and ``HIVECTL_*`` variables. With no key configured, the first start
generates ``hivectl.secret`` beside the data (see `hivectl.core.keyfiles`) and says where,
so `hivectl serve` then `hivectl token mint` works on a fresh machine.

The startup line on stderr, ``hivectl serving ws://HOST:PORT/ws ...``, carries the real port
(``--port 0`` picks a free one): scripts and tests wait for it. Exit codes: 0 after a
graceful SIGTERM/SIGINT shutdown, 1 when it cannot start (port in use...), 2 on a bad
config or key, or a database it must not touch (newer, corrupt, unwritable: see
`server.stores.sqlite_storage`).
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    config_path,
    fail,
    secret_file_flags,
    settings_from,
)
from hivectl.core.settings import Settings, load_settings

log = logging.getLogger("hivectl.server")


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class StorageBackend(StrEnum):
    sqlite = "sqlite"
    memory = "memory"


def register(app: typer.Typer) -> None:
    app.command(
        epilog="Examples:\n\n  hivectl serve\n\n  hivectl serve --host 0.0.0.0 --port 8765"
        " --log-format json\n\n  HIVECTL_AUTH_SECRET_FILE=/run/secrets/jwt hivectl serve"
        "\n\n  hivectl serve --cluster nats://10.0.0.5:4222 --node-id eu-1"
    )(serve)


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (config server.host)."),
    port: int | None = typer.Option(
        None, help="WebSocket port; 0 picks a free one (config server.port)."
    ),
    api_port: int | None = typer.Option(None, help="HTTP API port (config server.api_port)."),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
    log_level: LogLevel | None = typer.Option(None, help="Lowest level logged (config log.level)."),
    log_format: LogFormat | None = typer.Option(
        None, help="text, or json for one JSON object per line (config log.format)."
    ),
    shutdown_timeout: str | None = typer.Option(
        None, help="Longest graceful stop on SIGTERM, e.g. 10s (config server.shutdown_timeout)."
    ),
    storage: StorageBackend | None = typer.Option(
        None,
        help="sqlite (durable, in the file storage.path) or memory (tests, demos)"
        " (config storage.backend).",
    ),
    cluster: str | None = typer.Option(
        None,
        help="Join a cluster through NATS JetStream: nats://HOST:PORT, comma-separated for"
        " a NATS cluster (config cluster.nats_url).",
    ),
    node_id: str | None = typer.Option(
        None, help="This node's name in logs and in the cluster (config server.node_id)."
    ),
    tls_cert: Path | None = typer.Option(
        None,
        help="PEM certificate chain: serve wss:// and https:// on both ports"
        " (config server.tls_cert; needs --tls-key).",
    ),
    tls_key: Path | None = typer.Option(
        None, help="PEM private key of --tls-cert (config server.tls_key)."
    ),
) -> None:
    """Run the presence server (WebSocket, /healthz, /readyz, /metrics, and the HTTP API)."""
    flags: dict[str, object] = {
        "server.host": host,
        "server.port": port,
        "server.api_port": api_port,
        "server.shutdown_timeout": shutdown_timeout,
        "log.level": log_level.value if log_level else None,
        "log.format": log_format.value if log_format else None,
        "storage.backend": storage.value if storage else None,
        "cluster.nats_url": cluster,
        "server.node_id": node_id,
        "server.tls_cert": str(tls_cert) if tls_cert else None,
        "server.tls_key": str(tls_key) if tls_key else None,
        **secret_file_flags(secret_file),
    }
    labels = {
        "log.level": "--log-level",
        "log.format": "--log-format",
        "storage.backend": "--storage",
        "cluster.nats_url": "--cluster",
        "server.node_id": "--node-id",
        "server.tls_cert": "--tls-cert",
        "server.tls_key": "--tls-key",
        **SECRET_FILE_LABELS,
    }
    loaded = settings_from(config, flags, labels)
    from hivectl.cli.logs import ANNOUNCE, configure_logging
    from hivectl.core.keyfiles import with_generated_secret

    configure_logging(loaded.settings.log.level, loaded.settings.log.format)
    # From here on, with JSON logs, every line on stderr is a JSON object, errors included.
    stop = _fail_logged if loaded.settings.log.format == "json" else fail
    if loaded.config_file is not None:
        log.info("config file %s", loaded.config_file)
    try:
        settings, generated = with_generated_secret(loaded.settings, create=True)
    except OSError as exc:
        # The data directory is configuration ([storage] path): a usage error, like the
        # storage refusing an unwritable directory.
        stop(f"cannot create the signing secret beside the data: {exc}", EXIT_USAGE)
    announced = logging.getLogger(ANNOUNCE)
    if generated is not None and generated.created:
        announced.info(
            "generated a signing secret in %s (mode 0600); `hivectl token mint` run here "
            "signs with it",
            generated.path.resolve(),
            extra={"secret_file": str(generated.path.resolve())},
        )

    from hivectl.core.tls import server_context
    from hivectl.core.tokens import short_secret
    from server.io.app import HivekitServer
    from server.io.auth import keyring_from_settings
    from server.io.runner import run
    from server.stores.storage import StorageError

    try:  # a bad key or TLS file is a config error (exit 2), so find it before binding
        ring = keyring_from_settings(settings.auth)
        if settings.server.tls_cert:
            server_context(settings.server.tls_cert, settings.server.tls_key)
    except ValueError as exc:
        stop(str(exc), EXIT_USAGE)
    for key in ring.keys:
        # Served with a warning, not refused: refusing would lock out every client holding a
        # token signed with it until the secret is rotated; `token mint` refuses it.
        too_short = short_secret(key)
        if too_short is not None:
            log.warning("%s; `hivectl token mint` refuses it", too_short)

    def announce(server: HivekitServer) -> None:
        api = f", HTTP API {server.api_url}" if server.api_url else ""
        announced.info(
            "hivectl serving %s%s (/healthz /readyz /metrics)",
            server.ws_url,
            api,
            extra={"url": server.ws_url, "api_url": server.api_url},
        )

    def reread() -> Settings:
        """The config read again for SIGHUP: the same file, environment and flags."""
        fresh = load_settings(
            config_file=config_path(config),
            env=os.environ,
            overrides={key: value for key, value in flags.items() if value is not None},
            override_labels=labels,
        )
        return with_generated_secret(fresh.settings, create=False)[0]

    def reloaded(settings: Settings) -> None:
        configure_logging(settings.log.level, settings.log.format)

    try:
        code = run(settings, announce=announce, reread=reread, reloaded=reloaded)
    except StorageError as exc:  # unusable database: the operator must act (exit 2)
        stop(str(exc), EXIT_USAGE)
    except OSError as exc:
        stop(f"server failed: {exc}", EXIT_FAILURE)
    raise typer.Exit(code)


def _fail_logged(message: str, code: int) -> NoReturn:
    log.error(message)
    raise typer.Exit(code)
