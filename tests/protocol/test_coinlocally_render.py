"""protocol/coinlocally_render.py: events rendered as the document writes them, and parsed back."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from support.coinlocally_tables import MULTI_ASSET, STATUS_TABLE, TYPE_TABLE
from support.examples import (
    COINLOCALLY_ACCOUNT_POSITION,
    COINLOCALLY_BALANCE_EVENT,
    COINLOCALLY_EXECUTION_REPORT,
    COINLOCALLY_ORDER_EVENT,
)
from userstream.errors import LocalProtocolError
from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.money import exact_sub
from userstream.protocol.codec import gunzip
from userstream.protocol.coinlocally import Parser
from userstream.protocol.coinlocally_render import render_balances, render_event, render_message
from userstream.protocol.messages import DataEvents
from userstream.protocol.symbols import SymbolSplitter

# --- rendering (server side) ----------------------------------------------------------------------------

DOC_KEY_ORDER = list(json.loads(COINLOCALLY_EXECUTION_REPORT))  # e, E, T, S, s, X, x, i, ... O, P


def test_render_execution_report_matches_the_document() -> None:
    rendered = json.loads(gunzip(render_event(COINLOCALLY_ORDER_EVENT)))
    document = json.loads(COINLOCALLY_EXECUTION_REPORT)
    assert list(rendered) == DOC_KEY_ORDER
    carried = ["e", "E", "S", "s", "X", "i", "l", "z", "L", "Z", "n", "o", "q", "p", "O", "P"]
    assert {key: rendered[key] for key in carried} == {key: document[key] for key in carried}
    # Not carried by the event: T is the event time, x follows the fill, Q is not known.
    assert (rendered["T"], rendered["x"], rendered["Q"]) == (1745389508472, "TRADE", "0")


def test_render_message_is_the_json_inside_render_event() -> None:
    assert gunzip(render_event(COINLOCALLY_ORDER_EVENT)) == render_message(COINLOCALLY_ORDER_EVENT)
    assert render_message(COINLOCALLY_ORDER_EVENT) == (
        b'{"e":"executionReport","E":1745389508472,"T":1745389508472,"S":"SELL","s":"BTCUSDT",'
        b'"X":"PART_FILLED","x":"TRADE","i":"2690536306533246156","l":"0.1000000000000000",'
        b'"z":"0.17861112","L":"13000.0000000000000000","Z":"2321.94456","n":"7.8000000000000000",'
        b'"o":"LIMIT","q":"1","p":"13000","Q":"0","O":1745389507000,"P":"0"}'
    )


def test_render_account_position_matches_the_document() -> None:
    rendered = json.loads(gunzip(render_event(COINLOCALLY_BALANCE_EVENT)))
    document = json.loads(COINLOCALLY_ACCOUNT_POSITION)
    assert list(rendered) == ["e", "E", "u", "B"]
    assert {key: rendered[key] for key in ("e", "E", "B")} == {key: document[key] for key in ("e", "E", "B")}
    assert rendered["u"] == 1564034571105  # the event time: the event carries no separate u


def test_render_balances_puts_several_assets_in_one_frame() -> None:
    events = Parser()(MULTI_ASSET)
    assert isinstance(events, DataEvents)
    frame = render_balances(event for event in events.events if isinstance(event, BalanceUpdate))
    assert json.loads(gunzip(frame)) == {
        "e": "outboundAccountPosition",
        "E": 1700000000123,
        "u": 1700000000123,
        "B": [
            {"a": "ETH", "f": "10000.000000", "l": "0.000000"},
            {"a": "BTC", "f": "0.5155", "l": "0.000020"},
            {"a": "USDT", "f": "2", "l": "1234.5678"},
        ],
    }
    assert Parser()(frame) == events


def test_render_balances_refuses_what_one_frame_cannot_say() -> None:
    with pytest.raises(LocalProtocolError, match="at least one balance"):
        render_balances([])
    later = BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="default",
        timestamp=COINLOCALLY_BALANCE_EVENT.timestamp + 1,
        asset="BTC",
        free=Decimal(1),
        locked=Decimal(0),
    )
    with pytest.raises(LocalProtocolError, match="share one timestamp"):
        render_balances([COINLOCALLY_BALANCE_EVENT, later])


def bitmusa_order(**changes: Any) -> OrderUpdate:
    fields: dict[str, Any] = {
        "exchange": Exchange.BITMUSA,
        "account": "default",
        "timestamp": 1,
        "id": "42",
        "symbol": "XRP/USDT",
        "raw_symbol": "XRP/USDT",
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "raw_type": "LIMIT_PRICE",
        "status": OrderStatus.OPEN,
        "raw_status": "TRADING",
        "price": Decimal("0.5155"),
        "amount": Decimal("10"),
        "filled": Decimal("0"),
        "remaining": Decimal("10"),
        "cost": Decimal("0"),
    }
    fields.update(changes)
    return OrderUpdate(**fields)


def rendered_fields(order: OrderUpdate, *keys: str) -> tuple[Any, ...]:
    rendered = json.loads(render_message(order))
    return tuple(rendered[key] for key in keys)


@pytest.mark.parametrize(
    ("changes", "wire_status", "execution_type"),
    [
        ({}, "NEW", "NEW"),
        ({"filled": Decimal("4"), "remaining": Decimal("6")}, "PART_FILLED", "STATUS"),
        ({"status": OrderStatus.CLOSED, "raw_status": "COMPLETED"}, "FILLED", "STATUS"),
        ({"status": OrderStatus.CANCELED, "raw_status": "CANCELED"}, "CANCELED", "CANCELED"),
        ({"status": OrderStatus.EXPIRED, "raw_status": "OVERTIMED"}, "EXPIRED", "EXPIRED"),
        ({"status": OrderStatus.REJECTED, "raw_status": "?"}, "REJECTED", "REJECTED"),
        ({"status": None, "raw_status": "WEIRD"}, "WEIRD", "STATUS"),
        ({"raw_status": "PENDING_CANCEL"}, "PENDING_CANCEL", "STATUS"),
        ({"last_fill_amount": Decimal("4")}, "NEW", "TRADE"),
        ({"last_fill_amount": Decimal("0.000")}, "NEW", "NEW"),
    ],
)
def test_render_derives_wire_status_and_execution_type(
    changes: dict[str, Any], wire_status: str, execution_type: str
) -> None:
    assert rendered_fields(bitmusa_order(**changes), "X", "x") == (wire_status, execution_type)


def test_render_derives_symbol_and_type_for_another_exchanges_event() -> None:
    assert rendered_fields(bitmusa_order(), "s", "o") == ("XRPUSDT", "LIMIT")
    market = bitmusa_order(type=OrderType.MARKET, raw_type="MARKET_PRICE")
    assert rendered_fields(market, "o") == ("MARKET",)
    unknown = bitmusa_order(type=None, raw_type="STOP_PRICE")
    assert rendered_fields(unknown, "o") == ("STOP_PRICE",)


def test_render_fills_absent_decimals_with_zero_and_omits_absent_created_at() -> None:
    rendered = json.loads(render_message(bitmusa_order(price=None, cost=None)))
    assert [rendered[key] for key in ("l", "L", "n", "p", "Z")] == ["0"] * 5
    assert "O" not in rendered


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": None, "raw_status": "FILLED"}, "no status but a known raw_status 'FILLED'"),
        ({"type": None, "raw_type": "LIMIT"}, "no type but a known raw_type 'LIMIT'"),
    ],
)
def test_render_refuses_self_contradicting_events(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        render_event(bitmusa_order(**changes))


# --- the round trip -------------------------------------------------------------------------------------

KNOWN_QUOTES = ("USDT", "USDC", "BUSD", "TUSD", "FDUSD", "BTC", "ETH", "BNB", "TRY", "EUR")
FORTY_DIGITS = Decimal("1234567890123456789012345678.901234567890")

decimals = st.builds(
    lambda negative, digits, exponent: Decimal((int(negative), tuple(digits), exponent)),
    st.booleans(),
    st.lists(st.integers(0, 9), min_size=1, max_size=40),
    st.integers(-60, 20),
)
millis = st.integers(0, 2**63 - 1)
symbol_letters = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
raw_symbols = st.one_of(
    st.builds(lambda base, quote: base + quote, symbol_letters, st.sampled_from(KNOWN_QUOTES)),
    symbol_letters,
)
raw_statuses = st.one_of(st.sampled_from(sorted(STATUS_TABLE)), st.text(max_size=20))
raw_types = st.one_of(st.sampled_from(sorted(TYPE_TABLE)), st.text(max_size=20))


# Quantities, prices and balances are never negative (docs/events.md, "Impossible values"); a fee may be
# (a rebate).
possible_decimals = decimals.map(Decimal.copy_abs)


@st.composite
def orders(draw: st.DrawFn) -> OrderUpdate:
    """Possible orders: the last execution within the cumulative filled, at a positive price when there is
    one; a limit order's filled within its amount and its price positive."""
    raw_symbol = draw(raw_symbols)
    raw_status = draw(raw_statuses)
    raw_type = draw(raw_types)
    limit = TYPE_TABLE.get(raw_type) is OrderType.LIMIT
    if limit:
        last_fill_amount, filled, amount = sorted(draw(st.lists(possible_decimals, min_size=3, max_size=3)))
    else:
        last_fill_amount, filled = sorted(draw(st.lists(possible_decimals, min_size=2, max_size=2)))
        amount = draw(possible_decimals)
    price = draw(possible_decimals.filter(bool) if limit else possible_decimals)
    last_fill_price = draw(possible_decimals.filter(bool) if last_fill_amount else possible_decimals)
    return OrderUpdate(
        exchange=Exchange.COINLOCALLY,
        account="default",
        timestamp=draw(millis),
        id=draw(st.text(max_size=40)),
        symbol=SymbolSplitter()(raw_symbol),
        raw_symbol=raw_symbol,
        side=draw(st.sampled_from(Side)),
        type=TYPE_TABLE.get(raw_type),
        raw_type=raw_type,
        status=STATUS_TABLE.get(raw_status),
        raw_status=raw_status,
        price=price,
        amount=amount,
        filled=filled,
        remaining=exact_sub(amount, filled),
        cost=draw(possible_decimals),
        last_fill_amount=last_fill_amount,
        last_fill_price=last_fill_price,
        fee=draw(decimals),
        created_at=draw(st.none() | millis),
    )


