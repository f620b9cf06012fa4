"""Drives any sink: a bounded buffer, batches, retries with backoff, backpressure or counted drops, drain.

This module owns `SinkRunner`, the only place where events wait for a sink. It knows nothing about files,
databases or Redis; it relies on the `Sink` contract (idempotent `write`, `TransportError` for what may pass).

- Capacity counts every event accepted and not yet written, including the batch the sink is writing, so
  memory is bounded by `capacity` events whatever the sink does.
- Batches are what is pending: as soon as a write returns, the writer hands the sink everything waiting, up
  to `batch_size`, as the next batch (no timer): one event when the stream is quiet, larger batches the
  longer a write takes, so a sink's cost per write is shared by more events exactly when it matters.
- A `write` that raises `TransportError` is retried with the same batch after an exponential backoff
  delay (`client.backoff.Backoff`, the client's reconnect policy, with injectable timings and sleep), for as
  long as it takes; events keep arriving into the buffer meanwhile. Any other error stops the runner: the
  events still buffered are counted as abandoned, and `put`, `flush` and `close` raise that error.
- A full buffer makes `put` wait (overflow "block", the default: the stream slows down, nothing is lost).
  With "drop_oldest" it discards the oldest event not yet handed to the sink (or, when every pending event
  is already being written, the new one); each drop is counted in `dropped`, passed to `on_drop`, and
  logged once per burst with its size.
- `flush` waits until everything accepted before it was written; `close` drains, then closes the sink.
- `health` says whether the sink is keeping up: a batch that has failed `down_after_attempts` times in a
  row, or has been in the writing for `down_after_seconds` while failing or hanging, makes it "down" (still
  retried; "up" again at the next successful write), and so does at once an error the sink marks as
  `SinkUnwritableError` (a read-only file: an operator must act). A runner stopped for good is "failed".

The runner owns its writer task: `start`/`close`, or `async with`. No task outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from userstream.client.backoff import Backoff
from userstream.client.queue import Overflow
from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import Event
from userstream.sinks.base import Sink, SinkUnwritableError

__all__ = ["DOWN_AFTER_ATTEMPTS", "DOWN_AFTER_SECONDS", "Overflow", "SinkHealth", "SinkRunner"]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: A batch that failed this many times in a row makes the sink down (a Redis refusing connections: 1-5 s).
DOWN_AFTER_ATTEMPTS = 8
#: A batch still unwritten this many seconds after its first attempt, with a failure or a write still
#: hanging, makes the sink down (a Redis that does not answer, a database locked by another writer).
DOWN_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class SinkHealth:
    """Whether a sink keeps up, and if not, since when and why (for /healthz, metrics and the dashboard).

    `state` is "ok" (writing), "retrying" (a batch failed, under the thresholds: still up), "down" (failed
    past a threshold, or unwritable: retried still) or "failed" (stopped by a fatal error: never again).
    `error` is the last error, as `Type: message` (a sink's messages hold no secret). `failing_for` is the
    seconds since the failing batch was first tried; `attempts` its failed attempts in a row.
    """

    state: Literal["ok", "retrying", "down", "failed"]
    error: str | None = None
    failing_for: float | None = None
    attempts: int = 0

    @property
    def up(self) -> bool:
        return self.state in ("ok", "retrying")


class SinkRunner:
    """A bounded, retrying, draining front for one sink."""

    def __init__(
        self,
        sink: Sink,
        *,
        capacity: int = 10_000,
        batch_size: int | None = None,
        overflow: Overflow | str = Overflow.BLOCK,
        on_drop: Callable[[Event], None] | None = None,
        on_retry: Callable[[int, TransportError, float], None] | None = None,
        retry_base: float = 0.05,
        retry_cap: float = 5.0,
        down_after_attempts: int = DOWN_AFTER_ATTEMPTS,
        down_after_seconds: float = DOWN_AFTER_SECONDS,
        rng: Callable[[], float] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_retry(attempt, error, delay)` is called before each backoff sleep (attempt counts from 1 per
        batch); `rng` feeds the backoff's jitter (pass `lambda: 1.0` for exact delays base, 2*base, ...).
        `batch_size` defaults to 500 or the capacity, whichever is smaller. `down_after_attempts` and
        `down_after_seconds` are the thresholds of `health` (module docstring); `clock` measures time."""
        if not (isinstance(capacity, int) and capacity > 0):
            raise ConfigurationError(f"sink capacity must be a positive integer, not {capacity!r}")
        if batch_size is None:
            batch_size = min(500, capacity)
        if not (isinstance(batch_size, int) and 0 < batch_size <= capacity):
            raise ConfigurationError(
                f"sink batch_size must be in [1, capacity={capacity}], not {batch_size!r}"
            )
        try:
            self._overflow = Overflow(overflow)
        except ValueError:
            choices = ", ".join(policy.value for policy in Overflow)
            raise ConfigurationError(f"sink overflow must be one of {choices}, not {overflow!r}") from None
        if not (isinstance(down_after_attempts, int) and down_after_attempts > 0):
            raise ConfigurationError(
                f"sink down_after_attempts must be a positive integer, not {down_after_attempts!r}"
            )
        if not (isinstance(down_after_seconds, int | float) and down_after_seconds > 0):
            raise ConfigurationError(
                f"sink down_after_seconds must be a positive number, not {down_after_seconds!r}"
            )
        self._sink = sink
        self._capacity = capacity
        self._batch_size = batch_size
        self._on_drop = on_drop
        self._on_retry = on_retry
        # The client's Backoff insists on a stability period for reconnects; a sink resets after each
        # successful write instead, so the period plays no part here.
        self._backoff = Backoff(base=retry_base, cap=retry_cap, stable_after=0.0, rng=rng)
        self._sleep = sleep
        self._clock = clock
        self._down_after_attempts = down_after_attempts
        self._down_after_seconds = float(down_after_seconds)

        self._waiting: deque[tuple[int, Event]] = deque()  # accepted, not yet handed to the sink
        self._in_flight: tuple[Event, ...] = ()
        self._in_flight_first_seq = 0
        self._next_seq = 0
        self._written = 0
        self._dropped = 0
        self._retries = 0
        self._abandoned = 0
        self._drop_burst = 0
        # the batch being written: when its first attempt began, its failures in a row, the last one
        self._batch_since: float | None = None
        self._attempts = 0
        self._last_error: TransportError | None = None
        self._reported_down = False

        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        # Wake-ups: the writer waits for items, producers for space, flushers for progress. Each waiter
        # clears then waits with no await in between, so no wake-up is lost on one event loop.
        self._items = asyncio.Event()
        self._space = asyncio.Event()
        self._progress = asyncio.Event()

    # --- what the runner reports ---------------------------------------------------------------------

    @property
    def sink(self) -> Sink:
        return self._sink

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def pending(self) -> int:
        """Events accepted and not yet written (buffered plus the batch being written): the queue depth."""
        return len(self._waiting) + len(self._in_flight)

    @property
    def written(self) -> int:
        """Events the sink confirmed (a replayed event the sink stored once still counts here)."""
        return self._written

    @property
    def dropped(self) -> int:
        """Events discarded because the buffer was full under "drop_oldest"."""
        return self._dropped

    @property
    def retries(self) -> int:
        """Failed writes that were retried."""
        return self._retries

    @property
    def abandoned(self) -> int:
        """Events accepted but never written: left over by a fatal sink error or a timed-out close."""
        return self._abandoned

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the runner, if one did."""
        return self._failure

    @property
    def health(self) -> SinkHealth:
        """Whether the sink keeps up now (see `SinkHealth`; the thresholds are in the module docstring)."""
        if self._failure is not None:
            return SinkHealth("failed", _describe(self._failure))
        since = self._batch_since
        if since is None:
            return SinkHealth("ok")
        failing_for = self._clock() - since
        error = self._last_error
        if error is None:  # the first attempt is still under way: only a hang past the time limit counts
            if failing_for < self._down_after_seconds:
                return SinkHealth("ok")
            return SinkHealth(
                "down",
                f"a write has not returned for {failing_for:.1f}s",
                round(failing_for, 3),
                0,
            )
        down = (
            isinstance(error, SinkUnwritableError)
            or self._attempts >= self._down_after_attempts
            or failing_for >= self._down_after_seconds
        )
        return SinkHealth(
            "down" if down else "retrying", _describe(error), round(failing_for, 3), self._attempts
        )

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sink and start the writer."""
        if self._task is not None or self._closing:
            raise LocalProtocolError("a SinkRunner starts once")
        await self._sink.open()
        self._task = asyncio.create_task(self._write_loop(), name=f"sink-writer[{self._sink.name}]")

    async def __aenter__(self) -> SinkRunner:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting events, write everything pending, close the sink. Idempotent.

        Bound it with `asyncio.timeout(...)` where shutdown must not wait forever for a sink that stays
        down: a cancelled close abandons what is still unwritten, counts it in `abandoned`, logs it as an
        error, and still closes the sink. Raises the error that stopped the runner, if one did.
        """
        if self._closed:
            self._raise_failure()
            return
        self._closing = True
        self._items.set()
        self._space.set()  # producers blocked in put learn that the runner is closing
        task = self._task
        try:
            if task is not None:
                await asyncio.wait({task})
        finally:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
                self._abandon("close was cancelled before the sink caught up")
            self._closed = True
            self._progress.set()
            if task is not None:
                await self._sink.close()
            if self._drop_burst:
                self._end_drop_burst()
        self._raise_failure()

    # --- producers --------------------------------------------------------------------------------------

    async def put(self, event: Event) -> None:
        """Accept one event. Waits while the buffer is full under "block"; never waits under "drop_oldest".

        Raises the sink's fatal error once the runner has stopped, and `LocalProtocolError` before `start`
        or after `close`.
        """
        if (  # the common case, inline (a call per event on the gateway's path): running, room, no drops
            self._failure is None
            and self._task is not None
            and not self._closing
            and not self._drop_burst
            and len(self._waiting) + len(self._in_flight) < self._capacity
        ):
            self._waiting.append((self._next_seq, event))
            self._next_seq += 1
            self._items.set()
            return
        while True:
            self._check_accepting()
            if self.pending < self._capacity:
                self._accept(event)
                return
            if self._overflow is Overflow.DROP_OLDEST:
                self._drop_for(event)
                return
            self._space.clear()
            await self._space.wait()

    async def flush(self) -> None:
        """Wait until every event accepted before this call is written (or dropped by the policy)."""
        last_seq = self._next_seq - 1
        while self._oldest_unsettled_seq() <= last_seq:
            self._raise_failure()
            if self._task is None or self._task.done():
                raise LocalProtocolError(f"sink {self._sink.name} is not running; nothing can be flushed")
            self._progress.clear()
            await self._progress.wait()
        self._raise_failure()

    # --- internals ----------------------------------------------------------------------------------------

    def _check_accepting(self) -> None:
        self._raise_failure()
        if self._task is None:
            raise LocalProtocolError(f"sink {self._sink.name}: put before start")
        if self._closing:
            raise LocalProtocolError(f"sink {self._sink.name}: put after close")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _accept(self, event: Event) -> None:
        if self._drop_burst:
            self._end_drop_burst()
        self._waiting.append((self._next_seq, event))
        self._next_seq += 1
        self._items.set()

    def _drop_for(self, event: Event) -> None:
        if self._waiting:
            _, victim = self._waiting.popleft()
            self._waiting.append((self._next_seq, event))
            self._next_seq += 1
            self._items.set()
            self._progress.set()  # a flush may have been waiting for the victim
        else:
            victim = event  # everything pending is being written already; the newcomer gives way
        self._dropped += 1
        if self._drop_burst == 0:
            logger.warning(
                "sink %s: buffer full (%d events), dropping the oldest (overflow=drop_oldest)",
                self._sink.name,
                self._capacity,
            )
        self._drop_burst += 1
        if self._on_drop is not None:
            self._on_drop(victim)

    def _end_drop_burst(self) -> None:
        logger.warning(
            "sink %s: dropped %d events in that burst, %d in total",
            self._sink.name,
            self._drop_burst,
            self._dropped,
        )
        self._drop_burst = 0

    def _oldest_unsettled_seq(self) -> int:
        if self._in_flight:
            return self._in_flight_first_seq
        if self._waiting:
            return self._waiting[0][0]
        return self._next_seq

    def _abandon(self, reason: str) -> None:
        lost = self.pending
        self._waiting.clear()
        self._in_flight = ()
        if lost:
            self._abandoned += lost
            logger.error("sink %s: %s; %d events were NOT written", self._sink.name, reason, lost)

    async def _write_loop(self) -> None:
        try:
            while True:
                while not self._waiting:
                    if self._closing:
                        return
                    self._items.clear()
                    await self._items.wait()
                self._in_flight_first_seq = self._waiting[0][0]
                self._in_flight = self._take_batch()
                self._batch_since = self._clock()
                # A write that hangs without failing turns the sink down too: say so when it does, not only
                # once (if ever) the attempt fails.
                hung = asyncio.get_running_loop().call_later(self._down_after_seconds, self._report_down_once)
                try:
                    await self._write_with_retry(self._in_flight)
                finally:
                    hung.cancel()
                self._written += len(self._in_flight)
                self._in_flight = ()
                self._batch_since = None
                self._space.set()
                self._progress.set()
        except Exception as exc:  # the sink cannot go on: keep the error for put, flush and close
            self._failure = exc
            self._abandon(f"stopped by {type(exc).__name__}: {exc}")
            self._space.set()
            self._progress.set()

    def _take_batch(self) -> tuple[Event, ...]:
        """Everything waiting, up to `batch_size`, oldest first (one transaction's worth for the sink)."""
        waiting = self._waiting
        if len(waiting) <= self._batch_size:
            batch = tuple([event for _, event in waiting])
            waiting.clear()
            return batch
        popleft = waiting.popleft
        return tuple([popleft()[1] for _ in range(self._batch_size)])

    def _report_down_once(self) -> None:
        """Log an error when the sink turns down (once per failing batch; its recovery is logged too)."""
        health = self.health
        if health.up or self._reported_down:
            return
        self._reported_down = True
        logger.error(
            "sink %s is DOWN (%d failed attempts in %.1fs; %d events wait): %s",
            self._sink.name,
            health.attempts,
            health.failing_for or 0.0,
            self.pending,
            health.error,
        )

    async def _write_with_retry(self, batch: tuple[Event, ...]) -> None:
        attempt = 0
        while True:
            try:
                await self._sink.write(batch)
            except TransportError as exc:
                attempt += 1
                self._retries += 1
                self._attempts = attempt
                self._last_error = exc
                delay = self._backoff.next_delay()
                logger.warning(
                    "sink %s: writing %d events failed (attempt %d), retrying in %.3fs: %s",
                    self._sink.name,
                    len(batch),
                    attempt,
                    delay,
                    exc,
                )
                self._report_down_once()
                if self._on_retry is not None:
                    self._on_retry(attempt, exc, delay)
                await self._sleep(delay)
            else:
                self._backoff.reset()
                if attempt or self._reported_down:
                    log = logger.warning if self._reported_down else logger.info
                    log(
                        "sink %s recovered: the batch was written after %d failed attempts",
                        self._sink.name,
                        attempt,
                    )
                self._attempts = 0
                self._last_error = None
                self._reported_down = False
                return


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
