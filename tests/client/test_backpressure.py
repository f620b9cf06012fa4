"""A consumer that falls behind: "block" loses nothing and is not mistaken for a dead server; "drop_oldest"
keeps the newest events and reports exactly how many it dropped. The reader survives both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from userstream.client import State, connect

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
