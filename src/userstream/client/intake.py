"""The one entrance to a stream's queue: every event any producer hands on goes in through `Intake.put`.

This module owns `Intake`, which stands between the stream's producers and its bounded `EventQueue`
(client/queue.py, which owns the item and byte bounds and the overflow policy). The producers are:

- each connection's reader, once per data frame (`client/connection.py` calls the stream's sink, which is
  `put`; its no-wait door, `offer`, is `put`'s first step, taken in the WebSocket's frame callback);
- a resync's corrections (client/resync.py), with a callback as each one enters the queue;
- a rotation's hand-over, which releases the events the new connection held (`end_overlap`).

`Intake` owns what all of them need, so that none of them decides it alone:

- Order. Each `put` goes in whole with respect to the others: a producer that must wait (the queue is
  full under "block", or a rotation is under way) takes a turn, and while one waits, `offer` refuses every
  later batch, so nothing overtakes it. One FIFO turn (an `asyncio.Lock`) is the only ordering state here;
  the no-wait door is open exactly when no turn is held and no rotation is under way.
- De-duplication of a rotation's overlap (`dedupe.OverlapDeduper`): a connection's events are offered to it
  one by one as they enter; the corrections and the released events belong to no connection and bypass it.
- Progress: `progressed()` is a future resolved by the next batch a connection hands on, which the
  hand-over waits on to tell a quiet stream from a busy one.

Nothing here knows an exchange, a socket or a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from userstream.client.dedupe import OverlapDeduper
from userstream.client.queue import EventQueue
from userstream.events import Event

__all__ = ["NO_CONNECTION", "Intake"]

#: The source of events that belong to no connection (corrections, released events): not de-duplicated.
NO_CONNECTION: Final = 0


def _ignore(event: Event) -> None:
    """What `put` calls as each event enters when the producer asked for nothing."""


class Intake:
    """The one entrance to a stream's queue (see the module docstring). Connections are named by their
    serial numbers (from 1); `NO_CONNECTION` names everything else."""

    __slots__ = ("_progress", "_turn", "dedupe", "queue")

    def __init__(self, queue: EventQueue[Event]) -> None:
        self.queue = queue
        self.dedupe = OverlapDeduper()
        self._turn = asyncio.Lock()
        self._progress: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def offer(self, source: object, events: Sequence[Event]) -> bool:
        """`put` without waiting: every event goes in now (True), or none (False: nothing was taken, and the
        producer awaits `put` with the same events). Refused while a turn is held (an earlier batch waits),
        during a rotation (each event must be de-duplicated as it enters), and when the batch does not fit.
        Once per frame on the reader's path, so it does no more than that: `source` (a connection, or its
        serial) is not looked at, and progress need not be told, since only a rotation's hand-over asks for it
        and a rotation keeps this door shut."""
        return not (self.dedupe.active or self._turn.locked()) and self.queue.put_all_nowait(events)

    async def put(
        self, source: int, events: Sequence[Event], on_queued: Callable[[Event], object] = _ignore
    ) -> None:
        """The entrance: hand `events` on, in order, as one piece with respect to every other producer,
        waiting for room as the queue's policy says ("block"), and through the rotation's de-duplication when
        `source` is a connection. `on_queued(event)` is called as each event enters the queue."""
        if on_queued is _ignore and self.offer(source, events):
            return  # the door was open: no rotation, so nobody waits for progress
        async with self._turn:
            await self._enter(source, events, on_queued)

    async def end_overlap(self) -> bool:
        """The rotation's old connection has finished: put the events the new one held and the old one did not
        deliver, in their order, and leave the overlap. True if the old connection had caught up (reached
        the first event the new one holds, so nothing only it carried can be missing)."""
        async with self._turn:
            caught_up = self.dedupe.caught_up
            if self.dedupe.active:
                await self._enter(NO_CONNECTION, self.dedupe.end(), _ignore)
            return caught_up

    def progressed(self) -> asyncio.Future[None]:
        """A future resolved when the next batch enters (already resolved if one entered since the last
        call that found it resolved)."""
        if self._progress.done():
            self._progress = asyncio.get_running_loop().create_future()
        return self._progress

    async def _enter(
        self, source: int, events: Sequence[Event], on_queued: Callable[[Event], object]
    ) -> None:
        """Put each event, in turn; the caller holds the turn."""
        dedupe = self.dedupe
        for event in events:
            if source == NO_CONNECTION or dedupe.offer(source, event):
                await self.queue.put(event)
                on_queued(event)
        if source != NO_CONNECTION and not self._progress.done():
            self._progress.set_result(None)
