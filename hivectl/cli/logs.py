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
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ANNOUNCE = "hivectl.serve"


class TextFormatter(logging.Formatter):
    """The stdlib's text lines, with the date and time formatted once per second: at a
    close line per connection, `time.strftime` was a fifth of what a line cost."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

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
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLinesFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("websockets").setLevel(quiet)
    logging.getLogger(ANNOUNCE).setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library warning is a log line too, not a raw one
