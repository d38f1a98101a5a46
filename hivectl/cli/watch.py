"""`hivectl watch realm REALM`: tail presence events live, like ``kubectl get -w``.

Output follows stdout: a Rich live view on a terminal; ``--json`` one JSON object per event
per line, flushed at once (for ``jq`` and scripts); otherwise one plain line per event. The
``--json`` fields are API: ``ts`` (ISO-8601 UTC, when the watcher received the event),
``realm``, ``event`` (``connectionStatusChanged``), ``id``, ``status`` (``connected`` |
``disconnected``), ``label`` (the object's label, ``null`` if unknown), ``previousFor``
(seconds it had been in the previous status, ``null`` when this watch has not seen it
change before) and ``reason`` (why it disconnected, from the server's presence ledger:
``closed``, ``timeout``, ``expired``, ``node_lost``, ``shutdown``; ``null`` for
``connected`` or when not known, see `hivectl.watch.driver`).

When the server closes the watch (a slow consumer is closed with 4008, for one), the client
reconnects with a growing, jittered backoff (`hivectl.client.backoff`) and the watch says so:
in the live view's caption on a terminal (close code, reason, when the next try is), else one
``warning:`` line per close on stderr, so ``--json`` output stays clean. A watch that was
closed says how often when it ends.

The token: ``--token``/``$HIVECTL_TOKEN``, else ``[client] token``/``token_file``, else one
minted from the server's own key with read rights on the realm (``REALM:*=R``), re-minted at
every reconnect.

Exit codes: 0 on Ctrl-C, after ``--count`` events, or when ``--timeout`` ends a watch without
``--count``; 3 when ``--timeout`` passes before ``--count`` events arrived; 1 when the server
cannot be reached or refuses; 2 for bad options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hivectl.cli.common import (
    CA_FILE_OPTION,
    CONFIG_OPTION,
    EXIT_CHECK_FAILED,
    EXIT_FAILURE,
    EXIT_USAGE,
    SECRET_FILE_LABELS,
    SECRET_FILE_OPTION,
    client_tls,
    duration_flag,
    err_console,
    fail,
    secret_file_flags,
    settings_from,
)

if TYPE_CHECKING:
    from rich.live import Live

    from hivectl.client import CloseInfo
    from hivectl.watch.driver import RealmWatcher
    from hivectl.watch.state import WatchEvent

WATCH_SUBJECT = "hivectl-watch"
MINTED_TTL_S = 3600.0
"""A minted token's lifetime; a fresh one is minted for every reconnect."""
REFRESH_S = 0.25

app = typer.Typer(help="Watch live presence.", no_args_is_help=True)


