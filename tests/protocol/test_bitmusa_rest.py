"""Bitmusa's REST snapshot: exact requests, exact replies both ways, errors, render-then-parse round trips.

The document shows the stream payloads only; the replies here are ours (docs/server.md), built from the
document's own examples: the spot_wallet data and the spot_order data, in the listenKey replies' envelope.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.examples import BITMUSA_ORDER_EVENT, BITMUSA_WALLET_EVENT
from userstream.errors import (
    AuthenticationError,
    ExchangeError,
    FrameDecodeError,
    LocalProtocolError,
    MessageShapeError,
    RateLimitedError,
    TransportError,
)
from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderUpdate, Side, Source
from userstream.money import exact_sub
from userstream.protocol import bitmusa, bitmusa_listen_key, bitmusa_render, bitmusa_rest
from userstream.protocol.bitmusa_rest import (
    open_orders_request,
    parse_open_orders_query,
    parse_open_orders_response,
    parse_wallet_response,
    render_open_orders,
    render_wallet,
    wallet_request,
)

CREDS = bitmusa_listen_key.Credentials(api_key="api-SECRET", auth_key="auth-SECRET")
REQUESTED_AT = 1_745_389_508_000

# The document's spot_wallet and spot_order "data" objects, in the envelope of its listenKey replies.
WALLET_REPLY = b"""{
  "data": [
    {"asset": "USDT", "free": "1132800.449", "locked": "80669.91"},
    {"asset": "XRP", "free": "0", "locked": "2"}
  ],
  "code": 0,
  "message": "success"
}"""

ORDERS_REPLY = b"""{
  "data": [
    {
      "orderId": "C171558199502193",
      "symbol": "XRP/USDT",
      "direction": "BUY",
      "type": "LIMIT_PRICE",
      "price": 0.5155,
      "amount": 2,
      "tradedAmount": 0,
      "value": 0,
      "status": "TRADING",
      "createdTime": 1715581995021,
      "canceledTime": null,
      "completedTime": null
    }
  ],
  "code": 0,
  "message": "success"
}"""

# The document's wallet and order (tests/support/examples.py), as a snapshot of account "alice" reports them.
_AS_SNAPSHOT = {"account": "alice", "timestamp": REQUESTED_AT, "source": Source.SNAPSHOT}

WALLET_EVENTS = (
    msgspec.structs.replace(BITMUSA_WALLET_EVENT, **_AS_SNAPSHOT),
    BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=REQUESTED_AT,
        asset="XRP",
        free=Decimal("0"),
        locked=Decimal("2"),
        source=Source.SNAPSHOT,
    ),
)

ORDER_EVENT = msgspec.structs.replace(BITMUSA_ORDER_EVENT, **_AS_SNAPSHOT)


def compact(text: bytes) -> bytes:
    """The same JSON without whitespace, every token (numbers included) exactly as written. (No string in
    these replies holds whitespace.)"""
    return re.sub(rb"\s+", b"", text)


# --- requests ---------------------------------------------------------------------------------------------


def test_the_wallet_request_is_a_get_with_the_listen_key_headers() -> None:
    request = wallet_request(CREDS)
    assert (request.method, request.path, request.body) == ("GET", "/spot/wallet", b"")
    assert request.headers == {"Authorization": "Bearer auth-SECRET", "x-api-key": "api-SECRET"}
    assert request.url("http://127.0.0.1:8765") == "http://127.0.0.1:8765/spot/wallet"


def test_the_open_orders_request_asks_the_history_for_trading_orders_of_one_symbol() -> None:
    request = open_orders_request(CREDS, "XRP/USDT")
    assert request.method == "GET"
    assert request.path == "/spot/order/history?status=TRADING&symbol=XRP%2FUSDT"
    assert request.headers == {"Authorization": "Bearer auth-SECRET", "x-api-key": "api-SECRET"}


def test_request_reprs_never_show_the_credentials() -> None:
    for request in (wallet_request(CREDS), open_orders_request(CREDS, "BTC/USDT")):
        assert "SECRET" not in repr(request)


@pytest.mark.parametrize("symbol", ["", "X" * 65, "BTC/\nUSDT"])
def test_an_unusable_symbol_is_refused_before_anything_is_sent(symbol: str) -> None:
    with pytest.raises(LocalProtocolError, match="a symbol must be a printable string"):
        open_orders_request(CREDS, symbol)


# --- replies ------------------------------------------------------------------------------------------------


def test_the_wallet_reply_gives_exact_snapshot_balances() -> None:
    balances = parse_wallet_response(200, WALLET_REPLY, account="alice", timestamp=REQUESTED_AT)
    assert balances == WALLET_EVENTS
    assert [str(balance.free) for balance in balances] == ["1132800.449", "0"]
    assert all(balance.source is Source.SNAPSHOT for balance in balances)


def test_the_open_orders_reply_gives_the_order_exactly_as_the_stream_would() -> None:
    orders = parse_open_orders_response(200, ORDERS_REPLY, account="alice", timestamp=REQUESTED_AT)
    assert orders == (ORDER_EVENT,)
    assert str(orders[0].price) == "0.5155"
    # The same data on the stream gives the same order; only when (eventTime) and where (source) differ.
    frame = json.loads(ORDERS_REPLY)["data"][0]
    streamed = bitmusa.Parser("alice")(
        json.dumps({"data": frame, "stream": "spot_order", "eventTime": REQUESTED_AT})
    )
    assert isinstance(streamed, bitmusa.DataEvents)
    assert msgspec.structs.replace(ORDER_EVENT, source=Source.STREAM) == streamed.events[0]


def test_empty_lists_are_an_empty_snapshot() -> None:
    empty = b'{"data":[],"code":0,"message":"success"}'
    assert parse_wallet_response(200, empty, account="a", timestamp=1) == ()
    assert parse_open_orders_response(200, empty, account="a", timestamp=1) == ()


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (401, b"", AuthenticationError, "Bitmusa answered HTTP 401"),
        (403, b"{}", AuthenticationError, "Bitmusa answered HTTP 403"),
        (
            200,
            b'{"code":401001,"message":"invalid api key or auth key"}',
            AuthenticationError,
            "Bitmusa refused the request (HTTP 200, code 401001): invalid api key or auth key",
        ),
        (429, b"", RateLimitedError, "Bitmusa answered HTTP 429"),
        (
            400,
            b'{"code":400001,"message":"symbol is required"}',
            ExchangeError,
            "Bitmusa refused the request (HTTP 400, code 400001): symbol is required",
        ),
        (502, b"<html>bad gateway</html>", TransportError, "Bitmusa answered HTTP 502 without a JSON body"),
        (200, b"not json", FrameDecodeError, "Bitmusa reply (HTTP 200) is not JSON"),
        (200, b"[1, 2]", MessageShapeError, "Bitmusa reply is not a JSON object"),
    ],
)
def test_errors_are_typed(status: int, body: bytes, error: type[Exception], message: str) -> None:
    for parse in (parse_wallet_response, parse_open_orders_response):
        with pytest.raises(error) as caught:
            parse(status, body, account="a", timestamp=1)
        assert str(caught.value).startswith(message)


def test_a_refused_snapshot_names_the_snapshot_request() -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_wallet_response(401, b"", account="a", timestamp=1)
    assert (caught.value.rejected, caught.value.status) == ("snapshot request", 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"code":0,"message":"success"}', "$.data"),
        (b'{"data":{"asset":"USDT"},"code":0,"message":"success"}', "$.data"),
        (b'{"data":[{"asset":"USDT","free":"1"}],"code":0,"message":"success"}', "$.data[0].locked"),
        (
            b'{"data":[{"asset":"USDT","free":"x","locked":"1"}],"code":0,"message":"success"}',
            "$.data[0].free",
        ),
        (
            b'{"data":[{"asset":"USDT","free":"NaN","locked":"1"}],"code":0,"message":"success"}',
            "$.data[0].free",
        ),
    ],
)
def test_a_malformed_wallet_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_wallet_response(200, body, account="a", timestamp=1)
    assert caught.value.field == field


def test_a_malformed_order_names_its_index_and_field() -> None:
    two = json.loads(ORDERS_REPLY)
    two["data"].append(dict(two["data"][0], direction="HOLD"))
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, json.dumps(two).encode(), account="a", timestamp=1)
    assert caught.value.field == "$.data[1].direction"
    assert str(caught.value) == "item 1: unknown direction 'HOLD'"
    two["data"][1] = {"orderId": "C1"}
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, json.dumps(two).encode(), account="a", timestamp=1)
    assert caught.value.field == "$.data[1].symbol"


def test_an_unknown_status_is_kept_not_dropped() -> None:
    reply = ORDERS_REPLY.replace(b'"TRADING"', b'"PAUSED"')
    (order,) = parse_open_orders_response(200, reply, account="a", timestamp=1)
    assert (order.status, order.raw_status) == (None, "PAUSED")


# --- the server side ----------------------------------------------------------------------------------------


def test_rendering_the_snapshot_events_gives_the_replies_back_exactly() -> None:
    assert render_wallet(WALLET_EVENTS) == compact(WALLET_REPLY)
    assert render_open_orders([ORDER_EVENT]) == compact(ORDERS_REPLY)
    assert render_wallet([]) == b'{"data":[],"code":0,"message":"success"}'


def test_open_orders_are_rendered_exactly_as_the_stream_data() -> None:
    streamed = json.loads(bitmusa_render.render_event(ORDER_EVENT))["data"]
    assert json.loads(render_open_orders([ORDER_EVENT]))["data"] == [streamed]


@pytest.mark.parametrize(
    ("query", "result"),
    [
        ({"status": "TRADING", "symbol": "XRP/USDT"}, "XRP/USDT"),
        ({"symbol": "XRP/USDT", "status": "TRADING", "page": "1"}, "XRP/USDT"),
    ],
)
def test_the_server_reads_the_open_orders_query(query: dict[str, str], result: str) -> None:
    assert parse_open_orders_query(query) == result


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"symbol": "XRP/USDT"}, "status", "status must be TRADING: this emulator keeps open orders only"),
        ({"status": "COMPLETED", "symbol": "XRP/USDT"}, "status", "status must be TRADING"),
        ({"status": "TRADING"}, "symbol", "symbol is required"),
        ({"status": "TRADING", "symbol": ""}, "symbol", "symbol is required"),
        ({"status": "TRADING", "symbol": "X" * 65}, "symbol", "symbol must be printable and at most 64"),
    ],
)
def test_the_server_refuses_a_bad_query_naming_the_parameter(
    query: dict[str, str], field: str, message: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_query(query)
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


# --- round trips -------------------------------------------------------------------------------------------

decimals = st.builds(
    lambda digits, exponent: Decimal((0, tuple(digits), exponent)),
    st.lists(st.integers(0, 9), min_size=1, max_size=40),
    st.integers(-30, 10),
)
millis = st.integers(0, 2**63 - 1)


@st.composite
def open_orders(draw: st.DrawFn) -> OrderUpdate:
    raw_type = draw(st.sampled_from(["LIMIT_PRICE", "MARKET_PRICE"]))
    # Possible orders (docs/events.md): a limit order's filled within its amount, its price positive.
    limit = raw_type == "LIMIT_PRICE"
    amount, filled = draw(decimals), draw(decimals)
    if limit and filled > amount:
        amount, filled = filled, amount
    prices = decimals.filter(bool) if limit else decimals
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="alice",
        timestamp=REQUESTED_AT,
        id=draw(st.text(min_size=1, max_size=30)),
        symbol=draw(st.sampled_from(["BTC/USDT", "XRP/USDT", "ETH/BTC"])),
        raw_symbol="",
        side=draw(st.sampled_from(Side)),
        type=bitmusa.ORDER_TYPES[raw_type],
        raw_type=raw_type,
        status=OrderStatus.OPEN,
        raw_status="TRADING",
        price=draw(st.none() | prices),
        amount=amount,
        filled=filled,
        remaining=exact_sub(amount, filled),
        cost=draw(st.none() | decimals),
        created_at=draw(st.none() | millis),
        source=Source.SNAPSHOT,
    )


balances = st.builds(
    BalanceUpdate,
    exchange=st.just(Exchange.BITMUSA),
    account=st.just("alice"),
    timestamp=st.just(REQUESTED_AT),
    asset=st.text(min_size=1, max_size=12),
    free=decimals,
    locked=decimals,
    source=st.just(Source.SNAPSHOT),
)


@given(st.lists(open_orders(), max_size=4))
def test_render_then_parse_gives_the_open_orders_back(orders: list[OrderUpdate]) -> None:
    parsed = parse_open_orders_response(
        200, render_open_orders(orders), account="alice", timestamp=REQUESTED_AT
    )
    # Bitmusa writes the unified symbol, so raw_symbol comes back as the symbol.
    assert parsed == tuple(msgspec.structs.replace(order, raw_symbol=order.symbol) for order in orders)


@given(st.lists(balances, max_size=4))
def test_render_then_parse_gives_the_balances_back(events: list[BalanceUpdate]) -> None:
    assert parse_wallet_response(
        200, render_wallet(events), account="alice", timestamp=REQUESTED_AT
    ) == tuple(events)


def test_the_module_exports_what_it_documents() -> None:
    assert bitmusa_rest.WALLET_PATH == "/spot/wallet"
    assert bitmusa_rest.ORDER_HISTORY_PATH == "/spot/order/history"
    assert bitmusa_rest.OPEN_ORDER_STATUS == "TRADING"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (WALLET_REPLY.replace(b'"free": "0"', b'"free": "-0.5"'), "$.data[1].free"),
        (WALLET_REPLY.replace(b'"locked": "80669.91"', b'"locked": "-80669.91"'), "$.data[0].locked"),
    ],
)
def test_a_negative_balance_refuses_the_wallet_naming_the_item(body: bytes, field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_wallet_response(200, body, account="a", timestamp=1)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("replace", "field", "message"),
    [
        ((b'"amount": 2', b'"amount": -2'), "$.data[0].amount", "$.data.amount: cannot be negative, got -2"),
        (
            (b'"tradedAmount": 0', b'"tradedAmount": 3'),
            "$.data[0].tradedAmount",
            "$.data.tradedAmount: the filled quantity 3 exceeds the limit order's amount 2",
        ),
        (
            (b'"price": 0.5155', b'"price": 0'),
            "$.data[0].price",
            "$.data.price: a limit order's price must be positive, got 0",
        ),
    ],
)
def test_an_impossible_order_refuses_the_snapshot_naming_the_item(
    replace: tuple[bytes, bytes], field: str, message: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, ORDERS_REPLY.replace(*replace), account="a", timestamp=1)
    assert (caught.value.field, str(caught.value)) == (field, f"item 0: {message}")
