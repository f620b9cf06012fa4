"""Structured logs of `userstream serve`: one JSON object per line, and nothing secret in any of them.

`log_event(logger, level, message, **fields)` attaches fields to a standard `logging` record; `JsonFormatter`
writes the record as one JSON line. `RedactingAccessLogger` replaces aiohttp's access log, whose request
line would otherwise carry Bitmusa listenKeys (they are part of the WebSocket path) in full. Credentials and
tokens are never passed to a log call; listenKeys only through `keys.redact`.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import msgspec
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from userstream.protocol import bitmusa
from userstream.server.keys import redact

__all__ = ["JsonFormatter", "RedactingAccessLogger", "configure_logging", "log_event", "safe_path"]

_FIELDS = "userstream_fields"
_ENCODER = msgspec.json.Encoder()


def log_event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured `fields` (JSON-encodable values; never a secret)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={_FIELDS: fields}, stacklevel=2)


class JsonFormatter(logging.Formatter):
    """{"time": ISO-8601 UTC, "level", "logger", "message", ...fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, _FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry).decode()


def configure_logging(level: str | int = "INFO") -> None:
    """Send every log record of the process to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


def safe_path(path: str) -> str:
    """A request path fit for a log: a listenKey in a Bitmusa WebSocket path is cut to its prefix."""
    prefix = bitmusa.WS_PATH_PREFIX
    if path.startswith(prefix):
        return prefix + redact(path[len(prefix) :])
    return path


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log, structured, with listenKeys redacted and the query string dropped."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log_event(
            self.logger,
            logging.INFO,
            "request",
            method=request.method,
            path=safe_path(request.path),
            status=response.status,
            seconds=round(time, 6),
            remote=request.remote,
        )