balances = st.builds(
    BalanceUpdate,
    exchange=st.just(Exchange.COINLOCALLY),
    account=st.just("default"),
    timestamp=millis,
    asset=st.text(max_size=12),
    free=possible_decimals,
    locked=possible_decimals,
)

FORTY_DIGIT_ORDER = OrderUpdate(
    **{
        **{
            name: getattr(COINLOCALLY_ORDER_EVENT, name) for name in COINLOCALLY_ORDER_EVENT.__struct_fields__
        },
        "amount": FORTY_DIGITS,
        "filled": FORTY_DIGITS.scaleb(-20),
        "remaining": exact_sub(FORTY_DIGITS, FORTY_DIGITS.scaleb(-20)),
        "fee": -FORTY_DIGITS,
    }
)


@given(st.one_of(orders(), balances))
@example(COINLOCALLY_ORDER_EVENT)
@example(COINLOCALLY_BALANCE_EVENT)
@example(FORTY_DIGIT_ORDER)
def test_render_then_parse_gives_the_event_back(event: Event) -> None:
    assert Parser()(render_event(event)) == DataEvents((event,))
    assert Parser()(render_message(event).decode()) == DataEvents((event,))


@given(st.lists(balances, min_size=1, max_size=5), millis)
def test_render_balances_then_parse_gives_them_back(events: list[BalanceUpdate], stamp: int) -> None:
    same_time = [
        BalanceUpdate(
            exchange=e.exchange,
            account=e.account,
            timestamp=stamp,
            asset=e.asset,
            free=e.free,
            locked=e.locked,
        )
        for e in events
    ]
    assert Parser()(render_balances(same_time)) == DataEvents(tuple(same_time))
