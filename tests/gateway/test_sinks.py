"""A sink that fails for good: reported unhealthy, and every event it can no longer take counted as lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from userstream.events import BalanceUpdate, Event, Exchange
from userstream.gateway.sink_handles import SinkHandle
from userstream.sinks import JsonlSpec, SinkRunner


class BrokenSink:
    """A third-party sink whose every write fails with an error retrying cannot fix."""

    name = "broken"

    async def open(self) -> None:
        return None

    async def write(self, batch: Sequence[Event]) -> None:
        raise RuntimeError("the disk is on fire")

    async def close(self) -> None:
        return None


def balance(n: int) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=1_700_703_548_000 + n,
        asset="USDT",
        free=Decimal(n),
        locked=Decimal(0),
    )


async def test_a_failed_sink_is_unhealthy_and_counts_every_later_event_as_lost() -> None:
    runner = SinkRunner(BrokenSink(), capacity=10)
    await runner.start()
    handle = SinkHandle(JsonlSpec(), runner)
    await handle.put(balance(1))  # accepted; the write fails for good
    async with asyncio.timeout(10):
        while runner.failure is None:  # noqa: ASYNC110 - the runner has no public failure signal
            await asyncio.sleep(0.01)
    assert not handle.healthy
    assert str(handle.failure) == "the disk is on fire"
    await handle.put(balance(2))
    await handle.put(balance(3))
    assert (handle.lost, runner.abandoned) == (2, 1)
    await handle.close(1.0)  # reports, never raises: the gateway still stops cleanly
    assert handle.name == "broken"
