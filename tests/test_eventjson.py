"""eventjson.py: the JSON contract of docs/events.md, both directions."""

import re
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from support.examples import (
    BITMUSA_WALLET_EVENT,
    COINLOCALLY_EXECUTION_FILL,
    COINLOCALLY_ORDER_EVENT,
    COINLOCALLY_ORDER_JSON,
)
from userstream.errors import MessageShapeError
from userstream.eventjson import from_dict, from_json, to_dict, to_json
from userstream.events import (
    Event,
    Exchange,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
)

BALANCE = BITMUSA_WALLET_EVENT  # the Bitmusa document's wallet payload
ORDER = COINLOCALLY_ORDER_EVENT  # the Coinlocally document's execution report
FILL = COINLOCALLY_EXECUTION_FILL  # the execution that report carries (l, L, n): cost is exactly l * L

# A Bitmusa fill derived from growth: 1.5 more XRP filled for 0.77325 USDT more.
DERIVED_FILL = Fill(
    exchange=Exchange.BITMUSA,
    account="default",
    timestamp=1700703549000,
    order_id="C171558199502193",
    symbol="XRP/USDT",
    side=Side.BUY,
    amount=Decimal("1.5"),
    price=Decimal("0.5155"),
    cost=Decimal("0.77325"),
    order_filled=Decimal("2"),
    derived=True,
    source=Source.SNAPSHOT,
)


def test_balance_json_form_is_the_documented_one() -> None:
    assert to_json(BALANCE) == (
        b'{"kind":"balance","exchange":"bitmusa","account":"default","timestamp":1700703548846,'
        b'"source":"stream","asset":"USDT","free":"1132800.449","locked":"80669.91","total":"1213470.359"}'
    )


def test_order_json_form_is_the_documented_one() -> None:
    assert to_dict(ORDER) == COINLOCALLY_ORDER_JSON


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


def test_fill_json_form_is_the_documented_one() -> None:
    assert to_json(FILL) == (
        b'{"kind":"fill","exchange":"coinlocally","account":"default","timestamp":1745389508472,'
        b'"source":"stream","order_id":"2690536306533246156","symbol":"BTC/USDT","side":"sell",'
        b'"amount":"0.1000000000000000","price":"13000.0000000000000000",'
        b'"cost":"1300.00000000000000000000000000000000","fee":"7.8000000000000000","fee_asset":"USDT",'
        b'"order_filled":"0.17861112","derived":false}'
    )


def test_derived_snapshot_fill_json_form_is_the_documented_one() -> None:
    assert to_json(DERIVED_FILL) == (
        b'{"kind":"fill","exchange":"bitmusa","account":"default","timestamp":1700703549000,'
        b'"source":"snapshot","order_id":"C171558199502193","symbol":"XRP/USDT","side":"buy",'
        b'"amount":"1.5","price":"0.5155","cost":"0.77325","fee":null,"fee_asset":null,"order_filled":"2","derived":true}'
    )


def test_source_is_always_written_and_snapshot_is_kept() -> None:
    snapshot = msgspec.structs.replace(BALANCE, source=Source.SNAPSHOT)
    assert to_dict(BALANCE)["source"] == "stream"
    assert to_dict(snapshot)["source"] == "snapshot"
    assert from_json(to_json(snapshot)) == snapshot
    assert from_json(to_json(snapshot)) != BALANCE


@pytest.mark.parametrize(
    "event",
    [
        BALANCE,
        ORDER,
        FILL,
        DERIVED_FILL,
        msgspec.structs.replace(ORDER, source=Source.SNAPSHOT),
        msgspec.structs.replace(FILL, price=None, cost=None, fee=None, fee_asset=None),
    ],
)
def test_round_trip(event: Event) -> None:
    assert from_json(to_json(event)) == event


def test_absent_source_means_stream() -> None:
    form = to_dict(ORDER)
    del form["source"]
    assert from_dict(form).source is Source.STREAM


def test_lenient_fill_defaults() -> None:
    fill = from_dict(
        {"kind": "fill", "order_id": "7", "symbol": "XRP/USDT", "side": "buy", "amount": "2",
         "price": 0.5155, "cost": "1.031", "order_filled": "2"},
        account="alice",
        timestamp=42,
    )  # fmt: skip
    assert fill == Fill(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=42,
        order_id="7",
        symbol="XRP/USDT",
        side=Side.BUY,
        amount=Decimal(2),
        price=Decimal("0.5155"),
        cost=Decimal("1.031"),
        fee=None,
        order_filled=Decimal(2),
        derived=False,
        source=Source.STREAM,
    )


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
        ({"kind": "balance", "asset": "X", "free": "1", "locked": "1", "source": "rest"}, "$.source",
         "rest"),
        ({"kind": "fill", "order_id": "1", "symbol": "A/B", "side": "buy", "amount": "0",
          "price": "1", "cost": "0", "order_filled": "1"}, "$.amount", "positive"),
        ({"kind": "fill", "order_id": "1", "symbol": "A/B", "side": "buy", "amount": "1",
          "price": "1", "order_filled": "1"}, None, "missing required field `cost`"),
        ({"kind": "fill", "order_id": "1", "symbol": "A/B", "side": "buy", "amount": "1",
          "price": "1", "cost": "1", "order_filled": "Infinity"}, "$.order_filled", "finite"),
        ({"kind": "fill", "order_id": "1", "symbol": "A/B", "side": "buy", "amount": "1",
          "price": "1", "cost": "1", "order_filled": "1", "derived": "yes"}, "$.derived", "bool"),
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


def _documented_examples() -> list[str]:
    """Every JSON object in docs/events.md's ```json blocks, as written: an object starts a line with `{`
    and its continuation lines are indented by one space."""
    text = (Path(__file__).parent.parent / "docs" / "events.md").read_text()
    examples: list[str] = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL):
        examples += [part.replace("\n ", "").strip() for part in re.split(r"\n(?=\{)", block)]
    return examples


def test_the_documented_examples_are_exactly_what_to_json_writes() -> None:
    examples = _documented_examples()
    assert len(examples) == 5
    for example in examples:
        assert to_json(from_json(example)).decode() == example


def test_a_fill_fee_asset_needs_its_fee() -> None:
    base = {"kind": "fill", "order_id": "1", "symbol": "BTC/USDT", "side": "buy", "amount": "1"}
    base |= {"price": "2", "cost": "2", "order_filled": "1", "timestamp": 1}
    with_asset = from_dict(base | {"fee": "0.001", "fee_asset": "BTC"})
    assert isinstance(with_asset, Fill)
    assert (with_asset.fee, with_asset.fee_asset) == (Decimal("0.001"), "BTC")
    assert to_dict(with_asset)["fee_asset"] == "BTC"
    with pytest.raises(MessageShapeError, match=r"^fee_asset needs a fee") as caught:
        from_dict(base | {"fee_asset": "BTC"})
    assert caught.value.field == "$.fee_asset"
