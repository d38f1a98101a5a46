"""Logging for `hivectl serve`: one line per event on stderr, as text or as JSON lines.

Stdlib `logging` stays the backbone (websockets logs there too). JSON lines are for log
shippers (Loki, ELK): every line on stderr is one object with stable keys, ``ts`` (RFC 3339,
UTC), ``level``, ``logger``, ``msg``, ``exc`` when a traceback is attached, and every field
a call passed as ``extra`` (``conn``, ``code``, ``sub``...), so a search can filter on them.
python-json-logger does the encoding (with orjson, which the server already uses: half
the cost of the stdlib's json per line): it keeps ``extra`` fields and escapes what a
hand-written formatter gets wrong.

Lines an operator or a script must always see (the startup line with the real port) go to
`ANNOUNCE`, a logger whose own level is INFO, so they pass whatever ``--log-level`` says
and come out in the chosen format like every other line.

A line per connection closed is logged at INFO, the default, and issue 15 allows logging
5% of a connect + close: lines reach stderr in batches under load (`BatchingHandler`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ANNOUNCE = "hivectl.serve"
BATCH_S = 0.2
"""How long a line may wait while lines keep coming (`BatchingHandler`)."""
BATCH_LINES = 1000
"""Lines held at most, so that a burst costs bounded memory."""


class BatchingHandler(logging.StreamHandler[TextIO]):
    """stderr, with lines that come in quick succession written together: at a close line
    per connection, a write (a system call) per line was a quarter of what logging cost
    the server in `hivectl bench churn`.

    A line after a quiet spell goes out at once (a rare close line); the lines after it go
    out together once `BATCH_S` has passed, so none waits longer. A WARNING or worse, and an
    `ANNOUNCE` line (scripts wait for the startup line), go out at once with every line
    before them: the exit on a second signal, which skips ``atexit``, logs a WARNING first.
    `logging.shutdown` at exit, and `close` when a reload replaces the handler, write what
    is left; only a process killed outright loses lines, at most the last `BATCH_S` of
    those at INFO and below.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._due = threading.Event()
        self._closed = False
        threading.Thread(target=self._flush_when_due, name="log-batch", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
            if (
                record.levelno >= logging.WARNING
                or record.name == ANNOUNCE
                or len(self._lines) >= BATCH_LINES
            ):
                self.flush()
            elif not self._due.is_set():
                self.flush()
                self._due.set()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if self._lines:
                lines, self._lines = self._lines, []
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
        finally:
            self.release()

    def close(self) -> None:
        self._closed = True
        self._due.set()
        self.flush()
        super().close()

    def _flush_when_due(self) -> None:
        """A thread of its own, not the event loop: logging is set up before the loop runs,
        and the storage thread logs too."""
        while True:
            self._due.wait()
            time.sleep(BATCH_S)
            self._due.clear()
            try:
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "writing batched log lines"}))
            if self._closed:
                return


class TextFormatter(logging.Formatter):
    """The stdlib's text lines (`TEXT_FORMAT`), with the date and time formatted once per
    second, and a line without a traceback put together by one f-string: at a close line
    per connection, `time.strftime` was a fifth of what a line cost, and the stdlib's
    general path (does the format use the time? a %-format over the record's attributes)
    took twice as long as the f-string."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        return f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record).partition(",")[0]
        return f"{self._stamp},{int(record.msecs):03d}"


class JsonLinesFormatter(OrjsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()
        if "exc_info" in log_data:
            log_data["exc"] = log_data.pop("exc_info")


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger to stderr at `level` ("info"...), formatted as `fmt` ("text"/"json").

    websockets logs every HTTP request at INFO, which would make each health probe and
    scrape a log line; its lines show only at debug.

    A close line per connection is logged at INFO, so a record must be cheap: no format
    here shows the caller's file and line, the thread or the process, and the logging
    HOWTO's "Optimization" settings skip collecting them (findCaller alone was a sixth of
    a record's cost in a connect + close profile).
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingHandler()
    handler.setFormatter(JsonLinesFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("websockets").setLevel(quiet)
    logging.getLogger(ANNOUNCE).setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library warning is a log line too, not a raw one
