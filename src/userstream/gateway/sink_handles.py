"""The gateway's sinks: each configured sink opened behind its runner, and what it could not take.

This module owns `SinkHandle` (one sink's runner, the events offered after it failed for good, closing it
within the shutdown's bound) and `open_sinks` (every sink of a config opened, its file under the data
directory). A sink's `put` may wait (backpressure): the account's task then stops reading, its client queue
fills, and the stream slows instead of dropping. A sink whose writes keep failing (its runner's `health`:
past its thresholds, or unwritable) is down until a write succeeds again; one that fails for good is marked
failed, and every event it can no longer take is counted as lost. The supervisor (service.py) drives them;
a `GatewaySnapshot` (snapshot.py) reads them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from userstream.events import Event
from userstream.gateway.config import GatewayConfig, sink_in_data_dir
from userstream.sinks.config import JsonlSpec, SinkSpec, SqliteSpec, build_runner
from userstream.sinks.runner import SinkHealth, SinkRunner
from userstream.sinks.sqlite import SqliteSink

__all__ = ["SinkHandle", "open_sinks", "picture_keeper"]

_log = logging.getLogger("userstream.gateway")


class SinkHandle:
    """One configured sink behind its runner, and the events it could not take after it failed."""

    def __init__(self, spec: SinkSpec, runner: SinkRunner) -> None:
        self.spec = spec
        self.runner = runner
        self.lost = 0  # events offered after the sink failed for good

    @property
    def name(self) -> str:
        return self.runner.sink.name

    @property
    def failure(self) -> BaseException | None:
        return self.runner.failure

    @property
    def health(self) -> SinkHealth:
        """Up, retrying, down (failing past its thresholds, or unwritable) or failed for good."""
        return self.runner.health

    @property
    def healthy(self) -> bool:
        return self.runner.health.up

    async def put(self, event: Event) -> None:
        """Hand one event to the runner (waits while it is full: backpressure); count it if it cannot."""
        if self.runner.failure is None:
            try:
                await self.runner.put(event)
            except Exception:  # the runner stopped (it logged why); from here on every event is lost
                _log.error("sink %s failed; events for it are now counted as lost", self.name)
            else:
                return
        self.lost += 1

    async def close(self, within: float) -> None:
        """Write what is pending (for at most `within` seconds), then close; what is left is abandoned."""
        try:
            async with asyncio.timeout(within):
                await self.runner.close()
        except TimeoutError:
            _log.error("sink %s: not flushed within %gs", self.name, within)
        except Exception as exc:  # the error that stopped the runner, already logged by it
            _log.error("sink %s: closed after failing: %s", self.name, exc)


async def open_sinks(config: GatewayConfig, into: list[SinkHandle]) -> None:
    """Open every sink of `config`, in order, appending each to `into` once started (so a caller that
    fails half-way closes those that were opened). A sink named by a relative path is written under the
    data directory, created owner-only when missing."""
    for configured in config.sinks:
        spec = sink_in_data_dir(configured, config.data_dir)
        if spec is not configured and isinstance(spec, JsonlSpec | SqliteSpec):
            _make_directories(config.data_dir, spec.path)
        runner = build_runner(spec)
        await runner.start()
        into.append(SinkHandle(spec, runner))


def picture_keeper(sinks: Sequence[SinkHandle]) -> SqliteSink | None:
    """The first sink that keeps each account's picture across a restart (SQLite), if any."""
    return next((s.runner.sink for s in sinks if isinstance(s.runner.sink, SqliteSink)), None)


def _make_directories(data_dir: str, path: str) -> None:
    """The data directory and the one a sink's file is in, created owner-only (the files hold balances and
    orders) when missing."""
    os.makedirs(os.path.expanduser(data_dir), mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
