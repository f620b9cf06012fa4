"""SqliteSink: exact rows, every key once across restarts, state tables current and never moved backwards,
WAL, exact decimals, append-only events, a locked database retried by the runner, and bad files refused.

Rows are read back with the stdlib's own sqlite3 on a second connection, as any other reader would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from userstream import eventjson
from userstream.errors import ConfigurationError, LocalProtocolError, TransportError
from userstream.events import (
    NOT_IN_SNAPSHOT,
    BalanceUpdate,
    Event,
    Exchange,
    Fill,
    OrderStatus,
    OrderUpdate,
    Side,
    Source,
)
from userstream.sinks import Sink, SinkRunner, SqliteSink, StoredEvent, event_key

BalanceFactory = Callable[..., BalanceUpdate]
OrderFactory = Callable[..., OrderUpdate]
T0 = 1_700_703_548_000


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def event_rows(path: Path) -> list[tuple[Any, ...]]:
    return rows(
        path, "SELECT seq, key, kind, exchange, account, timestamp, source, json FROM events ORDER BY seq"
    )


def expected_row(seq: int, event: Event) -> tuple[Any, ...]:
    return (
        seq,
        event_key(event),
        event.kind,
        event.exchange.value,
        event.account,
        event.timestamp,
        event.source.value,
        eventjson.to_json(event).decode(),
    )


async def write_all(path: Path, *batches: list[Event]) -> None:
    sink = SqliteSink(path)
    await sink.open()
    try:
        for batch in batches:
            await sink.write(batch)
    finally:
        await sink.close()


def test_the_sqlite_sink_is_a_sink(tmp_path: Path) -> None:
    assert isinstance(SqliteSink(tmp_path / "x.db"), Sink)


async def test_events_are_stored_as_exact_rows(
    tmp_path: Path, balance: BalanceFactory, order: OrderFactory
) -> None:
    path = tmp_path / "events.db"
    wallet = balance("USDT", "100.50", "0.25", timestamp=T0)
    placed = order("1001", OrderStatus.OPEN, "0", timestamp=T0 + 1)
    fill = Fill(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=T0 + 2,
        order_id="1001",
        symbol="XRP/USDT",
        side=Side.BUY,
        amount=Decimal("0.5"),
        price=Decimal("0.5"),
        cost=Decimal("0.25"),
        order_filled=Decimal("0.5"),
    )
    await write_all(path, [wallet, placed, fill])
    assert event_rows(path) == [expected_row(1, wallet), expected_row(2, placed), expected_row(3, fill)]
    assert event_rows(path)[0][7] == (
        '{"kind":"balance","exchange":"bitmusa","account":"alice","timestamp":1700703548000,"source":"stream",'
        '"asset":"USDT","free":"100.50","locked":"0.25","total":"100.75"}'
    )
    assert rows(path, "SELECT * FROM balances") == [
        ("bitmusa", "alice", "USDT", "100.50", "0.25", "100.75", T0)
    ]
    assert rows(path, "SELECT * FROM orders") == [
        (
            "coinlocally",
            "alice",
            "1001",
            "XRP/USDT",
            "buy",
            "limit",
            "open",
            "OPEN",
            "0.5",
            "2",
            "0",
            "2",
            None,
            T0 - 1000,
            T0 + 1,
            eventjson.to_json(placed).decode(),
        )
    ]
    assert rows(path, "SELECT * FROM finished_orders") == []


async def test_a_replayed_event_is_written_once_across_two_runs_on_the_same_file(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    first = [balance("USDT", str(index), timestamp=T0 + index) for index in range(3)]
    second = [balance("USDT", str(index), timestamp=T0 + index) for index in range(2, 5)]
    await write_all(path, first, first[1:])  # a retried batch in the same run
    await write_all(path, second)  # a restart that replays the last event of the first run
    assert event_rows(path) == [expected_row(seq, event) for seq, event in enumerate(first + second[1:], 1)]
    assert rows(path, "SELECT free, timestamp FROM balances") == [("4", T0 + 4)]


async def test_reading_back_gives_stored_events_and_the_last_keys(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    events = [balance("USDT", str(index), timestamp=T0 + index) for index in range(4)]
    sink = SqliteSink(path)
    await sink.open()
    await sink.write(events)
    stored = await sink.read_events(after_seq=1, limit=2)
    assert stored == [
        StoredEvent(
            seq=seq,
            key=event_key(event),
            kind="balance",
            exchange="bitmusa",
            account="alice",
            timestamp=event.timestamp,
            source="stream",
            json=eventjson.to_json(event).decode(),
        )
        for seq, event in ((2, events[1]), (3, events[2]))
    ]
    assert [row.event() for row in stored] == events[1:3]
    assert await sink.last_keys(2) == [event_key(events[2]), event_key(events[3])]
    assert len(await sink.read_events()) == 4
    await sink.close()


async def test_the_picture_read_back_is_each_balance_and_each_open_order_of_one_account(
    tmp_path: Path, balance: BalanceFactory, order: OrderFactory
) -> None:
    path = tmp_path / "events.db"
    held = [
        balance("USDT", "1", timestamp=T0, exchange=Exchange.COINLOCALLY),
        balance("BTC", "0.5", "0.25", timestamp=T0 + 2, exchange=Exchange.COINLOCALLY),
        balance("USDT", "2", timestamp=T0 + 3, exchange=Exchange.COINLOCALLY),
        balance("USDT", "9", timestamp=T0, exchange=Exchange.BITMUSA),  # another exchange
        balance("USDT", "9", timestamp=T0, exchange=Exchange.COINLOCALLY, account="bob"),  # another account
        order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 1),
        order("8", OrderStatus.OPEN, "0", timestamp=T0 + 1),
        order("8", OrderStatus.CANCELED, "0", timestamp=T0 + 4),  # ended: not in the picture
    ]
    sink = SqliteSink(path)
    await sink.open()
    await sink.write(held)
    picture = await sink.read_picture(Exchange.COINLOCALLY, "alice")
    await sink.close()
    assert picture == [held[1], held[2], held[5]]  # balances by asset, then open orders by id


async def test_a_balance_never_moves_backwards_in_time(tmp_path: Path, balance: BalanceFactory) -> None:
    path = tmp_path / "events.db"
    newer = balance("BTC", "2", "1", timestamp=T0 + 10)
    older = balance("BTC", "9", "9", timestamp=T0 + 5)
    same_time = balance("BTC", "3", "0", timestamp=T0 + 10)
    await write_all(path, [newer, older])
    assert rows(path, "SELECT free, locked, total, timestamp FROM balances") == [("2", "1", "3", T0 + 10)]
    await write_all(path, [same_time])  # the same time: the later arrival is the later state
    assert rows(path, "SELECT free, locked, total, timestamp FROM balances") == [("3", "0", "3", T0 + 10)]
    assert len(event_rows(path)) == 3  # every fact is kept in events, older ones too


async def test_orders_hold_the_open_ones_current_and_a_finished_order_never_comes_back(
    tmp_path: Path, order: OrderFactory
) -> None:
    path = tmp_path / "events.db"
    placed = order("7", OrderStatus.OPEN, "0", timestamp=T0)
    partly = order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 10)
    stale = order("7", OrderStatus.OPEN, "0.25", timestamp=T0 + 5)  # arrives late
    same_time_less_filled = order("7", OrderStatus.OPEN, "0.4", timestamp=T0 + 10)
    await write_all(path, [placed, partly, stale, same_time_less_filled])
    assert rows(path, "SELECT id, status, filled, remaining, timestamp FROM orders") == [
        ("7", "open", "0.5", "1.5", T0 + 10)
    ]

    canceled = order("7", OrderStatus.CANCELED, "0.5", timestamp=T0 + 20)
    same_time_open = order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 20)  # a tie: the end wins
    late_open = order("7", OrderStatus.OPEN, "0.5", timestamp=T0 + 15)
    await write_all(path, [canceled, same_time_open, late_open])
    assert rows(path, "SELECT * FROM orders") == []
    assert rows(path, "SELECT * FROM finished_orders") == [
        ("coinlocally", "alice", "7", "canceled", "CANCELED", "0.5", T0 + 20)
    ]
    assert len(event_rows(path)) == 7


async def test_an_unknown_status_stays_open_and_a_snapshot_saying_gone_ends_the_order(
    tmp_path: Path, order: OrderFactory
) -> None:
    path = tmp_path / "events.db"
    odd = order("8", None, "0", timestamp=T0, raw_status="PARTIALLY_CANCELED")
    await write_all(path, [odd])
    assert rows(path, "SELECT id, status, raw_status FROM orders") == [("8", None, "PARTIALLY_CANCELED")]
    base = order("8", None, "0", timestamp=T0 + 1, raw_status=NOT_IN_SNAPSHOT)
    gone = OrderUpdate(**{**eventjson_fields(base), "source": Source.SNAPSHOT})
    assert gone.is_final
    await write_all(path, [gone])
    assert rows(path, "SELECT * FROM orders") == []
    assert rows(path, "SELECT * FROM finished_orders") == [
        ("coinlocally", "alice", "8", None, NOT_IN_SNAPSHOT, "0", T0 + 1)
    ]
    assert rows(path, "SELECT source FROM events ORDER BY seq") == [("stream",), ("snapshot",)]


def eventjson_fields(event: OrderUpdate) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


async def test_decimals_are_stored_exactly_beyond_the_default_context(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    tiny_and_huge = balance(
        "SHIB", "12345678901234567890123456789.123456789", "0.000000000000000000000000000001"
    )
    await write_all(path, [tiny_and_huge])
    assert rows(path, "SELECT free, locked, total FROM balances") == [
        (
            "12345678901234567890123456789.123456789",
            "0.000000000000000000000000000001",
            "12345678901234567890123456789.123456789000000000000000000001",  # 30 decimals, exact
        )
    ]


async def test_the_database_is_in_wal_mode_and_events_are_append_only(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    await write_all(path, [balance()])
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "PRAGMA user_version") == [(1,)]
    connection = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="events is append-only"):
            connection.execute("UPDATE events SET account = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="events is append-only"):
            connection.execute("DELETE FROM events")
    finally:
        connection.close()


async def test_a_reader_sees_committed_batches_while_the_sink_is_open(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(path)
    await sink.open()
    await sink.write([balance(timestamp=T0)])
    assert len(event_rows(path)) == 1
    assert (tmp_path / "events.db-wal").exists()
    await sink.write([balance(timestamp=T0 + 1)])
    assert len(event_rows(path)) == 2
    await sink.close()


async def test_a_locked_database_is_transport_trouble_that_the_runner_retries(
    tmp_path: Path, balance: BalanceFactory
) -> None:
    path = tmp_path / "events.db"
    await write_all(path, [])  # create the schema
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock

    sink = SqliteSink(path, busy_timeout=0.01)
    await sink.open()
    with pytest.raises(TransportError, match=r"writing to sqlite:.*events\.db failed: database is locked"):
        await sink.write([balance()])
    await sink.close()

    retries: list[int] = []

    def release_after_first_failure(attempt: int, error: TransportError, delay: float) -> None:
        retries.append(attempt)
        if holder.in_transaction:
            holder.execute("COMMIT")

    async with SinkRunner(
        SqliteSink(path, busy_timeout=0.01), retry_base=0.001, on_retry=release_after_first_failure
    ) as runner:
        await runner.put(balance())
        await runner.flush()
    holder.close()
    assert retries == [1]
    assert event_rows(path) == [expected_row(1, balance())]


async def test_files_it_cannot_use_are_configuration_errors(tmp_path: Path) -> None:
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are not the pages you are looking for\n" * 100)
    with pytest.raises(ConfigurationError, match="cannot use sqlite database"):
        await SqliteSink(not_a_database).open()

    future = tmp_path / "future.db"
    connection = sqlite3.connect(future)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(ConfigurationError, match="has schema version 99; this userstream writes version 1"):
        await SqliteSink(future).open()

    with pytest.raises(ConfigurationError, match="needs a file path"):
        SqliteSink(":memory:")
    with pytest.raises(ConfigurationError, match="synchronous must be"):
        SqliteSink(tmp_path / "x.db", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="is not open"):
        await SqliteSink(tmp_path / "x.db").write([])
