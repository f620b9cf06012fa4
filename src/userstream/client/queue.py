"""The bounded queue between the socket readers and the user, with an explicit overflow policy.

This module owns `EventQueue`: capacity, the two overflow policies, and the stream's end (a clean close, or
a fatal error delivered after the events already queued). It knows nothing about sockets or exchanges.

- "block" (the default): a full queue makes the reader wait. Nothing is lost; the exchange's side of the
  connection buffers instead, and the reader's idle clock is suspended while it waits (the supervisor does
  that, around `put`), so a slow consumer is never mistaken for a dead server.
- "drop_oldest": a full queue discards its oldest event to make room and counts it. The count of a gap is
  reported once, to `report_dropped`, just before the first event after the gap is handed out, so the user
  learns exactly how many events are missing and where. The running total is `dropped`.

Either way `put` never raises for a full queue: an overflow never kills the reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Generic, TypeVar

from userstream.errors import ConfigurationError

__all__ = ["EventQueue", "Overflow", "QueueClosed"]

T = TypeVar("T")


class Overflow(StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class QueueClosed(Exception):  # noqa: N818 - a signal, like StopAsyncIteration, not an error
    """The queue was closed without an error and is empty: the stream ended normally."""


class EventQueue(Generic[T]):
    """A bounded FIFO for one consumer and any number of producers, on one event loop."""

    def __init__(
        self,
        maxsize: int,
        overflow: Overflow | str = Overflow.BLOCK,
        *,
        report_dropped: Callable[[int], None] | None = None,
    ) -> None:
        if not (isinstance(maxsize, int) and maxsize > 0):
            raise ConfigurationError(f"queue_size must be a positive integer, not {maxsize!r}")
        try:
            self._overflow = Overflow(overflow)
        except ValueError:
            choices = ", ".join(policy.value for policy in Overflow)
            raise ConfigurationError(f"overflow must be one of {choices}, not {overflow!r}") from None
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._report_dropped = report_dropped
        self._dropped = 0
        self._unreported = 0
        self._closed = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def dropped(self) -> int:
        """Events discarded by "drop_oldest" over the queue's lifetime."""
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def put_all_nowait(self, items: Sequence[T]) -> bool:
        """Add all of `items` without waiting, or none of them: False only under "block" when they do not all
        fit in an open queue. One call per frame on the reader's path (a frame may carry several events)."""
        if self._closed:
            return True  # discarded: nobody will read them
        if len(self._items) + len(items) > self._maxsize:
            if self._overflow is Overflow.BLOCK:
                return False
            for item in items:
                self.put_nowait(item)  # drops the oldest, counted
            return True
        self._items.extend(items)
        self._readable.set()
        return True

    async def put(self, item: T) -> None:
        """Add one item; waits while full under "block". Items put after `close` are discarded."""
        while not self.put_nowait(item):
            self._writable.clear()
            await self._writable.wait()

    def put_nowait(self, item: T) -> bool:
        """Add one item without waiting; False only under "block" with a full, open queue."""
        if self._closed:
            return True  # discarded: nobody will read it
        if self.full():
            if self._overflow is Overflow.BLOCK:
                return False
            self._items.popleft()
            self._dropped += 1
            self._unreported += 1
        self._items.append(item)
        self._readable.set()
        return True

    def get_nowait(self) -> T | None:
        """The next item if one can be handed out at once (no gap to report first), else None; `get()`
        does the rest. Items are never None (they are events)."""
        if not self._items or self._unreported:
            return None
        item = self._items.popleft()
        if len(self._items) + 1 == self._maxsize:  # it was full: a producer may be waiting for room
            self._writable.set()
        return item

    async def get(self) -> T:
        """The next item. Once closed and drained: raises the closing error, or `QueueClosed`."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise QueueClosed
            self._readable.clear()
            await self._readable.wait()
        if self._unreported:
            gap, self._unreported = self._unreported, 0
            if self._report_dropped is not None:
                self._report_dropped(gap)
        item = self._items.popleft()
        if not self.full():
            self._writable.set()
        return item

    def close(self, error: BaseException | None = None) -> None:
        """No more items will come. The consumer still gets what is queued, then `error` (if any).

        Idempotent; the first error wins. Producers blocked in `put` are released (their items dropped:
        nobody will read them).
        """
        if not self._closed:
            self._closed = True
            self._error = error
        self._readable.set()
        self._writable.set()
