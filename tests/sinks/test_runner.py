"""SinkRunner: retries with exact backoff delays, exact backpressure, counted drops, flush, drain, failure.

The sink here is a tiny real class written for the tests (it records batches, fails on demand and can be
held at a gate); the runner under test is the real one. Delays are recorded by an injected sleep, so the
backoff is checked exactly without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest

from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import BalanceUpdate, Event
from userstream.sinks import Sink, SinkRunner

BalanceFactory = Callable[..., BalanceUpdate]


class RecordingSink:
    """Records each written batch. Fails its next `failures` writes with TransportError (or with `fatal`,
    once); while `gate` is clear, every write waits at it (`entered` is set once a write is waiting)."""

    name = "recording"

    def __init__(self, failures: int = 0, fatal: Exception | None = None, *, gated: bool = False) -> None:
        self.failures = failures
        self.fatal = fatal
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.entered = asyncio.Event()
        self.batches: list[tuple[Event, ...]] = []
        self.attempts = 0
        self.opened = 0
        self.closed = 0

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch]

    async def open(self) -> None:
        self.opened += 1

    async def write(self, batch: Sequence[Event]) -> None:
        self.attempts += 1
        self.entered.set()
        await self.gate.wait()
        if self.fatal is not None:
            raise self.fatal
        if self.failures:
            self.failures -= 1
            raise TransportError(f"down (attempt {self.attempts})")
        self.batches.append(tuple(batch))

    async def close(self) -> None:
        self.closed += 1


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def settle() -> None:
    """Let every task that can run, run (the loop has nothing timed pending in these tests)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def events(balance: BalanceFactory) -> list[BalanceUpdate]:
    return [balance("USDT", str(index), timestamp=1_000 + index) for index in range(1, 9)]


def test_the_recording_sink_is_a_sink() -> None:
    assert isinstance(RecordingSink(), Sink)


async def test_a_failing_write_is_retried_with_exponential_backoff_then_written_once(
    events: list[BalanceUpdate],
) -> None:
    sink = RecordingSink(failures=3)
    sleep = SleepRecorder()
    retries: list[tuple[int, str, float]] = []
    runner = SinkRunner(
        sink,
        capacity=10,
        batch_size=10,
        retry_base=0.01,
        retry_cap=0.03,
        rng=lambda: 1.0,
        sleep=sleep,
        on_retry=lambda attempt, error, delay: retries.append((attempt, str(error), delay)),
    )
    async with runner:
        for event in events[:3]:
            await runner.put(event)
        await runner.flush()
        assert sink.batches == [tuple(events[:3])]
        assert sleep.delays == [0.01, 0.02, 0.03]  # doubling, capped
        assert retries == [
            (1, "down (attempt 1)", 0.01),
            (2, "down (attempt 2)", 0.02),
            (3, "down (attempt 3)", 0.03),
        ]
        assert (runner.retries, runner.written, runner.pending) == (3, 3, 0)

        # A success resets the backoff: the next failure waits the base delay again.
        sink.failures = 1
        await runner.put(events[3])
        await runner.flush()
    assert sleep.delays == [0.01, 0.02, 0.03, 0.01]
    assert sink.events == events[:4]
    assert (sink.attempts, runner.retries, runner.written, sink.closed) == (6, 4, 4, 1)


async def test_a_full_buffer_makes_put_wait_until_the_sink_catches_up(events: list[BalanceUpdate]) -> None:
    sink = RecordingSink(gated=True)
    async with SinkRunner(sink, capacity=3, batch_size=2) as runner:
        for event in events[:3]:
            await runner.put(event)  # room for exactly three
        await sink.entered.wait()  # the writer holds events 0 and 1; event 2 waits
        assert runner.pending == 3
        blocked = asyncio.create_task(runner.put(events[3]))
        await settle()
        assert not blocked.done()  # nothing can make room while the sink is held
        assert runner.pending == 3

        sink.gate.set()
        await blocked
        await runner.flush()
        assert sink.batches[0] == tuple(events[:2])
        assert sink.events == events[:4]
        assert (runner.pending, runner.dropped, runner.written) == (0, 0, 4)


async def test_drop_oldest_drops_the_oldest_waiting_event_and_counts_each_drop(
    events: list[BalanceUpdate], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="userstream.sinks.runner")
    sink = RecordingSink(gated=True)
    dropped: list[Event] = []
    async with SinkRunner(
        sink, capacity=3, batch_size=2, overflow="drop_oldest", on_drop=dropped.append
    ) as runner:
        for event in events[:3]:
            await runner.put(event)
        await sink.entered.wait()  # 0 and 1 are being written; 2 waits
        await runner.put(events[3])  # full: 2 is dropped
        await runner.put(events[4])  # full: 3 is dropped
        assert dropped == [events[2], events[3]]
        assert (runner.dropped, runner.pending) == (2, 3)

        sink.gate.set()
        await runner.flush()
        await runner.put(events[5])  # room again: the burst of drops ends and is reported
    assert sink.events == [events[0], events[1], events[4], events[5]]
    assert runner.dropped == 2
    assert [record.getMessage() for record in caplog.records] == [
        "sink recording: buffer full (3 events), dropping the oldest (overflow=drop_oldest)",
        "sink recording: dropped 2 events in that burst, 2 in total",
    ]


