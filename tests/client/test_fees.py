"""Fees agree on both sides: what `userstream serve`'s simulated market charged is exactly what the client's
fills say, per asset (Coinlocally's `n` is the commission of one execution, issue 12 section 4)."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

from userstream.client import connect
from userstream.events import Event, Fill
from userstream.fills import FillTracker
from userstream.money import exact_add
from userstream.server.simulator import Market

Lab = Callable[..., AbstractAsyncContextManager[Any]]

STEPS = 250
START_MS = 1_700_000_000_000


def fees_by_asset(fills: list[Fill]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for fill in fills:
        assert fill.fee is not None, fill
        assert fill.fee_asset is not None, fill
        totals[fill.fee_asset] = exact_add(totals.get(fill.fee_asset, Decimal(0)), fill.fee)
    return dict(sorted(totals.items()))


async def client_fills(lab: Lab, exchange: str, market: Market, steps: int) -> list[Fill]:
    """The fills a client on `exchange` makes of what `market` does in `steps` steps, published by serve."""
    published = 0
    async with lab() as env, connect(exchange, **env.options(exchange)) as stream:
        await env.until_streaming()
        for step in range(steps):
            events = market.step(START_MS + step)
            if events:
                published += await env.server.ingest("alice", events)
        received: list[Event] = await env.take(stream, published)
    tracker = FillTracker()
    return [fill for event in received for fill in tracker.feed(event)]


def test_the_simulators_own_events_carry_per_execution_fees() -> None:
    market = Market("alice", random.Random(11))
    tracker = FillTracker()
    fills: list[Fill] = []
    for step in range(STEPS):
        for event in market.step(START_MS + step):
            fills.extend(tracker.feed(event))
    assert len(fills) > 50
    assert all(not fill.derived for fill in fills)  # every execution was reported by itself
    assert fees_by_asset(fills) == market.fees_charged()
    assert set(market.fees_charged()) == {"BTC", "ETH", "XRP", "USDT"}  # buys and sells of every symbol


async def test_a_simulated_session_charges_exactly_the_fees_the_coinlocally_client_reports(lab: Lab) -> None:
    market = Market("alice", random.Random(5))
    fills = await client_fills(lab, "coinlocally", market, STEPS)
    assert len(fills) > 50
    assert all(not fill.derived for fill in fills)
    # The server charged; the client read n per execution: the same total, exactly, in each asset.
    assert fees_by_asset(fills) == market.fees_charged()


async def test_bitmusa_reports_no_fee_so_its_fills_say_none(lab: Lab) -> None:
    market = Market("alice", random.Random(5))
    fills = await client_fills(lab, "bitmusa", market, 60)
    assert fills
    assert {(fill.fee, fill.fee_asset, fill.derived) for fill in fills} == {(None, None, True)}
