"""A consumer that falls behind: "block" loses nothing and is not mistaken for a dead server; "drop_oldest"
keeps the newest events and reports exactly how many it dropped. The reader survives both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from userstream.client import State, connect
from userstream.events import event_size

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_block_waits_for_the_consumer_and_loses_nothing(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    options = {"queue_size": 2, "ping_interval": 0.1, "idle_timeout": 0.3}
    async with (
        lab() as env,
        connect(exchange, **env.options(exchange, **options), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        await env.ingest([env.balance(n) for n in range(50)])
        # Two events wait in the queue and the reader holds the third, waiting for room.
        await env.until(lambda: stream.stats.events_received == 3)
        # Blocked for three idle timeouts: the waiting reader must not count it as the server's silence.
        await asyncio.sleep(0.9)
        assert stream.stats.events_received == 3
        events = await env.take(stream, 50)
    assert events == [env.expected_balance(n, exchange) for n in range(50)]
    assert recorder.of(State.DISCONNECTED) == []
    assert stream.stats.dropped == 0
    assert stream.stats.connections == 1


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_drop_oldest_keeps_the_newest_and_reports_the_exact_count(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    options = {"queue_size": 5, "overflow": "drop_oldest"}
    async with (
        lab() as env,
        connect(exchange, **env.options(exchange, **options), on_status=recorder) as stream,
    ):
        await env.until_streaming()
        await env.ingest([env.balance(n) for n in range(20)])
        await env.until(lambda: stream.stats.events_received == 20)
        assert recorder.of(State.DROPPED) == []  # reported where the gap is: before the next event
        first = await env.take(stream, 1)
        dropped = recorder.of(State.DROPPED)
        rest = await env.take(stream, 4)
        # The reader is alive and well after the overflow.
        await env.ingest([env.balance(99)])
        after = await env.take(stream, 1)
    assert first + rest == [env.expected_balance(n, exchange) for n in range(15, 20)]
    assert after == [env.expected_balance(99, exchange)]
    assert [(status.dropped, status.reason) for status in dropped] == [(15, "15 events dropped (queue full)")]
    assert stream.stats.dropped == 15


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
@pytest.mark.parametrize("overflow", ["block", "drop_oldest"])
async def test_the_byte_bound_holds_with_the_same_policy_and_exact_counts(
    lab: Lab, recorder: Recorder, exchange: str, overflow: str
) -> None:
    # queue_size leaves room for 1,000 events, queue_bytes for exactly five of these: every event of the
    # sequence 10..29 weighs the same (same lengths everywhere), measured on a probe stream's first one.
    async with lab() as env, connect(exchange, **env.options(exchange)) as probe:
        await env.until_streaming()
        await env.ingest([env.balance(10)])
        (sample,) = await env.take(probe, 1)
        weight = event_size(sample)
        options = {"queue_size": 1000, "queue_bytes": 5 * weight, "overflow": overflow}
        async with connect(exchange, **env.options(exchange, **options), on_status=recorder) as stream:
            await env.until_streaming(2)
            await env.ingest([env.balance(n) for n in range(10, 30)])
            if overflow == "block":  # five queued, the reader holds the sixth, waiting for room
                await env.until(lambda: stream.stats.events_received == 6)
                await asyncio.sleep(0.2)
                assert (stream.stats.events_received, stream.stats.queued) == (6, 5)
            else:
                await env.until(lambda: stream.stats.events_received == 20)
                assert (stream.stats.dropped, stream.stats.queued) == (15, 5)
            assert stream.stats.queued_bytes == 5 * weight
            first = await env.take(stream, 5)
            assert {event_size(event) for event in first} == {weight}
            rest = await env.take(stream, 15) if overflow == "block" else []
    if overflow == "block":
        assert first + rest == [env.expected_balance(n, exchange) for n in range(10, 30)]
        assert (stream.stats.dropped, recorder.of(State.DROPPED)) == (0, [])
    else:
        assert first == [env.expected_balance(n, exchange) for n in range(25, 30)]
        assert [status.dropped for status in recorder.of(State.DROPPED)] == [15]
