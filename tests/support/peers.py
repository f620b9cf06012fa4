"""Scripted peers: an aiohttp app of the test's own served on a free loopback port for one block; reading a
raw connection to its end; polling state that has no signal to await."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web


@asynccontextmanager
async def served(app: web.Application, **runner_options: Any) -> AsyncIterator[str]:
    """`app` listening on a free port of 127.0.0.1 until the block ends; its address, "127.0.0.1:PORT".
    `runner_options` go to aiohttp's AppRunner (shutdown_timeout, access_log, handle_signals)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the peer sends until it closes the connection (a reset counts as closed); TimeoutError after
    `within` seconds."""
    try:
        async with asyncio.timeout(within):
            return await reader.read()
    except ConnectionResetError:
        return b""


async def until(condition: Callable[[], object], within: float, interval: float = 0.005) -> None:
    """Poll `condition` (counters, a picture: state with no signal to await) until it holds; TimeoutError
    after `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - counters without a signal
            await asyncio.sleep(interval)
