"""The `hivectl` command line: one Typer app, one module per command group.

Command modules import the server and the client inside their functions, so that
`hivectl --help` and `hivectl token mint` start fast.
"""

from __future__ import annotations

import typer

from hivectl import __version__
from hivectl.cli import (
    bench,
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


def main() -> None:
    """The console script and `python -m hivectl`; the name is fixed so that help and
    completion say ``hivectl`` rather than ``__main__.py``."""
    app(prog_name="hivectl")
