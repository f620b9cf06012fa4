"""The one interface every sink implements, and the event key that makes writes idempotent.

This module owns `Sink` (open / write a batch / close) and `event_key`. It performs no I/O. Delivery upstream
is at least once: after a failed write, or a restart, the same events are written again, so every sink must
treat a repeated key as already written. Buffering, batching, retries and backpressure are not a sink's job;
`userstream.sinks.runner.SinkRunner` does them for any sink.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from userstream import eventjson
from userstream.errors import TransportError
from userstream.events import Event

__all__ = ["KEY_LENGTH", "Sink", "SinkUnwritableError", "event_key", "key_of_json"]

KEY_LENGTH = 32  # hex characters: 128 bits, far beyond any collision risk for a stream of events


def key_of_json(line: bytes) -> str:
    """The key of an event from its contract JSON (`eventjson.to_json`), e.g. one line of a JSONL file."""
    return hashlib.sha256(line).hexdigest()[:KEY_LENGTH]


def event_key(event: Event) -> str:
    """A stable, unique key from the event's content: the truncated sha256 of its contract JSON.

    Two events with the same JSON are the same fact (same account, time, values), so they share a key and
    a sink stores them once. `raw` is not part of the JSON and so not of the key: the same event parsed from
    a differently formatted frame has the same key.
    """
    return key_of_json(eventjson.to_json(event))


class SinkUnwritableError(TransportError):
    """A write failed for a reason that will not pass by itself: a read-only file or file system, permission
    denied, a path of the wrong kind, an I/O error. The runner still retries it (an operator may fix the
    cause, and then nothing is lost), but reports the sink down at once instead of after its thresholds."""


@runtime_checkable
class Sink(Protocol):
    """A destination for events.

    `open` does local set-up only (files, clients); a remote peer that is down must not fail it, so it is
    found by `write` and retried. `write` stores a whole batch or raises: `TransportError` for trouble that
    may pass (the runner retries the same batch), anything else for trouble that cannot (the runner stops).
    `SinkUnwritableError` (a `TransportError`) marks trouble that needs an operator: retried, but reported
    at once. It must be idempotent per `event_key`: a batch written twice, in part or whole, is stored once.
    `close` releases everything; it is called once, after the last `write`.
    """

    @property
    def name(self) -> str:
        """What the sink is, for logs and metrics ("jsonl:events.jsonl"); never contains secrets."""
        ...

    async def open(self) -> None: ...

    async def write(self, batch: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...
