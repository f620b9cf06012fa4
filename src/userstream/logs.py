"""Structured logs of userstream's services (`serve`, the gateway): one JSON object per line, nothing secret.

`log_event(logger, level, message, **fields)` attaches fields to a standard `logging` record; `JsonFormatter`
writes the record as one JSON line. `RedactingAccessLogger` replaces aiohttp's access log, whose request
line would otherwise carry Bitmusa listenKeys (they are part of the WebSocket path) in full: `safe_path`
cuts every path segment long enough to hold a listenKey, on any route or none (a 404).
`quiet_bad_requests()` turns aiohttp's ERROR-with-traceback for a malformed request (which also quotes the
offending bytes, possibly a credential header) into one INFO line naming the peer and the kind of fault.
Credentials and tokens are never passed to a log call; listenKeys only through `redact`.
It sits at the package's top level because serve and the gateway both log through it; it imports
nothing of theirs (the listenKey paths it cuts come from the exchange registry).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from userstream.protocol.registry import REGISTRY

__all__ = [
    "MAX_SHOWN_SEGMENT",
    "BadRequestFilter",
    "JsonFormatter",
    "RedactingAccessLogger",
    "configure_logging",
    "log_event",
    "quiet_bad_requests",
    "redact",
    "redacted_url",
    "safe_path",
]

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


#: The longest path segment an access log shows in full. Every segment of serve's own routes is shorter;
#: a listenKey (43 characters) is longer, and so is any segment that contains one.
MAX_SHOWN_SEGMENT = 16
#: The WebSocket paths whose last segment is a credential (Bitmusa's listenKey), from the registry.
_SECRET_PATH_PREFIXES = tuple(
    entry.ws_path for entry in REGISTRY.values() if entry.listen_key_path is not None
)


def redact(listen_key: str) -> str:
    """What logs may show of a listenKey: enough to correlate, never enough to use."""
    return listen_key[:6] + "..."


def safe_path(path: str) -> str:
    """A request path fit for a log: a listenKey in it, wherever it is, is cut to its prefix.

    The listenKey of a Bitmusa WebSocket path is always cut (`redact`). Any other segment longer than
    `MAX_SHOWN_SEGMENT` is cut the same way, whatever the route: a client that writes `//ws/spot/KEY`,
    `/WS/spot/KEY` or `/spot/userDataStream/KEY` (answered 404) still sent a live key, and a log must not
    keep it. Short segments (route words, symbols) stay readable."""
    for prefix in _SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            path = prefix + redact(path[len(prefix) :])
    segments = path.split("/")
    if all(len(segment) <= MAX_SHOWN_SEGMENT for segment in segments):
        return path
    return "/".join(redact(segment) if len(segment) > MAX_SHOWN_SEGMENT else segment for segment in segments)


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


class BadRequestFilter(logging.Filter):
    """aiohttp's log of a request it could not parse (a peer's fault, answered 4xx), as one INFO line.

    aiohttp logs every malformed request (a header line too long, a bad status line, a broken chunk) as an
    ERROR with a traceback whose message quotes up to 100 bytes of the offending input: a peer could fill
    the error log at will, and an oversized `Authorization` header would be quoted in it. What stays is
    the peer, the HTTP status sent and the kind of fault, never the bytes. Errors of our own (a handler
    that raised, answered 500) pass untouched: they are bugs and must stay loud.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.msg, record.args = "bad request refused", ()
            record.exc_info, record.exc_text = None, None
            setattr(record, _FIELDS, {"peer": peer, "status": error.code, "reason": type(error).__name__})
        return True


def quiet_bad_requests() -> None:
    """Install `BadRequestFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(existing, BadRequestFilter) for existing in logger.filters):
        logger.addFilter(BadRequestFilter())


def redacted_url(url: str) -> str:
    """A URL fit for names and logs: user and password replaced by `***` (a sink's `name` shows no secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()
