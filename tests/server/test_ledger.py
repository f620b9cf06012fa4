"""The ledger of what serve sent, and its audit of what a client delivered.

The pure parts (`Runs`, the loss classification) are checked on records built by hand; what the server
records is checked against real streams held by a third-party client (websockets), whose frames are parsed
with the protocol modules' parsers into the events a client would deliver.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import (
    BalanceUpdate,
    Event,
    Exchange,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
)
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.messages import DataEvents
from userstream.server.ledger import Ending, Loss, LossReason, Runs, SentLedger, fact
from userstream.server.run import LedgerNotKeptError

Kit = Any  # the `kit` fixture of conftest.py


@pytest.fixture
async def kit(start: Any) -> AsyncIterator[Any]:
    """conftest's `kit`, with the ledger of what was sent kept (`ServerConfig.ledger`, off by default)."""
    async with start(ledger=True) as kit:
        yield kit


ALICE_TOKEN = {"token": "alice-coinlocally-token"}


def balance(asset: str, free: str, timestamp: int = 1_700_000_000_000) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=timestamp,
        asset=asset,
        free=Decimal(free),
        locked=Decimal(0),
    )


# --- pure parts ---------------------------------------------------------------------------------------------


def test_runs_keep_unbroken_stretches_as_one_run() -> None:
    runs = Runs()
    for seqs in (range(1, 4), range(4, 5), range(7, 9), range(2, 6), range(12, 13), range(9, 11)):
        runs.add(seqs)
    assert runs.runs() == [(1, 5), (7, 10), (12, 12)]
    assert runs.count == 10
    assert [seq in runs for seq in (0, 1, 5, 6, 7, 10, 11, 12, 13)] == [
        False,
        True,
        True,
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    assert (runs.first, runs.last) == (1, 12)


def test_the_fact_of_an_event_ignores_labels_raw_fields_and_dialect_only_fields() -> None:
    published = OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=5,
        id="9",
        symbol="BTC/USDT",
        raw_symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT_PRICE",
        status=OrderStatus.OPEN,
        raw_status="TRADING",
        price=Decimal("100.0"),
        amount=Decimal(1),
        filled=Decimal("0.5"),
        remaining=Decimal("0.5"),
        cost=Decimal(50),
    )
    parsed = OrderUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice-coinlocally",
        timestamp=5,
        id="9",
        symbol="BTC/USDT",
        raw_symbol="BTCUSDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT",
        status=OrderStatus.OPEN,
        raw_status="PART_FILLED",
        price=Decimal(100),
        amount=Decimal("1.000"),
        filled=Decimal("0.50"),
        remaining=Decimal("0.500"),
        cost=Decimal("50.0"),
        last_fill_amount=Decimal(0),
        fee=Decimal(0),
    )
    assert fact(published) == fact(parsed)


def test_each_lost_event_is_classified_by_where_the_ledger_last_saw_it() -> None:
    ledger = SentLedger()
    events = [balance("USDT", str(n), timestamp=n) for n in range(1, 8)]
    ledger.published("alice", events[:1], now=1.0)  # 1: before any connection, not audited
    clean = ledger.open("alice", Exchange.BITMUSA, now=2.0)
    clean.live_changed(True, 2.0)
    broken = ledger.open("alice", Exchange.BITMUSA, now=2.0)
    broken.live_changed(True, 2.0)
    ledger.published("alice", events[1:6], now=3.0)  # 2..6
    clean.queued.add(range(2, 5))
    clean.written.add(range(2, 4))  # 4 queued, never written
    broken.queued.add(range(5, 7))
    broken.written.add(range(5, 7))
    ledger.ended(clean, Ending.CLIENT_CLOSE, 1000, now=4.0)
    broken.faults.append("drop")
    ledger.ended(broken, Ending.ABORTED, None, now=4.5)
    ledger.published("alice", events[6:], now=5.0)  # 7: nothing live any more
    audit = ledger.audit("alice", Exchange.BITMUSA, [events[1]], now=6.0)
    assert audit.audited == range(2, 8)
    assert audit.lost == (
        Loss(3, LossReason.UNEXPLAINED, clean.serial, "client_close 1000"),
        Loss(4, LossReason.DISCARDED, clean.serial, "client_close 1000"),
        Loss(5, LossReason.IN_FLIGHT, broken.serial, "aborted after fault drop"),
        Loss(6, LossReason.IN_FLIGHT, broken.serial, "aborted after fault drop"),
        Loss(7, LossReason.NO_LIVE_CONNECTION, None, None),
    )
    assert audit.lost_by_reason() == {
        "unexplained": 1,
        "discarded": 1,
        "in_flight": 2,
        "no_live_connection": 1,
    }
    assert audit.longest_lost_run == 5
    assert audit.longest_outage == pytest.approx(1.5)  # from 4.5, when the last one ended, to 6.0
    assert audit.rotations == ()  # `clean` closed while `broken` was live, but `broken` is not younger


