"""Status events and counters: what the client tells its user about the stream itself.

This module owns `StatusEvent` and the `State` vocabulary, and `StreamStats`, the stream's counters as
one snapshot (`UserStream.stats`). A status event is how the client never stops
silently: every connect, disconnect (with its reason), reconnect (with attempt and delay), rotation,
listenKey renewal, overflow drop, resync after a gap and fatal stop becomes one. It must never carry a
secret: the only credential-derived text allowed is a listenKey masked to its first 6 characters
(`mask_listen_key`), and reasons are built from our own error messages, which name credentials and never
show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal

import msgspec

from userstream.events import Exchange

__all__ = ["State", "StatusEvent", "StreamStats", "mask_listen_key"]

_ENCODER = msgspec.json.Encoder()
_SHOWN_KEY_CHARS = 6


class State(StrEnum):
    CONNECTING = "connecting"  # opening a WebSocket (attempt counts attempts since the last live one)
    CONNECTED = "connected"  # the WebSocket handshake succeeded
    SUBSCRIBED = "subscribed"  # Coinlocally answered "sub success": events flow from here on
    DISCONNECTED = "disconnected"  # a connection ended; `reason` says why
    RECONNECTING = "reconnecting"  # waiting `delay` seconds before attempt `attempt`
    ROTATED = "rotated"  # a planned rotation finished: the new connection is live, the old one closed
    KEY_RENEWED = "key_renewed"  # Bitmusa: a new listenKey replaced one that lapsed or was deleted
    KEEPALIVE_FAILED = "keepalive_failed"  # Bitmusa: a keepalive PUT failed; retried after `delay`
    DROPPED = "dropped"  # overflow="drop_oldest": `dropped` events were discarded before the next one
    RESYNCED = "resynced"  # a REST snapshot after a gap was taken; `corrections` events were queued
    RESYNC_FAILED = "resync_failed"  # a snapshot failed; retried after `delay` (None: not retried)
    RESYNC_SKIPPED = "resync_skipped"  # a gap needs a resync this stream cannot take (`reason` says why)
    FATAL = "fatal"  # the stream stopped for good; the iterator raises the error named in `reason`


def mask_listen_key(key: str) -> str:
    """The only form in which a listenKey may appear in output: enough to correlate, too little to use."""
    return key[:_SHOWN_KEY_CHARS] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent:
    """One thing that happened to the stream. Fields that do not apply to a state are None.

    `connection` is the serial number of the WebSocket concerned (1, 2, ... within one stream), which tells
    the two connections of a rotation apart. `listen_key` is always masked (see `mask_listen_key`).
    """

    kind: ClassVar[Literal["status"]] = "status"

    state: State
    exchange: Exchange
    account: str
    reason: str | None = None
    attempt: int | None = None
    delay: float | None = None
    dropped: int | None = None
    connection: int | None = None
    listen_key: str | None = None
    corrections: int | None = None  # resynced: how many snapshot events were queued

    def __post_init__(self) -> None:
        if self.listen_key is not None and not self.listen_key.endswith("..."):
            raise ValueError("a StatusEvent's listen_key must be masked with mask_listen_key()")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "state": self.state.value,
            "exchange": self.exchange.value,
            "account": self.account,
            "reason": self.reason,
            "attempt": self.attempt,
            "delay": None if self.delay is None else round(self.delay, 3),
            "dropped": self.dropped,
            "connection": self.connection,
            "listen_key": self.listen_key,
            "corrections": self.corrections,
        }

    def to_json(self) -> bytes:
        return _ENCODER.encode(self.to_dict())

    def describe(self) -> str:
        """One human-readable log line."""
        parts = [f"{self.exchange.value}/{self.account}", self.state.value]
        if self.connection is not None:
            parts.append(f"connection={self.connection}")
        if self.attempt is not None:
            parts.append(f"attempt={self.attempt}")
        if self.delay is not None:
            parts.append(f"delay={self.delay:.3f}s")
        if self.dropped is not None:
            parts.append(f"dropped={self.dropped}")
        if self.listen_key is not None:
            parts.append(f"listen_key={self.listen_key}")
        if self.corrections is not None:
            parts.append(f"corrections={self.corrections}")
        if self.reason is not None:
            parts.append(f"reason={self.reason}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream, as a snapshot (`UserStream.stats`)."""

    connections: int  # WebSockets opened
    frames: int  # frames received, of any kind
    events_received: int  # events parsed from data frames, before de-duplication
    events_delivered: int  # events handed to the user
    duplicates_suppressed: int  # copies withheld during rotation overlaps
    dropped: int  # events discarded by overflow="drop_oldest"
    unknown_frames: int  # frames that were not understood (kept out of the event stream), malformed included
    pings_sent: int
    pings_answered: int  # server pings answered with a pong
    keepalives: int  # successful Bitmusa keepalives
    auth_failures: int  # rejected credentials, in a row
    resyncs: int = 0  # REST snapshots taken after a gap, their corrections queued
    resync_failures: int = 0  # snapshot attempts that failed (each retried or reported)
    #: the part of unknown_frames refused as broken: undecodable, or malformed (impossible values included);
    #: unknown_frames - malformed_frames were well-formed but not understood (an unknown event type, say)
    malformed_frames: int = 0
    queued: int = 0  # events waiting in the queue for the user: stream events and snapshot corrections
    queued_bytes: int = 0  # their weight, as the queue's byte bound counts it (`events.event_size`)
