"""Logging for `hivectl serve`: one line per event on stderr, as text or as JSON lines.

Stdlib `logging` stays the backbone (websockets logs there too); JSON lines are for
log shippers (Loki, ELK), one object per line with stable keys: ``ts`` (RFC 3339, UTC),
``level``, ``logger``, ``msg``, and ``exc`` when a traceback is attached.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


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
