"""The simulated market: consistent balances and orders, reproducible by seed, and its ledger is the truth."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any

import pytest

from userstream.events import BalanceUpdate, Event, OrderStatus, OrderUpdate, Side
from userstream.money import exact_add
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import DataEvents
from userstream.server.simulator import INSTRUMENTS, Ledger, Market, Simulator

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]

STEPS = 600
_SYMBOLS = {instrument.symbol: instrument for instrument in INSTRUMENTS}


def locked_by_orders(ledger: Ledger) -> dict[str, Decimal]:
    """What the open orders lock, per asset: remaining * price in quote for buys, remaining base for sells."""
    locked = dict.fromkeys(ledger.balances, Decimal(0))
    for order in ledger.open_orders.values():
        instrument = _SYMBOLS[order.symbol]
        assert order.price is not None
        if order.side is Side.BUY:
            locked[instrument.quote] = exact_add(locked[instrument.quote], order.remaining * order.price)
        else:
            locked[instrument.base] = exact_add(locked[instrument.base], order.remaining)
    return locked


def essence(ledger: Ledger) -> tuple[object, ...]:
    """What every dialect carries of a ledger: balances, and each open order's side, price and progress."""
    orders = {
        order_id: (order.symbol, order.side, order.price, order.amount, order.filled)
        for order_id, order in ledger.open_orders.items()
    }
    return ledger.balances, orders


def replay(events: list[Event], ledger: Ledger) -> Ledger:
    """Fold published events into the state a client would hold, starting from `ledger`."""
    balances = dict(ledger.balances)
    orders = dict(ledger.open_orders)
    for event in events:
        if isinstance(event, BalanceUpdate):
            balances[event.asset] = (event.free, event.locked)
        elif event.status is OrderStatus.OPEN:
            orders[event.id] = event
        else:
            orders.pop(event.id, None)
    return Ledger(balances=balances, open_orders=orders)


def test_a_few_hundred_steps_keep_every_invariant() -> None:
    market = Market("alice", random.Random(7))
    seen = {"place": 0, "partial": 0, "full": 0, "cancel": 0}
    for step in range(STEPS):
        events = market.step(now_ms=1_700_000_000_000 + step)
        ledger = market.ledger()
        for asset, (free, locked) in ledger.balances.items():
            assert free >= 0, (step, asset)
            assert locked >= 0, (step, asset)
        assert {asset: locked for asset, (_, locked) in ledger.balances.items()} == locked_by_orders(ledger)
        for event in events:
            assert event.account == "alice"
            assert event.timestamp == 1_700_000_000_000 + step
        orders = [event for event in events if isinstance(event, OrderUpdate)]
        if orders:
            (order,) = orders
            assert order.remaining == order.amount - order.filled
            assert order.filled <= order.amount
            if order.status is OrderStatus.CANCELED:
                seen["cancel"] += 1
            elif order.status is OrderStatus.CLOSED:
                seen["full"] += 1
            elif order.filled == 0:
                seen["place"] += 1
            else:
                seen["partial"] += 1
    assert all(count > 20 for count in seen.values()), seen


def test_the_events_describe_the_ledger_exactly() -> None:
    market = Market("alice", random.Random(11))
    start = market.ledger()
    opening = market.opening_balances(now_ms=1)
    assert [(e.asset, e.free, e.locked) for e in opening if isinstance(e, BalanceUpdate)] == [
        (asset, free, locked) for asset, (free, locked) in start.balances.items()
    ]
    published: list[Event] = []
    for step in range(STEPS):
        published += market.step(now_ms=step)
    assert replay(published, start) == market.ledger()


def test_a_fill_moves_funds_between_assets_and_a_cancel_releases_them() -> None:
    market = Market("alice", random.Random(3))
    before = market.ledger()
    for step in range(STEPS):
        events = market.step(now_ms=step)
        after = market.ledger()
        orders = [event for event in events if isinstance(event, OrderUpdate)]
        if orders and orders[0].last_fill_amount is not None:
            fill = orders[0]
            instrument = _SYMBOLS[fill.symbol]
            assert fill.last_fill_price == fill.price
            value = fill.last_fill_amount * fill.last_fill_price
            base_before, base_after = before.balances[instrument.base], after.balances[instrument.base]
            quote_before, quote_after = before.balances[instrument.quote], after.balances[instrument.quote]
            if fill.side is Side.BUY:
                assert quote_after[1] == quote_before[1] - value  # locked quote spent
                assert base_after[0] > base_before[0]  # base received, less the fee
            else:
                assert base_after[1] == base_before[1] - fill.last_fill_amount
                assert quote_after[0] > quote_before[0]
        if orders and orders[0].status is OrderStatus.CANCELED:
            (asset, (free_after, locked_after)) = next(
                (asset, after.balances[asset])
                for asset in after.balances
                if after.balances[asset] != before.balances[asset]
            )
            free_before, locked_before = before.balances[asset]
            assert free_after + locked_after == free_before + locked_before  # only moved, none lost
            assert locked_after < locked_before
        before = after


