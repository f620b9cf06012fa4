"""events.py: immutable, typed, raw kept but not compared, secrets-free reprs."""

import gc
import json
import pickle
import sys
import tracemalloc
from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest

from support.examples import (
    BITMUSA_ORDER_EVENT,
    COINLOCALLY_BALANCE_EVENT,
    COINLOCALLY_EXECUTION_FILL,
    COINLOCALLY_EXECUTION_REPORT,
)
from userstream.events import (
    NOT_IN_SNAPSHOT,
    RAW_LIMIT,
    BalanceUpdate,
    ClippedRaw,
    Event,
    Fill,
    OrderStatus,
    OrderUpdate,
    Source,
    clip_raw,
    event_size,
)
from userstream.fills import FillTracker
from userstream.protocol import coinlocally
from userstream.protocol.messages import DataEvents


def _balance(raw: str) -> BalanceUpdate:
    """The Coinlocally document's ETH balance, for account "a" at time 1."""
    return msgspec.structs.replace(COINLOCALLY_BALANCE_EVENT, account="a", timestamp=1, raw=raw)


def test_events_are_immutable() -> None:
    event = _balance("")
    with pytest.raises(AttributeError):
        event.free = Decimal(1)  # type: ignore[misc]


def test_raw_is_kept_but_not_compared() -> None:
    a, b = _balance('{"e":"x"}'), _balance("")
    assert a.raw == '{"e":"x"}'
    assert a == b
    assert hash(a) == hash(b)
    assert a != msgspec.structs.replace(b, locked=Decimal("0.1"))


def test_total_is_exact_and_keeps_scale() -> None:
    assert str(_balance("").total) == "10000.000000"


def test_repr_is_short_and_has_no_raw() -> None:
    assert repr(_balance('{"secret":"x"}')) == (
        "BalanceUpdate(exchange='coinlocally', account='a', timestamp=1, asset='ETH', "
        "free=10000.000000, locked=0.000000, total=10000.000000)"
    )


def test_source_defaults_to_stream_and_takes_part_in_equality() -> None:
    stream = _balance("")
    snapshot = msgspec.structs.replace(stream, source=Source.SNAPSHOT)
    assert stream.source is Source.STREAM
    assert stream != snapshot
    assert len({stream, snapshot}) == 2


def test_snapshot_repr_says_so_and_stream_repr_stays_short() -> None:
    snapshot = msgspec.structs.replace(_balance(""), source=Source.SNAPSHOT)
    assert repr(snapshot) == (
        "BalanceUpdate(exchange='coinlocally', account='a', timestamp=1, asset='ETH', "
        "free=10000.000000, locked=0.000000, total=10000.000000, source='snapshot')"
    )


def _fill(raw: str = "") -> Fill:
    """The execution the Coinlocally document's report carries, for account "a"."""
    return msgspec.structs.replace(COINLOCALLY_EXECUTION_FILL, account="a", raw=raw)


def test_fill_is_immutable_raw_not_compared_repr_short() -> None:
    fill = _fill('{"secret":"x"}')
    with pytest.raises(AttributeError):
        fill.amount = Decimal(1)  # type: ignore[misc]
    assert fill == _fill("")
    assert hash(fill) == hash(_fill(""))
    assert fill != msgspec.structs.replace(fill, derived=True)
    assert fill.kind == "fill"
    assert (fill.derived, fill.source) == (False, Source.STREAM)
    assert repr(fill) == (
        "Fill(exchange='coinlocally', account='a', timestamp=1745389508472, "
        "order_id='2690536306533246156', symbol='BTC/USDT', side='sell', amount=0.1000000000000000, "
        "price=13000.0000000000000000, cost=1300.00000000000000000000000000000000, "
        "fee=7.8000000000000000, fee_asset='USDT', order_filled=0.17861112, derived=False)"
    )


