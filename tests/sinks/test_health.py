"""SinkRunner.health: a sink that cannot write is never reported up for long, and is up again once it writes.

The sink is a tiny real class written for these tests (it fails on demand, with the error asked for, and can
hold a write at a gate); the runner is the real one. Time is an injected clock the test moves, and sleeps are
recorded, so the thresholds are checked exactly without waiting for them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence

import pytest

from userstream.errors import ConfigurationError, TransportError
from userstream.events import BalanceUpdate, Event
from userstream.sinks import SinkRunner, SinkUnwritableError, load_spec, parse_sink
from userstream.sinks.runner import DOWN_AFTER_ATTEMPTS, DOWN_AFTER_SECONDS, SinkHealth

BalanceFactory = Callable[..., BalanceUpdate]


class FailingSink:
    """Fails each write with `errors.pop(0)` while errors are left; holds writes while `gate` is clear."""

    name = "failing"

    def __init__(self, errors: Sequence[Exception] = ()) -> None:
        self.errors = list(errors)
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.batches: list[tuple[Event, ...]] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Sequence[Event]) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        self.batches.append(tuple(batch))

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pacer:
    """An injected sleep that moves the clock by `step` per backoff and records each health it saw."""

    def __init__(self, clock: Clock, step: float) -> None:
        self.clock = clock
        self.step = step
        self.runner: SinkRunner | None = None
        self.seen: list[SinkHealth] = []

    async def __call__(self, delay: float) -> None:
        assert self.runner is not None
        self.seen.append(self.runner.health)
        self.clock.now += self.step
        await asyncio.sleep(0)


def make(sink: FailingSink, clock: Clock, step: float = 0.0, **options: object) -> tuple[SinkRunner, Pacer]:
    pacer = Pacer(clock, step)
    runner = SinkRunner(sink, capacity=10, sleep=pacer, clock=clock, rng=lambda: 1.0, **options)  # type: ignore[arg-type]
    pacer.runner = runner
    return runner, pacer


async def test_the_defaults_are_eight_attempts_or_ten_seconds() -> None:
    assert (DOWN_AFTER_ATTEMPTS, DOWN_AFTER_SECONDS) == (8, 10.0)
    spec = load_spec({"type": "jsonl"})
    assert (spec.down_after_attempts, spec.down_after_seconds) == (8, 10.0)


async def test_down_after_n_failed_attempts_in_a_row_then_up_again_once_the_batch_is_written(
    balance: BalanceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingSink([TransportError(f"refused {n}") for n in range(1, 5)])
    clock = Clock()
    runner, pacer = make(sink, clock, step=0.5, down_after_attempts=3, down_after_seconds=60)
    assert runner.health == SinkHealth("ok")
    async with runner:
        await runner.put(balance())
        await runner.flush()
        assert runner.health == SinkHealth("ok")
    # the health each backoff saw: 1 and 2 failures are "retrying" (still up), the third and fourth "down"
    assert pacer.seen == [
        SinkHealth("retrying", "TransportError: refused 1", 0.0, 1),
        SinkHealth("retrying", "TransportError: refused 2", 0.5, 2),
        SinkHealth("down", "TransportError: refused 3", 1.0, 3),
        SinkHealth("down", "TransportError: refused 4", 1.5, 4),
    ]
    assert [health.up for health in pacer.seen] == [True, True, False, False]
    assert sink.batches == [(balance(),)]  # nothing lost: the same batch, written once it could be
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "sink failing is DOWN (3 failed attempts in 1.0s; 1 events wait): TransportError: refused 3"
    ]
    recovered = [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    assert recovered == ["sink failing recovered: the batch was written after 4 failed attempts"]


async def test_down_after_t_seconds_of_failing_even_under_n_attempts(balance: BalanceFactory) -> None:
    sink = FailingSink([TransportError("locked") for _ in range(3)])
    clock = Clock()
    runner, pacer = make(sink, clock, step=4.0, down_after_attempts=100, down_after_seconds=8)
    async with runner:
        await runner.put(balance())
        await runner.flush()
    assert pacer.seen == [
        SinkHealth("retrying", "TransportError: locked", 0.0, 1),
        SinkHealth("retrying", "TransportError: locked", 4.0, 2),
        SinkHealth("down", "TransportError: locked", 8.0, 3),
    ]


async def test_a_write_that_hangs_is_down_after_t_seconds(balance: BalanceFactory) -> None:
    sink = FailingSink()
    sink.gate.clear()
    clock = Clock()
    runner, _ = make(sink, clock, down_after_seconds=5)
    async with runner:
        await runner.put(balance())
        await sink.entered.wait()
        clock.now += 4.5
        assert runner.health == SinkHealth("ok")  # a write under way for less than the limit is normal
        clock.now += 0.5
        assert runner.health == SinkHealth("down", "a write has not returned for 5.0s", 5.0, 0)
        sink.gate.set()
        await runner.flush()
        assert runner.health == SinkHealth("ok")
    assert sink.batches == [(balance(),)]


async def test_a_write_that_hangs_logs_that_the_sink_is_down_when_it_turns_down_and_its_recovery(
    balance: BalanceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # the real clock: the runner's own timer says it at down_after_seconds, not the next failure (none comes)
    sink = FailingSink()
    sink.gate.clear()
    runner = SinkRunner(sink, capacity=10, down_after_seconds=0.2)  # type: ignore[arg-type]
    async with runner:
        await runner.put(balance())
        async with asyncio.timeout(10):
            while not [r for r in caplog.records if r.levelno == logging.ERROR]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert runner.health.state == "down"
        sink.gate.set()
        await runner.flush()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("userstream")]
    assert [level for level, _ in messages] == [logging.ERROR, logging.WARNING]
    # the seconds are the timer's, a little past 0.2 on a loaded machine
    assert re.fullmatch(
        r"sink failing is DOWN \(0 failed attempts in (\d+\.\d)s; 1 events wait\): "
        r"a write has not returned for \1s",
        messages[0][1],
    )
    assert messages[1][1] == "sink failing recovered: the batch was written after 0 failed attempts"


async def test_an_unwritable_sink_is_down_at_the_first_failure_and_still_retried(
    balance: BalanceFactory,
) -> None:
    sink = FailingSink([SinkUnwritableError("events.db is not writable"), TransportError("locked")])
    clock = Clock()
    runner, pacer = make(sink, clock, step=1.0)
    async with runner:
        await runner.put(balance())
        await runner.flush()
    assert pacer.seen == [
        SinkHealth("down", "SinkUnwritableError: events.db is not writable", 0.0, 1),
        SinkHealth("retrying", "TransportError: locked", 1.0, 2),  # the last error decides
    ]
    assert sink.batches == [(balance(),)]


async def test_a_runner_stopped_by_a_fatal_error_is_failed(balance: BalanceFactory) -> None:
    sink = FailingSink([ValueError("schema mismatch")])
    runner, _ = make(sink, Clock())
    await runner.start()
    await runner.put(balance())
    with pytest.raises(ValueError, match="schema mismatch"):
        await runner.flush()
    assert runner.health == SinkHealth("failed", "ValueError: schema mismatch")
    assert not runner.health.up
    with pytest.raises(ValueError, match="schema mismatch"):
        await runner.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"down_after_attempts": 0}, "down_after_attempts must be a positive integer, not 0"),
        ({"down_after_attempts": 1.5}, "down_after_attempts must be a positive integer, not 1.5"),
        ({"down_after_seconds": 0}, "down_after_seconds must be a positive number, not 0"),
        ({"down_after_seconds": "5"}, "down_after_seconds must be a positive number, not '5'"),
    ],
)
def test_bad_thresholds_are_configuration_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SinkRunner(FailingSink(), **options)  # type: ignore[arg-type]


def test_the_thresholds_come_from_a_flag_or_a_table() -> None:
    flag = parse_sink("sqlite:events.db?down_after_attempts=3&down_after_seconds=0.5")
    table = load_spec(
        {"type": "sqlite", "path": "events.db", "down_after_attempts": 3, "down_after_seconds": 0.5}
    )
    assert flag == table
    assert (flag.down_after_attempts, flag.down_after_seconds) == (3, 0.5)
    redis = parse_sink("redis://u:hunter2@127.0.0.1:6379/0?down_after_seconds=2")
    assert redis.down_after_seconds == 2.0
    assert "hunter2" not in repr(redis)
    with pytest.raises(ConfigurationError, match="down_after_seconds"):
        load_spec({"type": "jsonl", "down_after_seconds": 0})
    with pytest.raises(ConfigurationError, match="down_after_attempts"):
        parse_sink("jsonl:x.jsonl?down_after_attempts=-1")
