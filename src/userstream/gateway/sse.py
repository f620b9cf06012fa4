"""Fan-out of events to live subscribers (`/events`, the demo's printer): bounded each, never blocking.

This module owns `EventHub`, `Subscription` and the Server-Sent Events framing of an event. Publishing
never waits: each subscriber has its own bounded buffer, and one that falls `capacity` events behind is
dropped (counted, and told why in a last message) rather than allowed to slow the streams or grow memory.
A live view is not the durable path; the sinks are. The HTTP handler that writes a subscription to a
response lives in `http.py` (it disconnects a reader whose socket takes no more bytes, and refuses readers
beyond a cap; the hub keeps the counts of both); nothing here does I/O.

Framing (docs/gateway.md): each event is `event: <kind>\\ndata: <contract JSON>\\n\\n`, the JSON exactly as
`eventjson.to_json` writes it (docs/events.md). It is encoded once per event, however many subscribers
read it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from userstream.eventjson import to_json
from userstream.events import Event

__all__ = ["EventHub", "Message", "Subscription"]


class Message:
    """One published event, shared by every subscriber's buffer; its encodings are made once, when needed."""

    __slots__ = ("_json", "_sse", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._json: bytes | None = None
        self._sse: bytes | None = None

    @property
    def json(self) -> bytes:
        """The event's contract JSON (one JSONL line without its newline)."""
        if self._json is None:
            self._json = to_json(self.event)
        return self._json

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = b"event: " + self.event.kind.encode() + b"\ndata: " + self.json + b"\n\n"
        return self._sse


class Subscription:
    """One subscriber's bounded buffer; `account` filters (None: every account)."""

    def __init__(self, capacity: int, account: str | None) -> None:
        self.account = account
        self.capacity = capacity
        self.delivered = 0  # messages handed to the reader
        self.dropped_reason: str | None = None  # set when the hub dropped this subscriber
        self._buffer: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def depth(self) -> int:
        return len(self._buffer)

    def offer(self, message: Message) -> bool:
        """Buffer one message; False (and the subscription is closed as too slow) when the buffer is full."""
        if self._closed:
            return True
        if len(self._buffer) >= self.capacity:
            self._buffer.clear()  # what it missed cannot be delivered in order any more
            self.dropped_reason = f"slow consumer: more than {self.capacity} events behind"
            self.close()
            return False
        self._buffer.append(message)
        self._ready.set()
        return True

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def next_batch(self, wait: float | None = None) -> list[Message] | None:
        """Every message buffered now (waiting up to `wait` seconds for one): [] when none came, None once
        closed and drained."""
        if not self._buffer and not self._closed:
            self._ready.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._ready.wait()
            except TimeoutError:
                return []
        if not self._buffer:
            return None
        batch = list(self._buffer)
        self._buffer.clear()
        self.delivered += len(batch)
        return batch


class EventHub:
    """Every event to every subscriber that wants it, without ever waiting for one."""

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("a subscriber's capacity must be positive")
        self.capacity = capacity
        self._subscribers: set[Subscription] = set()
        self.dropped_subscribers = 0  # subscribers cut off for being too slow
        self.stalled_subscribers = 0  # readers disconnected because a write to them timed out (http.py)
        self.refused_subscribers = 0  # readers refused beyond the cap (http.py)
        self.published = 0  # events offered to the hub
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def buffered(self) -> int:
        """Messages waiting in every subscriber's buffer: the hub's queue depth."""
        return sum(subscription.depth for subscription in self._subscribers)

    def subscribe(self, account: str | None = None, *, capacity: int | None = None) -> Subscription:
        subscription = Subscription(capacity or self.capacity, account)
        if self._closed:
            subscription.close()
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        subscription.close()

    def publish(self, event: Event) -> None:
        self.published += 1
        message: Message | None = None
        for subscription in list(self._subscribers):
            if subscription.account is not None and subscription.account != event.account:
                continue
            if message is None:
                message = Message(event)
            if not subscription.offer(message):
                self._subscribers.discard(subscription)
                self.dropped_subscribers += 1

    def close(self) -> None:
        """End every subscription (shutdown): readers get what is buffered, then the end."""
        self._closed = True
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()
