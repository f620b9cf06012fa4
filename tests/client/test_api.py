"""The public shapes of the client: the callback form, the status iterator, counters and reprs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from userstream import client
from userstream.client import State, StatusEvent, connect, run
from userstream.errors import AuthenticationError
from userstream.events import Event

Env = Any  # conftest.Env
Lab = Callable[..., AbstractAsyncContextManager[Any]]


def test_the_client_package_exports_a_sorted_explicit_api() -> None:
    assert client.__all__ == sorted(client.__all__)
    assert client.__all__ == [
        "Overflow",
        "State",
        "StatusEvent",
        "StreamOptions",
        "StreamStats",
        "UserStream",
        "connect",
        "run",
    ]


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_run_calls_back_for_every_event_until_cancelled(lab: Lab, asynchronous: bool) -> None:
    received: list[Event] = []
    enough = asyncio.Event()

    def remember(event: Event) -> None:
        received.append(event)
        if len(received) == 3:
            enough.set()

    async def remember_async(event: Event) -> None:
        await asyncio.sleep(0)
        remember(event)

    async with lab() as env:
        callback = remember_async if asynchronous else remember
        runner = asyncio.create_task(run("coinlocally", on_event=callback, **env.options("coinlocally")))
        try:
            await env.until_streaming()
            await env.ingest([env.balance(1), env.order(2), env.balance(3)])
            async with asyncio.timeout(10):
                await enough.wait()
        finally:
            runner.cancel()
            await asyncio.wait([runner])
    assert received == [
        env.expected_balance(1, "coinlocally"),
        env.expected_order(2, "coinlocally"),
        env.expected_balance(3, "coinlocally"),
    ]
    assert runner.cancelled()


async def test_run_raises_the_fatal_error(lab: Lab) -> None:
    async with lab() as env:
        options = env.options("bitmusa", api_key="nobody")
        with pytest.raises(AuthenticationError):
            async with asyncio.timeout(10):
                await run("bitmusa", on_event=lambda event: None, **options)


async def test_statuses_iterates_what_happened_and_ends_with_the_stream(lab: Lab) -> None:
    seen: list[StatusEvent] = []
    async with lab() as env:
        stream = connect("coinlocally", **env.options("coinlocally"))
        async with stream:

            async def watch() -> None:
                async for status in stream.statuses():
                    seen.append(status)

            async with asyncio.TaskGroup() as tasks:
                watcher = tasks.create_task(watch())
                await env.until_streaming()
                await env.until(lambda: len(seen) == 3)
                await stream.aclose()
                async with asyncio.timeout(10):
                    await watcher  # the iterator ends when the stream is closed
    assert [status.state for status in seen] == [State.CONNECTING, State.CONNECTED, State.SUBSCRIBED]
    assert [status.connection for status in seen] == [1, 1, 1]


async def test_counters_and_repr(lab: Lab) -> None:
    async with lab() as env, connect("bitmusa", **env.options("bitmusa")) as stream:
        await env.until_streaming()
        await env.ingest([env.balance(1), env.balance(2)])
        await env.take(stream, 2)
        stats = stream.stats
        assert repr(stream) == "UserStream(exchange='bitmusa', account='alice', running=True)"
    assert (stats.connections, stats.events_received, stats.events_delivered) == (1, 2, 2)
    assert (stats.duplicates_suppressed, stats.dropped, stats.unknown_frames) == (0, 0, 0)
    assert repr(stream) == "UserStream(exchange='bitmusa', account='alice', running=False)"
    with pytest.raises(RuntimeError, match="started once"):
        stream.start()
