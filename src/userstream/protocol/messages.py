"""What a classified incoming frame can be: the shared vocabulary of every exchange's protocol module.

A protocol module's `classify_*` function turns one WebSocket frame into exactly one of these. The client
runtime dispatches on the type; nothing here knows about sockets or time.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from userstream.errors import MessageShapeError
from userstream.events import Event
from userstream.money import checked

__all__ = [
    "ControlReply",
    "DataEvents",
    "ErrorReply",
    "Incoming",
    "Ping",
    "Pong",
    "SystemClose",
    "Unknown",
    "money_error",
]


class ControlReply(msgspec.Struct, frozen=True):
    """A plain control string from the server, such as "connect success" or "sub success"."""

    text: str


class ErrorReply(msgspec.Struct, frozen=True):
    """The server refused something (a sub with a wrong token, say) and will close. Not retryable as is,
    unless `transient` (a rate limit, a busy server: protocol.refusal). `code` is the server's own (a
    number, a word such as "INVALID_TOKEN", or None when it gave none)."""

    code: int | str | None
    message: str
    transient: bool = False


class Ping(msgspec.Struct, frozen=True):
    """The server's own heartbeat {"ping": n}; the client answers {"pong": n}."""

    timestamp: int


class Pong(msgspec.Struct, frozen=True):
    """The server's answer {"pong": m} to the client's ping."""

    timestamp: int


class SystemClose(msgspec.Struct, frozen=True):
    """Coinlocally's SYSTEM notice {"uid": ..., "channel": "SYSTEM", "et": "close"}: the server will close."""

    uid: int | None


class DataEvents(msgspec.Struct, frozen=True):
    """A data frame, normalized. One frame can carry several events (a multi-asset account update)."""

    events: tuple[Event, ...]


class Unknown(msgspec.Struct, frozen=True):
    """A frame that is not understood: kept raw (truncated for safety), with the reason, never a crash."""

    raw: str
    reason: str


Incoming = ControlReply | ErrorReply | Ping | Pong | SystemClose | DataEvents | Unknown


def money_error(*fields: tuple[str, Decimal | None]) -> MessageShapeError:
    """The error for the first of `fields` (JSON path, value; None is skipped) that `money.checked` refuses.

    Parsers check a frame's money values in one `try` with `checked` itself, which is what the hot path can
    afford, and call this only when one failed, to name it."""
    for path, value in fields:
        if value is not None:
            try:
                checked(value)
            except ValueError as exc:
                return MessageShapeError(f"{path}: {exc}", field=path)
    raise AssertionError("money_error: every value is within bounds")
