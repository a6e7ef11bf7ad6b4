"""Log lines for people (``text``) or for a log collector (``json``: one JSON object a line).

    configure_logging(level, "json")     # or MAILER_LOG_FORMAT=json, or --log-format json

A JSON line carries ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and the event's fields given
with ``extra=`` (a delivery: ``message_id``, ``wave``, ``session``, ``step``, ``status``, ``smtp_code``,
``smtp_reply``, ``duration_ms``), and ``exception`` when there is one. Secrets never reach a line: API tokens
(``mlr_...``), ``Bearer`` credentials and ``password=``/``secret=``/``token=`` values are masked in every
message and field, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LOG_FORMAT_ENV = "MAILER_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(name)s: %(message)s"

_SECRETS = re.compile(
    r"(mlr_[A-Za-z0-9_\-]{8,})|(Bearer\s+)\S+|((?:password|passwd|secret|token)\s*[=:]\s*)[^\s,;&]+",
    re.IGNORECASE,
)
# LogRecord's own attributes: everything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """``text`` with tokens, bearer credentials and password/secret/token values replaced by ``***``."""

    def mask(match: re.Match[str]) -> str:
        if match.group(1):
            return "mlr_***"
        return (match.group(2) or match.group(3)) + "***"

    return _SECRETS.sub(mask, text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The text format, with the same masking as the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_format(option: str | None) -> str:
    """The format to use: ``option`` (a command-line value) if given, else ``$MAILER_LOG_FORMAT``, else text.

    Raises ValueError for a format that is neither ``text`` nor ``json``.
    """
    chosen = (option or os.environ.get(LOG_FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (text or json; ${LOG_FORMAT_ENV})")
    return chosen


def configure_logging(level: int, fmt: str = "text", text_format: str = TEXT_FORMAT) -> None:
    """Send the root logger's records to stderr in ``fmt`` (``text`` or ``json``) at ``level``, replacing
    any handler set before."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


__all__ = ["FORMATS", "LOG_FORMAT_ENV", "JsonFormatter", "configure_logging", "log_format", "redact"]
