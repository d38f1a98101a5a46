"""What the bulk commands (``object import``, ``export``, ``delete``) share on the terminal:
a progress bar on stderr, the confirmation before deleting, the report of failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import typer

from hivectl.cli.common import EXIT_FAILURE, err_console, error, fail

if TYPE_CHECKING:
    from hivectl.client import HivekitError
    from hivectl.transfer.bulk import Progress


@contextlib.contextmanager
def progress(description: str) -> Iterator[Progress]:
    """A Rich progress bar on stderr (shown on a terminal only, gone when done) and the
    callback that moves it: stdout stays for data (``object export > file``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Bar(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def confirm_or_exit(question: str, yes: bool) -> None:
    """Ask before a destructive step unless ``--yes``; no (or no answer) exits 1."""
    if yes:
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer: stdin closed
        agreed = False
    if not agreed:
        fail("nothing was deleted (pass --yes to skip this question)", EXIT_FAILURE)


def report_failures(what: str, failed: Sequence[tuple[str, HivekitError]], total: int) -> None:
    """Exit 1 naming each reason, when anything failed."""
    if not failed:
        return
    from hivectl.transfer.operations import failure_lines

    error(f"{len(failed)} of {total} objects {what}:")
    for line in failure_lines(failed):
        err_console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILURE)
