"""Logging setup for the command line: JSON lines for log collectors, plain text for people.

Only the CLI calls ``configure``; the library modules just log through
``logging.getLogger(__name__)`` and never install handlers themselves.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

#: Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(
    level: str = "INFO", stream: TextIO | None = None, *, json_lines: bool | None = None
) -> None:
    """Log to ``stream`` (stderr by default); JSON unless it is a terminal."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every probe request at INFO; that is noise at a 5 s probe period.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