@pytest.mark.parametrize("successor_breaks", [True, False])
def test_a_rotation_answers_only_for_what_no_broken_connection_explains(successor_breaks: bool) -> None:
    ledger = SentLedger()
    events = [balance("USDT", str(n), timestamp=n) for n in range(1, 4)]
    old = ledger.open("alice", Exchange.BITMUSA, now=0.0)
    old.live_changed(True, 0.0)
    ledger.published("alice", events[:1], now=1.0)
    old.queued.add(range(1, 2))
    old.written.add(range(1, 2))
    new = ledger.open("alice", Exchange.BITMUSA, now=2.0)
    new.live_changed(True, 2.0)
    ledger.published("alice", events[1:2], now=2.5)  # the overlap: on both
    for record in (old, new):
        record.queued.add(range(2, 3))
        record.written.add(range(2, 3))
    ledger.ended(old, Ending.CLIENT_CLOSE, 1000, now=3.0)
    ledger.published("alice", events[2:], now=3.5)  # after the hand-over: on the successor only
    new.queued.add(range(3, 4))
    if successor_breaks:  # a drop right after the hand-over: a gap of its own, for a resync
        new.faults.append("drop")
        ledger.ended(new, Ending.ABORTED, None, now=4.0)
    (rotation,) = ledger.audit("alice", Exchange.BITMUSA, events[:2], now=5.0).rotations
    assert (rotation.old, rotation.new, rotation.seqs) == (old.serial, new.serial, (1, 2, 3))
    assert rotation.lost == (() if successor_breaks else (3,))


def test_matching_follows_publish_order_and_counts_extra_copies_and_strangers() -> None:
    ledger = SentLedger()
    record = ledger.open("alice", Exchange.COINLOCALLY, now=0.0)
    events = [balance("USDT", "1", 1), balance("USDT", "2", 2), balance("USDT", "1", 3)]
    ledger.published("alice", events, now=1.0)
    snapshot = BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=9,
        asset="XRP",
        free=Decimal(1),
        locked=Decimal(0),
        source=Source.SNAPSHOT,
    )
    stranger = balance("BTC", "1", 1)
    delivered = [events[0], events[1], snapshot, events[1], events[2], stranger, events[2]]
    audit = ledger.audit("alice", Exchange.COINLOCALLY, delivered, now=2.0)
    assert (audit.delivered, audit.matched, audit.duplicates) == (6, 3, (2, 3))
    assert audit.unmatched == (stranger,)
    assert audit.lost == ()
    assert record.serial == 1


# --- what the server records -------------------------------------------------------------------------------


def parsed(frames: list[str | bytes], exchange: Exchange) -> list[Event]:
    parser = bitmusa.Parser("alice-bitmusa") if exchange is Exchange.BITMUSA else coinlocally.Parser()
    events: list[Event] = []
    for frame in frames:
        message = parser(frame)
        if isinstance(message, DataEvents):
            events.extend(message.events)
    return events


async def test_the_ledger_records_what_each_connection_was_sent_and_how_it_ended(kit: Kit) -> None:
    key = await kit.create_listen_key()
    bitmusa_ws = await kit.bitmusa_stream(key)
    coinlocally_ws = await kit.coinlocally_stream(ALICE_TOKEN)
    await kit.subscribe(coinlocally_ws, ALICE_TOKEN["token"])
    await kit.server.wait_for_streams("alice", 2)
    moment = 1_700_703_548_846
    batch = [kit.balance("BTC", timestamp=moment), kit.balance("USDT", timestamp=moment), kit.order("7")]
    await kit.ingest("alice", batch)
    bitmusa_frames = [await kit.recv(bitmusa_ws) for _ in range(3)]
    coinlocally_frames = [await kit.recv(coinlocally_ws) for _ in range(2)]  # the balances share a frame
    assert len(gzip.decompress(coinlocally_frames[0])) > 0
    await bitmusa_ws.close()
    await kit.server.drop("alice")
    sent = kit.server.sent
    (on_bitmusa,) = sent.connections("alice", Exchange.BITMUSA)
    (on_coinlocally,) = sent.connections("alice", Exchange.COINLOCALLY)
    await kit.server.server.hub.wait_until(lambda: kit.server.streams("alice") == 0)
    await kit.server.server.hub.wait_until(lambda: on_coinlocally.ending is not None)
    assert (on_bitmusa.queued.runs(), on_bitmusa.written.runs()) == ([(1, 3)], [(1, 3)])
    assert (on_coinlocally.queued.runs(), on_coinlocally.written.runs()) == ([(1, 3)], [(1, 3)])
    assert (on_bitmusa.ending, on_bitmusa.close_code) == (Ending.CLIENT_CLOSE, 1000)
    assert (on_coinlocally.ending, on_coinlocally.close_code) == (Ending.ABORTED, None)
    assert sent.published_count("alice") == 3
    for exchange, frames in ((Exchange.BITMUSA, bitmusa_frames), (Exchange.COINLOCALLY, coinlocally_frames)):
        audit = sent.audit("alice", exchange, parsed(frames, exchange), now=0.0)
        assert (audit.delivered, audit.matched, audit.lost, audit.duplicates) == (3, 3, (), ())


