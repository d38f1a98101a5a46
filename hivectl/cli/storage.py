"""`hivectl storage backup PATH`: a consistent copy of the server's SQLite database, taken
while it runs, that `hivectl serve` starts from (`server.stores.sqlite_backup` says how it stays
out of the running server's way).

The database is ``--db``, else ``[storage] path`` of the config. Exit codes: 0 done; 1 the
copy failed (unreadable source, disk full, a copy that fails the start-up checks); 2 bad
options (no database configured, PATH exists without ``--force``, PATH is the database).
"""

from __future__ import annotations

from pathlib import Path

import typer

from hivectl.cli.common import (
    CONFIG_OPTION,
    EXIT_FAILURE,
    EXIT_USAGE,
    err_console,
    fail,
    settings_from,
)

app = typer.Typer(help="Back up the server's storage.", no_args_is_help=True)


@app.command(
    epilog="Examples:\n\n  hivectl storage backup /var/backups/hivectl-$(date +%F).db\n\n"
    "  hivectl storage backup backup.db --db /var/lib/hivectl/hivectl.db --force\n\n"
    "Restore: stop the server, put the backup at [storage] path (or point it there), start it."
)
def backup(
    path: Path = typer.Argument(..., help="File to write the backup to."),
    db: Path | None = typer.Option(
        None, "--db", help="Database to back up (default: config storage.path).", dir_okay=False
    ),
    force: bool = typer.Option(False, "--force", help="Replace PATH if it exists."),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Copy the SQLite database while the server keeps serving and writing."""
    from hivectl.cli.bulk import progress
    from server.stores.sqlite_backup import BackupError, backup

    source = db
    if source is None:
        settings = settings_from(config, {}).settings
        if settings.cluster.nats_url:
            fail("a cluster node keeps no SQLite file ([cluster] nats_url is set)", EXIT_USAGE)
        if settings.storage.backend != "sqlite":
            fail(f"[storage] backend is {settings.storage.backend}: nothing to back up", EXIT_USAGE)
        source = Path(settings.storage.path)
    if path.exists() and not force:
        fail(f"{path} exists: pass --force to replace it", EXIT_USAGE)
    if path.exists() and path.resolve() == source.resolve():
        fail(f"{path} is the database being backed up: name another file", EXIT_USAGE)
    try:
        with progress(f"backing up {source}") as advance:
            result = backup(source, path, force=force, on_progress=advance)
    except BackupError as exc:
        fail(str(exc), EXIT_FAILURE)
    err_console.print(
        f"backed up {source} to {result.path}: {result.realms} realms, {result.objects}"
        f" objects, {result.size:,} bytes",
        highlight=False,
    )