@app.command(
    "realm",
    epilog="Examples:\n\n"
    "  hivectl watch realm london\n\n"
    "  hivectl watch realm london --pattern 'riders/*' --json | jq -r .id\n\n"
    "  hivectl watch realm london --json --count 1 --timeout 30s",
)
def watch_realm(
    realm: str = typer.Argument(..., help="Realm to watch (waited for if it does not exist)."),
    url: str | None = typer.Option(
        None, "--url", help="Server WebSocket URL (default: config client.url)."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="HIVECTL_TOKEN",
        help="Token (default: config client.token or token_file, else minted with read rights).",
    ),
    pattern: str = typer.Option("*", "--pattern", help="Only objects whose id matches, riders/*."),
    limit: int = typer.Option(20, "--limit", help="Rows in the live table (1-1000)."),
    json_output: bool = typer.Option(False, "--json", help="One JSON line per event on stdout."),
    count: int | None = typer.Option(None, "--count", help="Exit after this many events."),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        parser=duration_flag,
        metavar="DURATION",
        help="Exit after this long: 30s, 5m.",
    ),
    config: Path | None = CONFIG_OPTION,
    secret_file: Path | None = SECRET_FILE_OPTION,
    ca_file: Path | None = CA_FILE_OPTION,
) -> None:
    """Tail connectionStatusChanged events with the realm's online count."""
    import logging
    import time

    from rich.console import Console
    from rich.live import Live

    from hivectl.cli.credentials import configured_token, signing_key_or_exit
    from hivectl.core.tokens import mint_token
    from hivectl.watch.driver import RealmWatcher
    from hivectl.watch.render import event_json, event_line

    if not 1 <= limit <= 1000:
        fail("--limit must be from 1 to 1000", EXIT_USAGE)
    if count is not None and count < 1:
        fail("--count must be at least 1", EXIT_USAGE)
    settings = settings_from(
        config,
        {
            "client.url": url,
            "client.token": token,
            "client.ca_file": str(ca_file) if ca_file else None,
            **secret_file_flags(secret_file),
        },
        {
            **SECRET_FILE_LABELS,
            "client.url": "--url",
            "client.token": "--token",
            "client.ca_file": "--ca-file",
        },
    ).settings
    fresh_token: Callable[[], str] | None = None
    first_token = configured_token(settings)
    if first_token is None:
        key = signing_key_or_exit(settings, "watching without --token")

        def mint_read_token() -> str:
            claims = {"sub": WATCH_SUBJECT, "per": {realm: {"*": "R"}}}
            return mint_token(claims, key, now=time.time(), ttl=MINTED_TTL_S)

        fresh_token, first_token = mint_read_token, mint_read_token()

    def gone() -> None:
        watcher.stop()

    # The watch reports closes itself (below); the client's own log line would repeat them
    # on stderr through logging's last-resort handler, or tear through the live view.
    logging.getLogger("hivectl.client").addHandler(logging.NullHandler())
    console = Console()
    live = None
    on_close: Callable[[CloseInfo], None] | None = None
    if json_output or not console.is_terminal:

        def on_close(info: CloseInfo) -> None:
            _warn_line(f"watch connection {info}")

    if json_output:
        printer = _line_printer(lambda event: event_json(event, realm), gone)
    elif console.is_terminal:
        printer, live = None, Live(console=console, refresh_per_second=4)
    else:
        printer = _line_printer(event_line, gone)
    watcher = RealmWatcher(
        settings.client.url,
        first_token,
        realm,
        pattern=pattern,
        limit=limit,
        count=count,
        on_event=printer,
        fresh_token=fresh_token,
        on_close=on_close,
        tls=client_tls(settings.client.ca_file),
    )
    ended = _run(watcher, live, timeout)
    state = watcher.state
    if state.closes:
        times = "once" if state.closes == 1 else f"{state.closes} times"
        _warn_line(f"the server closed this watch {times} (last: {state.last_close})")
    if ended == "timeout" and count is not None:
        fail(
            f"{watcher.state.total_events} of {count} events before the timeout", EXIT_CHECK_FAILED
        )


def _warn_line(message: str) -> None:
    """A ``warning:`` on stderr as one line however long, so a script can read it by lines."""
    from rich.markup import escape

    err_console.print(
        f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True
    )


def _line_printer(
    render: Callable[[WatchEvent], str], gone: Callable[[], None]
) -> Callable[[WatchEvent], None]:
    """Write each event as one line and flush it, so a pipe sees it at once. When the reader
    went away (``| head -3``), call `gone` and point stdout at /dev/null, so that the
    interpreter's last flush does not fail again (Python's documented SIGPIPE advice)."""
    import os
    import sys

    def emit(event: WatchEvent) -> None:
        try:
            sys.stdout.write(render(event) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            gone()

    return emit


def _run(watcher: RealmWatcher, live: Live | None, seconds: float | None) -> str:
    """Run the watcher in its own event loop (Ctrl-C stops it); the live view, if any, is
    redrawn from the state a few times a second. Returns how the watch ended."""
    import asyncio
    import contextlib
    import signal
    import time

    from websockets.exceptions import WebSocketException

    from hivectl.client import AuthenticationError, HivekitError
    from hivectl.watch.render import render_watch

    async def redraw(view: Live) -> None:
        while True:
            view.update(render_watch(watcher.state, time.time()))
            await asyncio.sleep(REFRESH_S)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, watcher.stop)
        redrawing = asyncio.create_task(redraw(live)) if live is not None else None
        try:
            async with asyncio.timeout(seconds) as scope:
                return await watcher.run()
        except TimeoutError:
            if scope.expired():
                return "timeout"
            raise
        finally:
            if redrawing is not None:
                redrawing.cancel()

    url = watcher.client.connection.url
    try:
        with live or contextlib.nullcontext():
            return asyncio.run(main())
    except KeyboardInterrupt:
        return "stopped"
    except AuthenticationError as exc:
        fail(f"{url}: the server refused the token: {exc.text}", EXIT_FAILURE)
    except HivekitError as exc:
        fail(f"{url}: {exc.text}", EXIT_FAILURE)
    except (OSError, WebSocketException, TimeoutError) as exc:
        fail(f"cannot reach {url}: {exc or type(exc).__name__}", EXIT_FAILURE)
