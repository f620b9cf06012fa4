"""SqliteSink's batches: a batch leaves exactly the tables its events leave written one at a time (each
balance's and order's last state is the one applied), replays inside a batch change nothing, and each batch
checks the database, its -wal and its -shm once.

Rows are read back with the stdlib's own sqlite3 on a second connection, as any other reader would.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderUpdate
from userstream.server.simulator import Market
from userstream.sinks import SqliteSink, event_key

BalanceFactory = Callable[..., BalanceUpdate]
OrderFactory = Callable[..., OrderUpdate]
T0 = 1_700_703_548_000

TABLES = {
    "events": "SELECT seq, key, kind, exchange, account, timestamp, source, json FROM events ORDER BY seq",
    "balances": "SELECT * FROM balances ORDER BY exchange, account, asset",
    "orders": "SELECT * FROM orders ORDER BY exchange, account, id",
    "finished_orders": "SELECT * FROM finished_orders ORDER BY exchange, account, id",
}


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    connection = sqlite3.connect(path)
    try:
        return {name: connection.execute(query).fetchall() for name, query in TABLES.items()}
    finally:
        connection.close()


async def write(path: Path, batches: Sequence[Sequence[Event]]) -> dict[str, list[tuple[Any, ...]]]:
    sink = SqliteSink(path)
    await sink.open()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()
    return tables(path)


def market_events(steps: int, seed: int) -> tuple[list[Event], list[Market]]:
    """Two simulated accounts (one per exchange), four steps per millisecond so that times tie often."""
    markets = [Market("alice", random.Random(seed)), Market("bob", random.Random(seed + 1))]
    exchanges = [Exchange.BITMUSA, Exchange.COINLOCALLY]
    events: list[Event] = []
    for index, market in enumerate(markets):
        events += [msgspec.structs.replace(e, exchange=exchanges[index]) for e in market.opening_balances(T0)]
    for step in range(steps):
        index = step % 2
        events += [
            msgspec.structs.replace(e, exchange=exchanges[index])
            for e in markets[index].step(T0 + 1 + step // 4)
        ]
    return events, markets


def shuffled_with_replays(events: list[Event], seed: int) -> list[Event]:
    """The stream as a gateway may see it: some events late (moved a few places on), some replayed, and
    some order updates followed by another of the same rank (time, filled, end) that says it differently."""
    rng = random.Random(seed)
    arrived = list(events)
    for at in sorted(rng.sample(range(len(arrived)), len(arrived) // 10), reverse=True):
        event = arrived[at]
        if isinstance(event, OrderUpdate):
            arrived.insert(at + rng.randint(1, 3), msgspec.structs.replace(event, raw_status="RESTATED"))
    for _ in range(len(arrived) // 3):
        at = rng.randrange(len(arrived) - 4)
        arrived.insert(at + rng.randint(1, 4), arrived.pop(at))
    for _ in range(len(arrived) // 10):
        at = rng.randrange(len(arrived))
        arrived.insert(rng.randrange(at, len(arrived) + 1), arrived[at])
    return arrived


def in_batches(events: list[Event], sizes: Sequence[int]) -> list[list[Event]]:
    batches: list[list[Event]] = []
    at = 0
    while at < len(events):
        size = sizes[len(batches) % len(sizes)]
        batches.append(events[at : at + size])
        at += size
    return batches


async def test_in_order_the_tables_hold_each_markets_ledger(tmp_path: Path) -> None:
    events, markets = market_events(600, seed=14)
    written = await write(tmp_path / "events.db", [events])
    assert len(written["events"]) == len(events)
    expected_balances = []
    expected_open = []
    for market, exchange in zip(markets, ("bitmusa", "coinlocally"), strict=True):
        ledger = market.ledger()
        expected_balances += [
            (exchange, market.account, asset, str(free), str(locked), str(free + locked))
            for asset, (free, locked) in sorted(ledger.balances.items())
        ]
        expected_open += [(exchange, market.account, order_id) for order_id in sorted(ledger.open_orders)]
    assert [row[:6] for row in written["balances"]] == expected_balances
    assert [row[:3] for row in written["orders"]] == expected_open
    assert len(written["finished_orders"]) > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_leaves_the_tables_its_events_leave_written_one_at_a_time(
    tmp_path: Path, seed: int
) -> None:
    events, _ = market_events(300, seed=seed)
    arrived = shuffled_with_replays(events, seed)
    one_at_a_time = await write(tmp_path / "one.db", [[event] for event in arrived])
    batched = await write(tmp_path / "batched.db", in_batches(arrived, [500, 1, 7, 50, 3, 120]))
    whole = await write(tmp_path / "whole.db", [arrived])
    assert batched == one_at_a_time
    assert whole == one_at_a_time
    assert len(one_at_a_time["events"]) == len({event_key(event) for event in arrived})  # replays once


async def test_within_a_batch_the_last_of_the_latest_updates_wins_unless_older_than_what_is_held(
    tmp_path: Path, balance: BalanceFactory, order: OrderFactory
) -> None:
    path = tmp_path / "events.db"
    held = balance("BTC", "5", "0", timestamp=T0 + 30)
    await write(path, [[held]])
    older = [balance("BTC", "1", "0", timestamp=T0 + 10), balance("BTC", "2", "0", timestamp=T0 + 20)]
    assert (await write(path, [older]))["balances"] == [("bitmusa", "alice", "BTC", "5", "0", "5", T0 + 30)]
    newer = [
        balance("BTC", "6", "0", timestamp=T0 + 40),
        balance("BTC", "7", "1", timestamp=T0 + 50),
        balance("BTC", "8", "0", timestamp=T0 + 50),  # the same time: the later arrival wins
        balance("BTC", "9", "0", timestamp=T0 + 45),  # late
        held,  # a replay
    ]
    assert (await write(path, [newer]))["balances"] == [("bitmusa", "alice", "BTC", "8", "0", "8", T0 + 50)]

    placed = order("7", OrderStatus.OPEN, "0", timestamp=T0)
    partly = order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 5)
    canceled = order("7", OrderStatus.CANCELED, "0.5", timestamp=T0 + 10)
    open_again = order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 10)  # a tie: the end still wins
    written = await write(path, [[placed, partly, canceled, open_again, placed]])
    assert written["orders"] == []
    assert written["finished_orders"] == [
        ("coinlocally", "alice", "7", "canceled", "CANCELED", "0.5", T0 + 10)
    ]
    assert len(written["events"]) == 1 + 2 + 4 + 4  # each replay once


async def test_each_batch_checks_the_database_its_wal_and_its_shm_once(
    tmp_path: Path, balance: BalanceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    await sink.open()
    checked: list[str] = []
    real_access = os.access

    def access(target: Any, mode: int) -> bool:
        checked.append(str(target))
        return real_access(target, mode)

    monkeypatch.setattr(os, "access", access)
    try:
        await sink.write([balance(timestamp=T0), balance(timestamp=T0 + 1)])
        await sink.write([balance(timestamp=T0 + 2)])
    finally:
        monkeypatch.undo()
        await sink.close()
    assert checked == [str(path), f"{path}-wal", f"{path}-shm"] * 2
