"""The `hivectl` command line: one Typer app, one module per command group.

Command modules import the server and the client inside their functions, so that
`hivectl --help` and `hivectl token mint` start fast.
"""

from __future__ import annotations

import typer

from hivectl import __version__
from hivectl.cli import (
    admin,
    bench,
    cluster,
    config,
    console,
    health,
    objects,
    presence,
    realm,
    serve,
    simulate,
    storage,
    token,
    watch,
)

app = typer.Typer(
    name="hivectl",
    help="A realtime presence server speaking the Hivekit protocol, and its operator toolkit.",
    epilog="Settings: defaults < config file < HIVECTL_* environment < flags.\n\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 a check failed.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hivectl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Settings precedence: defaults < config file < HIVECTL_* environment < flags."""


serve.register(app)
console.register(app)
app.add_typer(token.app, name="token")
app.add_typer(config.app, name="config")
health.register(app)
bench.register(app)
app.add_typer(presence.app, name="presence")
app.add_typer(simulate.app, name="simulate")
app.add_typer(watch.app, name="watch")
app.add_typer(realm.app, name="realm")
app.add_typer(objects.app, name="object")
app.add_typer(storage.app, name="storage")
app.add_typer(admin.connections_app, name="connections")
app.add_typer(cluster.app, name="cluster")
app.command(
    epilog="Examples:\n\n  hivectl disconnect --sub rider-12 --reason 'left the company'\n\n"
    "  hivectl disconnect --conn node-a:3f2a1b:17"
)(admin.disconnect)


def main() -> None:
    """The console script and `python -m hivectl`; the name is fixed so that help and
    completion say ``hivectl`` rather than ``__main__.py``.

    A usage error is Typer's Rich panel on a terminal; anywhere else it is Click's plain
    ``Error: ...`` line, not a box wrapped at 80 columns that a script cannot read by lines.
    """
    import sys

    from typer import rich_utils

    from hivectl.cli.common import error

    try:
        code = app(prog_name="hivectl", standalone_mode=False)
    except typer.TyperException as exc:  # Click's errors (Typer vendors Click)
        if sys.stderr.isatty() or type(exc).__name__ == "NoArgsIsHelpError":
            rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        else:
            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            error(exc.format_message() + hint)
        sys.exit(exc.exit_code)
    except typer.Abort:
        error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
