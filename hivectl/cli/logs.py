"""Logging for `hivectl serve`: one line per event on stderr, as text or as JSON lines.

Stdlib `logging` stays the backbone (websockets logs there too). JSON lines are for log
shippers (Loki, ELK): every line on stderr is one object with stable keys, ``ts`` (RFC 3339,
UTC), ``level``, ``logger``, ``msg``, ``exc`` when a traceback is attached, and every field
a call passed as ``extra`` (``conn``, ``code``, ``sub``...), so a search can filter on them.
python-json-logger does the encoding: it keeps ``extra`` fields and escapes what a
hand-written formatter gets wrong.

Lines an operator or a script must always see (the startup line with the real port) go to
`ANNOUNCE`, a logger whose own level is INFO, so they pass whatever ``--log-level`` says
and come out in the chosen format like every other line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ANNOUNCE = "hivectl.serve"


class JsonLinesFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
            json_ensure_ascii=False,
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
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLinesFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("websockets").setLevel(quiet)
    logging.getLogger(ANNOUNCE).setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library warning is a log line too, not a raw one