async def test_drop_oldest_drops_the_newcomer_when_every_pending_event_is_being_written(
    events: list[BalanceUpdate],
) -> None:
    sink = RecordingSink(gated=True)
    dropped: list[Event] = []
    async with SinkRunner(
        sink, capacity=2, batch_size=2, overflow="drop_oldest", on_drop=dropped.append
    ) as runner:
        await runner.put(events[0])
        await runner.put(events[1])
        await sink.entered.wait()
        await runner.put(events[2])
        assert dropped == [events[2]]
        sink.gate.set()
    assert sink.events == events[:2]
    assert runner.dropped == 1


async def test_flush_waits_for_events_older_than_it_even_when_newer_ones_are_dropped(
    events: list[BalanceUpdate],
) -> None:
    sink = RecordingSink(gated=True)
    async with SinkRunner(sink, capacity=2, batch_size=1, overflow="drop_oldest") as runner:
        await runner.put(events[0])
        await sink.entered.wait()  # 0 is being written
        await runner.put(events[1])
        flushing = asyncio.create_task(runner.flush())
        await runner.put(events[2])  # drops 1
        await runner.put(events[3])  # drops 2: two drops settle two events, but 0 is still unwritten
        await settle()
        assert not flushing.done()
        sink.gate.set()
        await flushing
        assert sink.events[0] == events[0]
    assert sink.events == [events[0], events[3]]


async def test_close_writes_everything_pending_then_closes_the_sink(events: list[BalanceUpdate]) -> None:
    sink = RecordingSink(failures=2)
    runner = SinkRunner(sink, capacity=8, batch_size=3, retry_base=0.001, retry_cap=0.001)
    await runner.start()
    for event in events:
        await runner.put(event)
    await runner.close()
    assert sink.events == events
    assert [len(batch) for batch in sink.batches] == [3, 3, 2]
    assert (sink.opened, sink.closed, runner.written, runner.abandoned) == (1, 1, 8, 0)
    await runner.close()  # idempotent
    assert sink.closed == 1
    with pytest.raises(LocalProtocolError, match="put after close"):
        await runner.put(events[0])


async def test_put_before_start_and_a_second_start_are_refused(events: list[BalanceUpdate]) -> None:
    runner = SinkRunner(RecordingSink())
    with pytest.raises(LocalProtocolError, match="put before start"):
        await runner.put(events[0])
    async with runner:
        with pytest.raises(LocalProtocolError, match="starts once"):
            await runner.start()


async def test_a_producer_blocked_at_close_is_told_its_event_was_not_taken(
    events: list[BalanceUpdate],
) -> None:
    sink = RecordingSink(gated=True)
    runner = SinkRunner(sink, capacity=1, batch_size=1)
    await runner.start()
    await runner.put(events[0])
    blocked = asyncio.create_task(runner.put(events[1]))
    await settle()
    closing = asyncio.create_task(runner.close())
    with pytest.raises(LocalProtocolError, match="put after close"):
        await blocked
    sink.gate.set()
    await closing
    assert sink.events == [events[0]]


async def test_a_cancelled_close_abandons_what_is_unwritten_counts_it_and_closes_the_sink(
    events: list[BalanceUpdate], caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink(failures=10**9)  # down for good
    runner = SinkRunner(sink, capacity=8, batch_size=2, retry_base=0.001, retry_cap=0.002)
    await runner.start()
    for event in events[:5]:
        await runner.put(event)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await runner.close()
    assert (runner.abandoned, runner.pending, runner.written, sink.closed) == (5, 0, 0, 1)
    assert "sink recording: close was cancelled before the sink caught up; 5 events were NOT written" in [
        record.getMessage() for record in caplog.records if record.levelno == logging.ERROR
    ]


async def test_an_error_that_is_not_transport_trouble_stops_the_runner_and_is_raised_everywhere(
    events: list[BalanceUpdate],
) -> None:
    failure = ValueError("schema mismatch")
    sink = RecordingSink(fatal=failure)
    runner = SinkRunner(sink, capacity=8, batch_size=2)
    await runner.start()
    for event in events[:3]:
        await runner.put(event)
    with pytest.raises(ValueError, match="schema mismatch"):
        await runner.flush()
    assert (sink.attempts, runner.retries, runner.abandoned, runner.failure) == (1, 0, 3, failure)
    with pytest.raises(ValueError, match="schema mismatch"):
        await runner.put(events[3])
    with pytest.raises(ValueError, match="schema mismatch"):
        await runner.close()
    assert sink.closed == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity": 0}, "capacity must be a positive integer"),
        ({"capacity": 4, "batch_size": 5}, r"batch_size must be in \[1, capacity=4\]"),
        ({"batch_size": 0}, "batch_size must be in"),
        ({"overflow": "drop_newest"}, "overflow must be one of block, drop_oldest, not 'drop_newest'"),
        ({"retry_base": 0}, "backoff base must be positive"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SinkRunner(RecordingSink(), **options)  # type: ignore[arg-type]
