"""eventjson.py: the JSON contract of docs/events.md, both directions."""

from decimal import Decimal

import msgspec
import pytest

from userstream.errors import MessageShapeError
from userstream.eventjson import from_dict, from_json, to_dict, to_json
from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side

BALANCE = BalanceUpdate(
    exchange=Exchange.BITMUSA,
    account="default",
    timestamp=1700703548846,
    asset="USDT",
    free=Decimal("1132800.449"),
    locked=Decimal("80669.91"),
)

ORDER = OrderUpdate(
    exchange=Exchange.COINLOCALLY,
    account="default",
    timestamp=1745389508472,
    id="2690536306533246156",
    symbol="BTC/USDT",
    raw_symbol="BTCUSDT",
    side=Side.SELL,
    type=OrderType.LIMIT,
    raw_type="LIMIT",
    status=OrderStatus.OPEN,
    raw_status="PART_FILLED",
    price=Decimal("13000"),
    amount=Decimal("1"),
    filled=Decimal("0.17861112"),
    remaining=Decimal("0.82138888"),
    cost=Decimal("2321.94456"),
    last_fill_amount=Decimal("0.1000000000000000"),
    last_fill_price=Decimal("13000.0000000000000000"),
    fee=Decimal("7.8000000000000000"),
    created_at=1745389507000,
)


def test_balance_json_form_is_the_documented_one() -> None:
    assert to_json(BALANCE) == (
        b'{"kind":"balance","exchange":"bitmusa","account":"default","timestamp":1700703548846,'
        b'"asset":"USDT","free":"1132800.449","locked":"80669.91","total":"1213470.359"}'
    )


def test_order_json_form_is_the_documented_one() -> None:
    assert to_dict(ORDER) == {
        "kind": "order",
        "exchange": "coinlocally",
        "account": "default",
        "timestamp": 1745389508472,
        "id": "2690536306533246156",
        "symbol": "BTC/USDT",
        "raw_symbol": "BTCUSDT",
        "side": "sell",
        "type": "limit",
        "raw_type": "LIMIT",
        "status": "open",
        "raw_status": "PART_FILLED",
        "price": "13000",
        "amount": "1",
        "filled": "0.17861112",
        "remaining": "0.82138888",
        "cost": "2321.94456",
        "last_fill_amount": "0.1000000000000000",
        "last_fill_price": "13000.0000000000000000",
        "fee": "7.8000000000000000",
        "created_at": 1745389507000,
    }


def test_decimals_are_plain_notation_never_scientific() -> None:
    event = msgspec.structs.replace(BALANCE, free=Decimal("1E-7"), locked=Decimal("1E+3"))
    assert to_dict(event)["free"] == "0.0000001"
    assert to_dict(event)["locked"] == "1000"
    assert to_dict(event)["total"] == "1000.0000001"


def test_unknown_status_is_null_with_raw_kept() -> None:
    event = msgspec.structs.replace(ORDER, status=None, raw_status="HALTED", type=None, raw_type="X")
    form = to_dict(event)
    assert (form["status"], form["raw_status"], form["type"], form["raw_type"]) == (
        None,
        "HALTED",
        None,
        "X",
    )
    assert from_dict(form) == event


@pytest.mark.parametrize("event", [BALANCE, ORDER])
def test_round_trip(event: BalanceUpdate | OrderUpdate) -> None:
    assert from_json(to_json(event)) == event


def test_lenient_ingest_form_derives_what_it_can() -> None:
    event = from_dict(
        {"kind": "order", "id": "7", "symbol": "XRP/USDT", "side": "buy", "status": "open",
         "amount": 2, "filled": "0.5", "price": 0.5155},
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=42,
    )  # fmt: skip
    assert event == OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=42,
        id="7",
        symbol="XRP/USDT",
        raw_symbol="XRP/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT",
        status=OrderStatus.OPEN,
        raw_status="OPEN",
        price=Decimal("0.5155"),
        amount=Decimal(2),
        filled=Decimal("0.5"),
        remaining=Decimal("1.5"),
        cost=None,
    )
    assert str(event.price) == "0.5155"


@pytest.mark.parametrize(
    ("obj", "field", "message"),
    [
        ({"kind": "balance", "asset": "X", "free": "x", "locked": "1"}, "$.free", "decimal"),
        ({"kind": "balance", "asset": "X", "free": "1", "locked": "1", "total": "3"}, "$.total",
         "total is not free"),
        ({"kind": "balance", "asset": "X", "free": "NaN", "locked": "1"}, "$.free", "finite"),
        ({"kind": "balance", "asset": "X", "free": "1", "locked": "1", "timestamp": 10**40},
         "$.timestamp", "milliseconds"),
        ({"kind": "balance", "asset": "X", "free": "1", "locked": "1", "colour": 1}, None,
         "colour"),
        ({"kind": "trade"}, "$.kind", "trade"),
        ({"kind": "order", "id": "1", "symbol": "A/B", "side": "buy", "status": "open",
          "amount": "1", "filled": "0", "remaining": "2"}, "$.remaining", "remaining"),
        ({"kind": "order", "id": "1", "symbol": "A/B", "side": "up", "status": "open",
          "amount": "1", "filled": "0"}, "$.side", "up"),
        ({"kind": "order", "id": "1", "symbol": "A/B", "side": "buy", "status": None,
          "amount": "1", "filled": "0"}, "$.raw_status", "raw_"),
    ],
)  # fmt: skip
def test_malformed_events_name_the_field(obj: dict[str, object], field: str | None, message: str) -> None:
    with pytest.raises(MessageShapeError, match=message) as caught:
        from_dict(obj, timestamp=1)
    if field is not None:
        assert caught.value.field == field


def test_timestamp_is_required_when_no_default() -> None:
    with pytest.raises(MessageShapeError, match="timestamp is required"):
        from_dict({"kind": "balance", "asset": "X", "free": "1", "locked": "1"})


def test_not_json() -> None:
    with pytest.raises(MessageShapeError, match="not a JSON object"):
        from_json(b"[1,")


def test_deep_nesting_is_a_shape_error_not_a_recursion_error() -> None:
    deep = b'{"kind":"balance","asset":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MessageShapeError, match="nested too deeply"):
        from_json(deep)