def test_order_repr_shows_the_normalized_fields_and_the_raw_only_where_unknown() -> None:
    order = msgspec.structs.replace(_order(OrderStatus.OPEN, "TRADING"), raw='{"secret":"x"}')
    assert repr(order) == (
        "OrderUpdate(exchange='bitmusa', account='a', timestamp=1, id='C1', symbol='XRP/USDT', side='buy', "
        "type='limit', status='open', price=0.5155, amount=2, filled=0, remaining=2, cost=0)"
    )
    unknown = msgspec.structs.replace(order, status=None, raw_status="HALTED", type=None, raw_type="ICEBERG")
    assert "type=None, raw_type='ICEBERG', status=None, raw_status='HALTED'," in repr(unknown)
    executed = msgspec.structs.replace(
        order, last_fill_amount=Decimal("0.5"), last_fill_price=Decimal("0.5155"), fee=Decimal("0.001")
    )
    assert repr(executed).endswith(", cost=0, last_fill_amount=0.5, last_fill_price=0.5155, fee=0.001)")
    assert "secret" not in repr(order)


def test_fill_is_not_equal_to_other_kinds() -> None:
    assert _fill() != _balance("")


def _order(status: OrderStatus | None, raw_status: str, source: Source = Source.STREAM) -> OrderUpdate:
    """The Bitmusa document's order as "C1" of account "a" at time 1, in the given status."""
    return msgspec.structs.replace(
        BITMUSA_ORDER_EVENT,
        account="a",
        timestamp=1,
        id="C1",
        created_at=None,
        status=status,
        raw_status=raw_status,
        source=source,
    )


@pytest.mark.parametrize(
    ("status", "raw_status", "source", "final"),
    [
        (OrderStatus.OPEN, "TRADING", Source.STREAM, False),
        (OrderStatus.CLOSED, "COMPLETED", Source.STREAM, True),
        (OrderStatus.CANCELED, "CANCELED", Source.STREAM, True),
        (OrderStatus.EXPIRED, "OVERTIMED", Source.STREAM, True),
        (OrderStatus.REJECTED, "REJECTED", Source.STREAM, True),
        (None, "HALTED", Source.STREAM, False),  # unknown: not known to have ended
        (None, NOT_IN_SNAPSHOT, Source.SNAPSHOT, True),  # a snapshot no longer lists it
        (None, NOT_IN_SNAPSHOT, Source.STREAM, False),  # only a snapshot can say so
    ],
)
def test_is_final(status: OrderStatus | None, raw_status: str, source: Source, final: bool) -> None:
    assert _order(status, raw_status, source).is_final is final


def test_the_field_order_the_parsers_build_events_in_is_pinned() -> None:
    # protocol/bitmusa.py and protocol/coinlocally.py pass these positionally on their hot path: a field
    # inserted in the middle would shift every value after it, so a new field must go last.
    assert BalanceUpdate.__struct_fields__ == (
        "exchange",
        "account",
        "timestamp",
        "asset",
        "free",
        "locked",
        "source",
        "raw",
    )
    assert OrderUpdate.__struct_fields__ == (
        "exchange",
        "account",
        "timestamp",
        "id",
        "symbol",
        "raw_symbol",
        "side",
        "type",
        "raw_type",
        "status",
        "raw_status",
        "price",
        "amount",
        "filled",
        "remaining",
        "cost",
        "last_fill_amount",
        "last_fill_price",
        "fee",
        "created_at",
        "source",
        "raw",
    )


# --- raw is bounded (events.clip_raw), and what an event holds is counted (events.event_size) ---------


def test_clip_raw_keeps_a_message_up_to_the_limit_as_is_and_a_longer_one_as_a_prefix() -> None:
    whole = "x" * RAW_LIMIT
    assert clip_raw(whole) is whole
    clipped = clip_raw(whole + "yz")
    assert type(clipped) is ClippedRaw
    assert clipped == whole
    assert isinstance(clipped, ClippedRaw)
    assert clipped.size == RAW_LIMIT + 2
    restored = pickle.loads(pickle.dumps(clipped))  # noqa: S301 - our own bytes
    assert (type(restored), restored, restored.size) == (ClippedRaw, whole, RAW_LIMIT + 2)


