"""`connect(..., fills=True)`: each `Fill` an order update reveals comes right after that update, against
`userstream serve`, with exact values (Coinlocally reports each execution; Bitmusa's are derived)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import msgspec

from userstream import Fill, OrderStatus, OrderUpdate, connect
from userstream.events import Event, Exchange, Side
from userstream.fills import FillTracker
from userstream.server.simulator import Market

Lab = Callable[..., AbstractAsyncContextManager[Any]]

BASE_TIME = 1_700_703_548_000


def partly_filled(env: Any, exchange: str) -> list[OrderUpdate]:
    """C1 (buy 1 BTC at 13000) opens, fills 0.4, then the other 0.6."""
    opened = env.expected_order(1, exchange)
    coinlocally = exchange == "coinlocally"
    partial = msgspec.structs.replace(
        opened,
        timestamp=BASE_TIME + 2,
        raw_status="PARTIALLY_FILLED" if coinlocally else "TRADING",
        filled=Decimal("0.4"),
        remaining=Decimal("0.6"),
        cost=Decimal("5200"),
        last_fill_amount=Decimal("0.4") if coinlocally else None,
        last_fill_price=Decimal("13000") if coinlocally else None,
        fee=Decimal("0.0004") if coinlocally else None,
    )
    closed = msgspec.structs.replace(
        partial,
        timestamp=BASE_TIME + 3,
        status=OrderStatus.CLOSED,
        raw_status="FILLED" if coinlocally else "COMPLETED",
        filled=Decimal("1"),
        remaining=Decimal("0"),
        cost=Decimal("13000"),
        last_fill_amount=Decimal("0.6") if coinlocally else None,
        fee=Decimal("0.0006") if coinlocally else None,
    )
    return [opened, partial, closed]


def fill(exchange: str, timestamp: int, amount: str, filled: str, fee: str | None) -> Fill:
    coinlocally = exchange == "coinlocally"
    return Fill(
        exchange=Exchange(exchange),
        account="alice",
        timestamp=timestamp,
        order_id="C1",
        symbol="BTC/USDT",
        side=Side.BUY,
        amount=Decimal(amount),
        price=Decimal("13000"),
        cost=Decimal(amount) * 13000,
        fee=None if fee is None else Decimal(fee),
        fee_asset="BTC" if coinlocally else None,  # a buy pays its commission in the base asset
        order_filled=Decimal(filled),
        derived=not coinlocally,
    )


def shape(event: Event) -> tuple[object, ...]:
    if isinstance(event, OrderUpdate):
        return ("order", event.id, event.status, str(event.filled))
    if isinstance(event, Fill):
        return ("fill", event.order_id, str(event.amount), str(event.price), str(event.cost), str(event.fee))
    return ("balance", event.asset)


async def test_coinlocally_fills_come_right_after_their_updates_exactly_as_reported(lab: Lab) -> None:
    async with lab() as env, connect("coinlocally", **env.options("coinlocally"), fills=True) as stream:
        await env.until_streaming()
        await env.ingest([*partly_filled(env, "coinlocally"), env.balance(4)])
        received = await env.take(stream, 6)
    assert [shape(event) for event in received] == [
        ("order", "C1", OrderStatus.OPEN, "0"),
        ("order", "C1", OrderStatus.OPEN, "0.4"),
        ("fill", "C1", "0.4", "13000", "5200.0", "0.0004"),
        ("order", "C1", OrderStatus.CLOSED, "1"),
        ("fill", "C1", "0.6", "13000", "7800.0", "0.0006"),
        ("balance", "USDT"),
    ]
    assert received[2] == fill("coinlocally", BASE_TIME + 2, "0.4", "0.4", "0.0004")
    assert received[4] == fill("coinlocally", BASE_TIME + 3, "0.6", "1", "0.0006")
    assert stream.stats.events_delivered == 6  # fills are delivered events
    assert stream.stats.events_received == 4  # ... but not received ones


async def test_bitmusa_fills_are_derived_from_the_growth_and_come_right_after_their_updates(lab: Lab) -> None:
    async with lab() as env, connect("bitmusa", **env.options("bitmusa"), fills=True) as stream:
        await env.until_streaming()
        await env.ingest(partly_filled(env, "bitmusa"))
        received = await env.take(stream, 5)
    assert [shape(event) for event in received] == [
        ("order", "C1", OrderStatus.OPEN, "0"),
        ("order", "C1", OrderStatus.OPEN, "0.4"),
        # a derived price is cost / amount (money.exact_div), whose exponent is the quotient's
        ("fill", "C1", "0.4", "13000", "5200", "None"),
        ("order", "C1", OrderStatus.CLOSED, "1"),
        ("fill", "C1", "0.6", "13000", "7800", "None"),
    ]
    assert received[2] == fill("bitmusa", BASE_TIME + 2, "0.4", "0.4", None)
    assert received[4] == fill("bitmusa", BASE_TIME + 3, "0.6", "1", None)


async def test_without_fills_the_stream_has_none(lab: Lab) -> None:
    async with lab() as env, connect("coinlocally", **env.options("coinlocally")) as stream:
        await env.until_streaming()
        await env.ingest([*partly_filled(env, "coinlocally"), env.balance(4)])
        received = await env.take(stream, 4)
    assert [type(event).__name__ for event in received] == ["OrderUpdate"] * 3 + ["BalanceUpdate"]


async def test_a_simulated_session_interleaves_every_fill_after_its_update(lab: Lab) -> None:
    market = Market("alice", random.Random(7))
    published = 0
    async with lab() as env, connect("coinlocally", **env.options("coinlocally"), fills=True) as stream:
        await env.until_streaming()
        for step in range(120):
            events = market.step(1_700_000_000_000 + step)
            if events:
                published += await env.server.ingest("alice", events)
        # what the stream must yield: each update the server sent, then the fills a tracker finds in it
        tracker = FillTracker()
        received: list[Event] = []
        expected: list[Event] = []
        updates = 0
        while updates < published or len(received) < len(expected):
            (event,) = await env.take(stream, 1)
            received.append(event)
            if not isinstance(event, Fill):
                updates += 1
                expected += [event, *tracker.feed(event)]
    assert received == expected
    assert [event.raw for event in received] == [event.raw for event in expected]
    assert sum(isinstance(event, Fill) for event in received) > 30
    assert market.fees_charged() == _fees(received)


def _fees(events: list[Event]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for event in events:
        if isinstance(event, Fill):
            assert event.fee is not None
            assert event.fee_asset is not None
            totals[event.fee_asset] = totals.get(event.fee_asset, Decimal(0)) + event.fee
    return dict(sorted(totals.items()))


async def test_watch_fills_prints_each_fill_after_its_update(lab: Lab) -> None:
    async with lab() as env:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
        environment["USERSTREAM_COINLOCALLY_TOKEN"] = env.alice.coinlocally_token
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "userstream", "watch", "coinlocally", "--ws-url", env.coinlocally_url, "--fills"),
            *("--backoff-base", "0.01", "--ping-interval", "1", "--idle-timeout", "5"),
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        async with asyncio.timeout(10):
            await env.until_streaming()
            await env.ingest(partly_filled(env, "coinlocally"))
            lines = [json.loads(await process.stdout.readline()) for _ in range(5)]
            process.send_signal(signal.SIGINT)
            _, stderr = await process.communicate()
    assert [line["kind"] for line in lines] == ["order", "order", "fill", "order", "fill"]
    described = [(line["amount"], line["price"], line["fee"], line["fee_asset"]) for line in lines[2::2]]
    assert described == [("0.4", "13000", "0.0004", "BTC"), ("0.6", "13000", "0.0006", "BTC")]
    assert process.returncode == 0, stderr
