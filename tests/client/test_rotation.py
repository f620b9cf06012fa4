"""Planned rotation under a continuous flow of events: zero lost, zero duplicated, in order; and the
de-duplication never touches genuine repeats outside the overlap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from userstream.client import State, connect
from userstream.events import Event

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]
Recorder = Any  # conftest.Recorder

ROTATIONS = 3


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
@pytest.mark.parametrize(
    "pace",  # (queue_size, producer_delay, consumer_delay)
    [(10_000, 0.002, 0.0), (3, 0.004, 0.005)],
    ids=["fast-consumer", "slow-consumer"],
)
async def test_rotations_under_a_continuous_flow_lose_and_duplicate_nothing(
    lab: Lab, recorder: Recorder, exchange: str, pace: tuple[int, float, float]
) -> None:
    queue_size, producer_delay, consumer_delay = pace
    sent: list[int] = []
    received: list[Event] = []

    async with (
        lab() as env,
        connect(
            exchange,
            **env.options(exchange, rotate_after=0.5, queue_size=queue_size),
            on_status=recorder,
        ) as stream,
    ):
        await env.until_streaming()

        async def produce() -> None:
            n = 0
            while len(recorder.of(State.ROTATED)) < ROTATIONS:
                await env.ingest([env.balance(n)])
                sent.append(n)
                n += 1
                await asyncio.sleep(producer_delay)

        async def consume() -> None:
            async for event in stream:
                received.append(event)
                if consumer_delay:  # a consumer slower than the flow: the "block" policy holds the reader
                    await asyncio.sleep(consumer_delay)

        async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
            consumer = tasks.create_task(consume())
            await produce()
            # After the last rotation the new connection alone is live: one more event marks the end.
            marker = len(sent)
            await env.ingest([env.balance(marker)])
            sent.append(marker)
            await env.until(lambda: len(received) >= len(sent))
            consumer.cancel()
        stats = stream.stats

    assert received == [env.expected_balance(n, exchange) for n in sent]
    assert len(sent) > 100
    # A slow consumer keeps the flow going while the backlog drains, so more rotations may follow.
    rotated = recorder.of(State.ROTATED)
    assert len(rotated) >= ROTATIONS
    assert [(status.connection, status.reason) for status in rotated] == [
        (serial + 1, f"replaced connection {serial}") for serial in range(1, len(rotated) + 1)
    ]
    assert recorder.of(State.DISCONNECTED) == []
    assert stats.events_received == len(sent) + stats.duplicates_suppressed
    assert stats.duplicates_suppressed >= 1  # the overlaps really overlapped


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_a_quiet_rotation_hands_over_after_the_overlap_timeout(
    lab: Lab, recorder: Recorder, exchange: str
) -> None:
    options = {"rotate_after": 0.3, "overlap_timeout": 0.1}
    async with (
        lab() as env,
        connect(exchange, **env.options(exchange, **options), on_status=recorder) as stream,
    ):
        await recorder.wait_for(State.ROTATED)
        await env.until_streaming()
        await env.until(lambda: env.server.streams("alice") == 1)
        await env.ingest([env.balance(1)])
        events = await env.take(stream, 1)
    assert events == [env.expected_balance(1, exchange)]
    assert recorder.of(State.ROTATED)[0].connection == 2


@pytest.mark.parametrize("exchange", ["bitmusa", "coinlocally"])
async def test_genuine_repeats_outside_an_overlap_are_all_delivered(lab: Lab, exchange: str) -> None:
    async with lab() as env, connect(exchange, **env.options(exchange)) as stream:
        await env.until_streaming()
        await env.ingest([env.balance(1), env.balance(1), env.order(2), env.order(2), env.balance(1)])
        events = await env.take(stream, 5)
    once, order = env.expected_balance(1, exchange), env.expected_order(2, exchange)
    assert events == [once, once, order, order, once]
    assert stream.stats.duplicates_suppressed == 0
