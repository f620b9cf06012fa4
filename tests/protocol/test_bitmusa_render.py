"""protocol/bitmusa_render.py: Bitmusa's events and listenKey replies as serve writes them.

Words, end times and decimals of rendered events, and the listenKey replies' document shape."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from support.examples import BITMUSA_ACK_REPLY, BITMUSA_CREATE_REPLY, BITMUSA_LISTEN_KEY, BITMUSA_ORDER_EVENT
from userstream.errors import LocalProtocolError
from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.protocol import bitmusa_render
from userstream.protocol.bitmusa import Parser
from userstream.protocol.bitmusa_listen_key import parse_ack_response, parse_listen_key_response
from userstream.protocol.bitmusa_render import render_event
from userstream.protocol.messages import DataEvents


def only_event(frame: str | bytes, account: str = "default") -> BalanceUpdate | OrderUpdate:
    result = Parser(account)(frame)
    assert isinstance(result, DataEvents), result
    assert len(result.events) == 1
    return result.events[0]


def ordered_json(text: str | bytes) -> Any:
    """JSON with key order kept and numbers as exact Decimals: equal means same keys, order and values."""
    return json.loads(text, parse_float=Decimal, object_pairs_hook=list)


# --- rendering: words, end times, decimals ------------------------------------------------------------


def an_order(**changes: Any) -> OrderUpdate:
    fields = {name: getattr(BITMUSA_ORDER_EVENT, name) for name in BITMUSA_ORDER_EVENT.__struct_fields__}
    fields.update(changes)
    return OrderUpdate(**fields)


def rendered_data(event: BalanceUpdate | OrderUpdate) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(render_event(event), parse_float=Decimal)["data"]
    return data


@pytest.mark.parametrize(
    ("status", "raw_status", "word", "canceled_time", "completed_time"),
    [
        (OrderStatus.OPEN, "TRADING", "TRADING", None, None),
        (OrderStatus.OPEN, "PART_FILLED", "TRADING", None, None),  # Coinlocally's word: Bitmusa's is written
        (OrderStatus.CLOSED, "COMPLETED", "COMPLETED", None, 1700703548846),
        (OrderStatus.CANCELED, "CANCELED", "CANCELED", 1700703548846, None),
        (OrderStatus.EXPIRED, "OVERTIMED", "OVERTIMED", 1700703548846, None),
        (OrderStatus.EXPIRED, "EXPIRED", "OVERTIMED", 1700703548846, None),
        (OrderStatus.REJECTED, "REJECTED", "CANCELED", 1700703548846, None),  # Bitmusa has no "rejected"
        (OrderStatus.CLOSED, "TRADING", "COMPLETED", None, 1700703548846),  # raw inconsistent with status
        (None, "PARTIALLY_TRADED", "PARTIALLY_TRADED", None, None),
    ],
)
def test_rendered_status_and_end_times(
    status: OrderStatus | None,
    raw_status: str,
    word: str,
    canceled_time: int | None,
    completed_time: int | None,
) -> None:
    data = rendered_data(an_order(status=status, raw_status=raw_status))
    assert (data["status"], data["canceledTime"], data["completedTime"]) == (
        word,
        canceled_time,
        completed_time,
    )


@pytest.mark.parametrize(
    ("order_type", "raw_type", "word"),
    [
        (OrderType.LIMIT, "LIMIT_PRICE", "LIMIT_PRICE"),
        (OrderType.MARKET, "MARKET_PRICE", "MARKET_PRICE"),
        (OrderType.LIMIT, "LIMIT", "LIMIT_PRICE"),
        (OrderType.MARKET, "MARKET", "MARKET_PRICE"),
        (None, "STOP_LIMIT", "STOP_LIMIT"),
    ],
)
def test_rendered_type(order_type: OrderType | None, raw_type: str, word: str) -> None:
    assert rendered_data(an_order(type=order_type, raw_type=raw_type))["type"] == word


def test_rendered_order_from_another_exchange_uses_bitmusa_words_and_unified_symbol() -> None:
    event = an_order(
        exchange=Exchange.COINLOCALLY,
        symbol="BTC/USDT",
        raw_symbol="BTCUSDT",
        side=Side.SELL,
        raw_type="LIMIT",
        raw_status="NEW",
        price=None,
        cost=None,
        created_at=None,
        fee=Decimal("0.1"),
    )
    data = rendered_data(event)
    assert (data["symbol"], data["direction"], data["type"], data["status"]) == (
        "BTC/USDT",
        "SELL",
        "LIMIT_PRICE",
        "TRADING",
    )
    assert (data["price"], data["value"], data["createdTime"]) == (None, None, None)


@pytest.mark.parametrize(
    ("free", "text"),
    [
        (Decimal("2.0E-5"), "0.000020"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.10"), "0.10"),
        (Decimal("-0"), "-0"),
        (Decimal("1E+64"), "1E+64"),  # plain notation would carry 65 digits, past money's bound
    ],
)
def test_rendered_balances_are_plain_decimal_strings(free: Decimal, text: str) -> None:
    event = BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="default",
        timestamp=1,
        asset="BTC",
        free=free,
        locked=Decimal("0"),
    )
    assert rendered_data(event)["free"] == text
    assert only_event(render_event(event)) == event


def test_render_refuses_what_is_not_an_event() -> None:
    with pytest.raises(LocalProtocolError):
        render_event("not an event")  # type: ignore[arg-type]


# --- server side: replies and credentials ------------------------------------------------------------


def test_rendered_replies_have_the_document_shape() -> None:
    assert ordered_json(bitmusa_render.render_listen_key(BITMUSA_LISTEN_KEY)) == ordered_json(
        BITMUSA_CREATE_REPLY
    )
    assert ordered_json(bitmusa_render.render_ok()) == ordered_json(BITMUSA_ACK_REPLY)
    assert bitmusa_render.render_error(404001, "listenKey not found") == (
        b'{"code":404001,"message":"listenKey not found"}'
    )
    assert parse_listen_key_response(200, bitmusa_render.render_listen_key("k-1")) == "k-1"
    assert parse_ack_response(200, bitmusa_render.render_ok()) is None