def test_the_same_seed_gives_the_same_market() -> None:
    def run(seed: int) -> list[tuple[str, list[Event]]]:
        simulator = Simulator(["alice", "bob"], rate=100, seed=seed)
        return [simulator.step(now_ms=step) for step in range(200)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_accounts_have_their_own_order_ids() -> None:
    simulator = Simulator(["alice", "bob"], rate=100, seed=1)
    ids: dict[str, set[str]] = {"alice": set(), "bob": set()}
    for step in range(300):
        account, events = simulator.step(now_ms=step)
        ids[account] |= {event.id for event in events if isinstance(event, OrderUpdate)}
    assert ids["alice"]
    assert ids["bob"]
    assert ids["alice"].isdisjoint(ids["bob"])


async def test_the_served_simulation_reaches_both_dialects_and_parses_back(start: Start) -> None:
    async with start(simulate_rate=400.0, seed=1) as kit:
        key = await kit.create_listen_key()
        async with (
            kit.bitmusa_stream(key) as bitmusa_ws,
            kit.coinlocally_stream({"token": "alice-coinlocally-token"}) as coinlocally_ws,
        ):
            await kit.subscribe(coinlocally_ws, "alice-coinlocally-token")
            bitmusa_parser = bitmusa.Parser(account="alice")
            coinlocally_parser = coinlocally.Parser(account="alice")
            for _ in range(60):
                assert isinstance(bitmusa_parser(await kit.recv(bitmusa_ws)), DataEvents)
                assert isinstance(coinlocally_parser(await kit.recv(coinlocally_ws)), DataEvents)
        ledger = kit.server.ledger("alice")
        assert set(ledger.balances) == {"BTC", "ETH", "USDT", "XRP"}
        assert all(free >= 0 and locked >= 0 for free, locked in ledger.balances.values())
        health = await kit.rest("GET", {}, path="/healthz")
        assert health[1]["simulating"] is True


async def test_ledger_needs_a_simulator(kit: Kit) -> None:
    with pytest.raises(
        RuntimeError, match=r"^the server runs without a simulator \(simulate_rate is None\)$"
    ):
        kit.server.ledger("alice")


def test_a_snapshot_folds_into_the_ledger_from_nothing() -> None:
    market = Market("alice", random.Random(2))
    for step in range(STEPS):
        market.step(now_ms=step)
    empty = Ledger(balances={})
    assert replay(market.snapshot(now_ms=STEPS), empty) == market.ledger()
    assert market.ledger().open_orders  # the snapshot did carry orders


async def test_pause_holds_the_ledger_still_and_a_snapshot_reaches_a_late_stream(start: Start) -> None:
    async with start(simulate_rate=400.0, seed=4) as kit:
        key = await kit.create_listen_key()
        async with kit.bitmusa_stream(key) as ws:
            await kit.recv(ws)  # the market is moving
            published = kit.server.pause_simulation()
            assert published > 0
            ledger = kit.server.ledger("alice")
            count = await kit.server.publish_snapshot("alice")
            assert count == len(ledger.balances) + len(ledger.open_orders)
            parser = bitmusa.Parser(account="alice")
            seen: list[Event] = []
            # frames published before the pause come first; the snapshot's are the last `count` events
            async with asyncio.timeout(5):
                while len(seen) < count or essence(replay(seen[-count:], Ledger(balances={}))) != essence(
                    ledger
                ):
                    incoming = parser(await kit.recv(ws))
                    assert isinstance(incoming, DataEvents)
                    seen.extend(incoming.events)
            assert kit.server.ledger("alice") == ledger  # paused: nothing moved meanwhile
            kit.server.resume_simulation()
            await kit.recv(ws)  # and it moves again