async def test_a_rotation_is_the_client_closing_one_connection_while_its_successor_is_live(kit: Kit) -> None:
    key = await kit.create_listen_key()
    old = await kit.bitmusa_stream(key)
    await kit.server.wait_for_streams("alice", 1)
    await kit.ingest("alice", [kit.balance("A", timestamp=1)])
    new = await kit.bitmusa_stream(key)
    await kit.server.wait_for_streams("alice", 2)
    await kit.ingest("alice", [kit.balance("B", timestamp=2)])
    frames = [await kit.recv(old), await kit.recv(old)]
    await old.close()
    await kit.server.server.hub.wait_until(lambda: kit.server.streams("alice") == 1)
    await kit.ingest("alice", [kit.balance("C", timestamp=3)])
    copies = [await kit.recv(new), await kit.recv(new)]
    await kit.server.stall("alice")  # a later fault is no rotation
    new.close_timeout = 0.2  # and the stalled connection will not answer our close
    sent = kit.server.sent
    first, second = (record.serial for record in sent.connections("alice"))
    exchange = Exchange.BITMUSA
    exact = sent.audit("alice", exchange, parsed([*frames, copies[1]], exchange), now=0.0)
    assert [(r.old, r.new, r.seqs, r.lost, r.duplicated) for r in exact.rotations] == [
        (first, second, (1, 2, 3), (), ())
    ]
    twice = sent.audit("alice", exchange, parsed([*frames, *copies], exchange), now=0.0)
    assert [(r.seqs, r.lost, r.duplicated, r.clean) for r in twice.rotations] == [
        ((1, 2, 3), (), (2,), False)
    ]
    short = sent.audit("alice", exchange, parsed([frames[0], copies[1]], exchange), now=0.0)
    assert [(r.lost, r.duplicated) for r in short.rotations] == [((2,), ())]
    await new.close()


async def test_the_ledger_keeps_only_the_latest_events(start: Any) -> None:
    async with start(ledger=True, ledger_events=2) as kit:
        await kit.ingest("alice", [kit.balance("A"), kit.balance("B"), kit.balance("C")])
        kept = kit.server.sent.events("alice")
        assert [(item.seq, item.event.asset) for item in kept] == [(2, "B"), (3, "C")]
        assert kit.server.sent.published_count("alice") == 3


def test_frames_are_kept_only_when_asked_and_in_write_order() -> None:
    ledger = SentLedger()
    plain = ledger.open("alice", Exchange.BITMUSA, 0.0)
    plain.wrote('{"a":1}', range(1, 2))
    assert (plain.frames, plain.written.runs()) == (None, [(1, 1)])
    ledger.record_frames = True
    kept = ledger.open("alice", Exchange.COINLOCALLY, 0.0)
    kept.wrote(b"\x1f\x8bone", range(1, 3))
    kept.wrote(b"\x1f\x8btwo", range(3, 4))
    assert (kept.frames, kept.written.runs()) == ([b"\x1f\x8bone", b"\x1f\x8btwo"], [(1, 3)])
    assert "frames" not in repr(kept)  # the repr stays a summary


async def test_the_ledger_is_kept_only_when_asked_for(start: Any) -> None:
    async with start() as kit:  # ServerConfig.ledger defaults to False
        key = await kit.create_listen_key()
        ws = await kit.bitmusa_stream(key)
        await kit.server.wait_for_streams("alice", 1)
        await kit.ingest("alice", [kit.balance("A", timestamp=1)])
        await kit.recv(ws)
        assert kit.server.server.sent is None
        assert [c.record for c in kit.server.server.hub.connections("alice")] == [None]
        with pytest.raises(RuntimeError, match="keeps no ledger"):
            kit.server.sent  # noqa: B018 - the property is what is tested
        await ws.close()


async def test_reading_the_ledger_of_a_server_without_one_is_a_typed_error_saying_how_to_ask(
    start: Any,
) -> None:
    async with start() as kit:  # ServerConfig.ledger defaults to False
        with pytest.raises(LedgerNotKeptError) as caught:
            kit.server.sent  # noqa: B018 - the property is what is tested
    assert str(caught.value) == (
        "the server keeps no ledger (ServerConfig.ledger is False): "
        "start it with ServerConfig(ledger=True) to read what it sent"
    )
    assert isinstance(caught.value, UserStreamError)
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, RuntimeError)
