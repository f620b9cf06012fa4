"""events.py: immutable, typed, raw kept but not compared, secrets-free reprs."""

from decimal import Decimal

import msgspec
import pytest

from userstream.events import (
    NOT_IN_SNAPSHOT,
    BalanceUpdate,
    Fill,
    OrderStatus,
    OrderUpdate,
    Source,
)
from userstream.protocol.examples import (
    BITMUSA_ORDER_EVENT,
    COINLOCALLY_BALANCE_EVENT,
    COINLOCALLY_EXECUTION_FILL,
)


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