def test_raw_clipped_is_true_only_for_a_clipped_raw_on_every_kind() -> None:
    long = "m" * (RAW_LIMIT * 3)
    for event in (_balance(""), _fill(""), BITMUSA_ORDER_EVENT):
        assert event.raw_clipped is False
        assert msgspec.structs.replace(event, raw=long[:RAW_LIMIT]).raw_clipped is False
        assert msgspec.structs.replace(event, raw=clip_raw(long)).raw_clipped is True


def _message(length: int, *, order_id: str = "1", symbol: str = "BTCUSDT", pad: str = "x") -> bytes:
    """A Coinlocally execution report of about `length` characters: an unknown field "pad" first."""
    fields = json.loads(COINLOCALLY_EXECUTION_REPORT)
    fields.update(i=order_id, s=symbol)
    bare = len(json.dumps({"pad": "", **fields}, ensure_ascii=False))
    padding = pad * max(0, (length - bare) // len(pad))
    return json.dumps({"pad": padding, **fields}, ensure_ascii=False).encode()


def _events(frames: list[bytes], fills: bool) -> list[Event]:
    """The events a Coinlocally parser gives for `frames`, or the fills a FillTracker makes of them."""
    parser, tracker = coinlocally.Parser(), FillTracker()
    events: list[Event] = []
    for frame in frames:
        incoming = parser(frame)
        assert isinstance(incoming, DataEvents), incoming
        for event in incoming.events:
            events.extend(tracker.feed(event) if fills else [event])
    return events


def _held_per_event(frames: list[bytes], fills: bool) -> float:
    """Bytes each event made of `frames` keeps alive (tracemalloc), the frames themselves excluded."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = _events(frames, fills)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held / len(kept)


SHAPES: dict[str, Callable[[int], bytes]] = {
    # the document's report, as sent
    "ordinary": lambda n: COINLOCALLY_EXECUTION_REPORT.replace("2690536306533246156", f"{n:019d}").encode(),
    # issue 13's flood: valid reports padded to ~1 MB
    "padded, ascii": lambda n: _message(1_000_000, order_id=f"{n:019d}"),
    "padded, four bytes a character": lambda n: _message(
        200_000, order_id=f"{n:019d}", pad="\N{GRINNING FACE}"
    ),
    # under the limit, all in the event's own texts, four bytes a character
    "whole, texts fill it": lambda n: _message(
        0, order_id=f"{n:06d}" + "\N{GRINNING FACE}" * 1800, symbol="\N{GRINNING FACE}" * 1800 + "USDT"
    ),
    # clipped, and the order id is far past the prefix
    "clipped, a 200,000-character id": lambda n: _message(
        RAW_LIMIT, order_id=f"{n:06d}" + "7" * 200_000, symbol="\N{GRINNING FACE}" * 3000 + "USDT"
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fills", [False, True], ids=["order", "fill"])
def test_event_size_is_never_less_than_what_an_event_holds(shape: str, fills: bool) -> None:
    frames = [SHAPES[shape](n) for n in range(40)]
    held = _held_per_event(frames, fills)
    # a fill's fee_asset is None or an asset, so the counts of one shape differ by that string at most
    counted = {event_size(event) for event in _events(frames, fills)}
    assert min(counted) >= held, f"{shape}: counted {sorted(counted)} bytes, holds {held:.0f}"
    if shape == "ordinary":
        assert max(counted) <= 2.5 * held  # cheap, and not wildly above the truth


def test_event_size_of_an_event_without_raw_measures_its_texts() -> None:
    bare = msgspec.structs.replace(BITMUSA_ORDER_EVENT, raw="")
    heavy = msgspec.structs.replace(bare, id="9" * 100_000, symbol="S" * 50_000)
    grown = (
        sys.getsizeof(heavy.id)
        - sys.getsizeof(bare.id)
        + sys.getsizeof(heavy.symbol)
        - sys.getsizeof(bare.symbol)
    )
    assert event_size(heavy) - event_size(bare) == grown
