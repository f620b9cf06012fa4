"""Scripted peers: an aiohttp app of the test's own, served on a free loopback port for one block."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
