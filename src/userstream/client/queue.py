"""The bounded queue between the socket readers and the user, with an explicit overflow policy.

This module owns `EventQueue`: capacity, the two overflow policies, and the stream's end (a clean close, or
a fatal error delivered after the events already queued). It knows nothing about sockets or exchanges.

Capacity is counted in items (`maxsize`) and, when the queue is given `maxbytes` and a `sizeof`, in bytes
too: an item fits when both counts stay within their bounds. A peer that pads its messages fills the byte
bound long before the item bound, so memory stays bounded whatever an item weighs (docs/reliability.md,
"Memory"). One item heavier than `maxbytes` still fits in an empty queue: nothing could ever make room for
it, and refusing it would stall the stream for good.

- "block" (the default): a full queue makes the reader wait. Nothing is lost; the exchange's side of the
  connection buffers instead, and the reader's idle clock is suspended while it waits (the connection does
  that, around its sink), so a slow consumer is never mistaken for a dead server.
- "drop_oldest": a full queue discards its oldest event to make room and counts it. The count of a gap is
  reported once, to `report_dropped`, just before the first event after the gap is handed out, so the user
  learns exactly how many events are missing and where. The running total is `dropped`.

Either way `put` never raises for a full queue: an overflow never kills the reader. The byte bound
follows the same policy with the same exact counts: "block" waits until the item fits, "drop_oldest"
discards as many of the oldest items as it takes, each one counted.
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
        maxbytes: int | None = None,
        sizeof: Callable[[T], int] | None = None,
    ) -> None:
        if not (isinstance(maxsize, int) and maxsize > 0):
            raise ConfigurationError(f"queue_size must be a positive integer, not {maxsize!r}")
        if maxbytes is not None and (
            isinstance(maxbytes, bool) or not isinstance(maxbytes, int) or maxbytes < 1
        ):
            raise ConfigurationError(f"queue_bytes must be a positive integer, not {maxbytes!r}")
        if maxbytes is not None and sizeof is None:
            raise ConfigurationError("a queue bounded in bytes needs a sizeof")
        try:
            self._overflow = Overflow(overflow)
        except ValueError:
            choices = ", ".join(policy.value for policy in Overflow)
            raise ConfigurationError(f"overflow must be one of {choices}, not {overflow!r}") from None
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        # Without a byte bound, every item weighs 0 and the byte count stays 0 (one code path for both).
        self._maxbytes = maxbytes if maxbytes is not None else 0
        self._sizeof: Callable[[T], int] = sizeof if maxbytes is not None and sizeof else _weightless
        self._sizes: deque[int] = deque()  # each item's weight, in the items' order
        self._bytes = 0
        self._report_dropped = report_dropped
        self._dropped = 0
        self._unreported = 0
        self._closed = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._producer_waits = False  # a `put` waits for room

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def maxbytes(self) -> int | None:
        return self._maxbytes or None

    @property
    def bytes(self) -> int:
        """The weight of the queued items, as `sizeof` counts them (0 without a byte bound)."""
        return self._bytes

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
        """No item fits: the item bound is reached, or the byte bound is."""
        return len(self._items) >= self._maxsize or (self._maxbytes > 0 and self._bytes >= self._maxbytes)

    def _fits(self, count: int, weight: int) -> bool:
        """Whether `count` more items weighing `weight` fit. One item of any weight fits an empty queue."""
        if len(self._items) + count > self._maxsize:
            return False
        if not self._maxbytes or self._bytes + weight <= self._maxbytes:
            return True
        return count == 1 and not self._items

    def put_all_nowait(self, items: Sequence[T]) -> bool:
        """Add all of `items` without waiting, or none of them: False only under "block" when they do not all
        fit in an open queue. One call per frame on the reader's path (a frame may carry several events)."""
        if self._closed:
            return True  # discarded: nobody will read them
        if len(items) == 1 and self._maxbytes:  # the usual frame, one event: its own short path
            item = items[0]
            size = self._sizeof(item)
            if len(self._items) < self._maxsize and self._bytes + size <= self._maxbytes:
                self._items.append(item)
                self._sizes.append(size)
                self._bytes += size
                self._readable.set()
                return True
            if self._overflow is Overflow.BLOCK and not self._fits(1, size):
                return False
            return self._put(item, size)
        sizes = [self._sizeof(item) for item in items] if self._maxbytes else None
        weight = 0 if sizes is None else sum(sizes)
        if not self._fits(len(items), weight):
            if self._overflow is Overflow.BLOCK:
                return False
            for index, item in enumerate(items):
                self._put(item, 0 if sizes is None else sizes[index])  # drops the oldest, counted
            return True
        self._items.extend(items)
        if sizes is not None:
            self._sizes.extend(sizes)
            self._bytes += weight
        self._readable.set()
        return True

    async def put(self, item: T) -> None:
        """Add one item; waits while full under "block". Items put after `close` are discarded."""
        while not self.put_nowait(item):
            self._writable.clear()
            self._producer_waits = True
            await self._writable.wait()

    def put_nowait(self, item: T) -> bool:
        """Add one item without waiting; False only under "block" with a full, open queue."""
        if self._closed:
            return True  # discarded: nobody will read it
        return self._put(item, self._sizeof(item) if self._maxbytes else 0)

    def _put(self, item: T, size: int) -> bool:
        if not self._fits(1, size):
            if self._overflow is Overflow.BLOCK:
                return False
            while self._items and not self._fits(1, size):  # as many of the oldest as it takes
                self._items.popleft()
                if self._maxbytes:
                    self._bytes -= self._sizes.popleft()
                self._dropped += 1
                self._unreported += 1
        self._items.append(item)
        if self._maxbytes:
            self._sizes.append(size)
            self._bytes += size
        self._readable.set()
        return True

    def get_nowait(self) -> T | None:
        """The next item if one can be handed out at once (no gap to report first), else None; `get()`
        does the rest. Items are never None (they are events)."""
        if not self._items or self._unreported:
            return None
        item = self._items.popleft()
        if self._maxbytes:
            self._bytes -= self._sizes.popleft()
        if self._producer_waits:  # let it look again: the room it needs may be there now
            self._producer_waits = False
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
        if self._maxbytes:
            self._bytes -= self._sizes.popleft()
        if self._producer_waits:  # let it look again: the room it needs may be there now
            self._producer_waits = False
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


def _weightless(item: object) -> int:
    return 0
