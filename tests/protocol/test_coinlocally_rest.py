"""Coinlocally's signed REST snapshot: the exchange's signing example as a vector, exact requests and replies
both ways, errors, secrets kept out of every repr and message, and render-then-parse round trips."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.examples import COINLOCALLY_ORDER_EVENT
from userstream.errors import (
    AuthenticationError,
    ConfigurationError,
    ExchangeError,
    FrameDecodeError,
    LocalProtocolError,
    MessageShapeError,
    RateLimitedError,
    RemoteProtocolError,
    TransportError,
)
from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side, Source
from userstream.money import exact_sub
from userstream.protocol import coinlocally, coinlocally_render
from userstream.protocol.coinlocally_rest import (
    Credentials,
    SignedHeaders,
    account_request,
    open_orders_request,
    parse_account_response,
    parse_open_orders_response,
    sign,
    signed_headers,
    signed_request,
    verify,
)
from userstream.protocol.coinlocally_rest_render import (
    OpenOrdersQuery,
    parse_open_orders_query,
    render_account,
    render_error,
    render_open_orders,
)
from userstream.protocol.messages import DataEvents
from userstream.protocol.symbols import SymbolSplitter

# --- the exchange's worked signing example --------------------------------------------------------------

EXAMPLE_API_KEY = "vmPUZE6mv9SD5V5e14y7Ju91duEh8A"
EXAMPLE_SECRET = "902ae3cb34ecee2779aa4d3e1d226686"
EXAMPLE_TIMESTAMP = 1588591856950
EXAMPLE_PATH = "/sapi/v1/order/test"
EXAMPLE_BODY = b'{"symbol":"BTCUSDT","price":"9300","volume":"1","side":"BUY","type":"LIMIT"}'
EXAMPLE_SIGNATURE = "c50d0a74bb9427a9a03933d0eded03af9bf50115dc5b706882a4fcf07a26b761"

CREDS = Credentials(api_key="api-SECRET", secret_key="secret-SECRET")
REQUESTED_AT = 1_745_389_508_000


def test_the_exchange_example_signs_to_its_documented_signature() -> None:
    assert sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, "POST", EXAMPLE_PATH, EXAMPLE_BODY) == EXAMPLE_SIGNATURE
    assert sign(EXAMPLE_SECRET, str(EXAMPLE_TIMESTAMP), "post", EXAMPLE_PATH, EXAMPLE_BODY.decode()) == (
        EXAMPLE_SIGNATURE
    )


def test_the_example_as_a_signed_request_carries_exactly_the_three_headers() -> None:
    creds = Credentials(api_key=EXAMPLE_API_KEY, secret_key=EXAMPLE_SECRET)
    request = signed_request(creds, "POST", EXAMPLE_PATH, now_ms=EXAMPLE_TIMESTAMP, body=EXAMPLE_BODY)
    assert (request.method, request.path, request.body) == ("POST", EXAMPLE_PATH, EXAMPLE_BODY)
    assert request.headers == {
        "X-CH-APIKEY": EXAMPLE_API_KEY,
        "X-CH-TS": "1588591856950",
        "X-CH-SIGN": EXAMPLE_SIGNATURE,
        "Content-Type": "application/json",
    }


def test_the_server_verifies_the_example_and_nothing_else() -> None:
    signed = signed_headers(
        {"x-ch-apikey": EXAMPLE_API_KEY, "X-CH-TS": "1588591856950", "X-Ch-Sign": EXAMPLE_SIGNATURE.upper()}
    )
    assert signed is not None
    assert signed.timestamp_ms == EXAMPLE_TIMESTAMP
    assert verify(EXAMPLE_SECRET, signed, "POST", EXAMPLE_PATH, EXAMPLE_BODY) is True
    assert verify(EXAMPLE_SECRET, signed, "GET", EXAMPLE_PATH, EXAMPLE_BODY) is False
    assert verify(EXAMPLE_SECRET, signed, "POST", EXAMPLE_PATH + "?x=1", EXAMPLE_BODY) is False
    assert verify(EXAMPLE_SECRET, signed, "POST", EXAMPLE_PATH, EXAMPLE_BODY + b" ") is False
    assert verify(EXAMPLE_SECRET[:-1] + "7", signed, "POST", EXAMPLE_PATH, EXAMPLE_BODY) is False


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-CH-APIKEY": "k", "X-CH-TS": "1"},
        {"X-CH-APIKEY": "k", "X-CH-SIGN": "s"},
        {"X-CH-TS": "1", "X-CH-SIGN": "s"},
        {"X-CH-APIKEY": " ", "X-CH-TS": "1", "X-CH-SIGN": "s"},
    ],
)
def test_signed_headers_need_all_three(headers: dict[str, str]) -> None:
    assert signed_headers(headers) is None


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("0", 0),
        ("1588591856950", 1588591856950),
        ("-1", None),
        ("1.5", None),
        ("\uff11\uff12", None),  # fullwidth digits: isdigit() says yes, int() would agree
        ("9" * 20, None),
        ("1e3", None),
    ],
)
def test_the_timestamp_header_must_be_plain_milliseconds(text: str, millis: int | None) -> None:
    assert SignedHeaders(api_key="k", timestamp=text, signature="s").timestamp_ms == millis


# --- requests -------------------------------------------------------------------------------------------


def expected_signature(method: str, path: str, timestamp: int) -> str:
    """The exchange's rule, computed here independently of the module."""
    message = f"{timestamp}{method}{path}".encode()
    return hmac.new(b"secret-SECRET", message, hashlib.sha256).hexdigest()


def test_the_account_request_is_a_signed_get() -> None:
    request = account_request(CREDS, now_ms=REQUESTED_AT)
    assert (request.method, request.path, request.body) == ("GET", "/sapi/v1/account", b"")
    assert request.headers == {
        "X-CH-APIKEY": "api-SECRET",
        "X-CH-TS": str(REQUESTED_AT),
        "X-CH-SIGN": expected_signature("GET", "/sapi/v1/account", REQUESTED_AT),
    }


def test_the_open_orders_request_signs_its_query_string() -> None:
    request = open_orders_request(CREDS, "BTCUSDT", now_ms=REQUESTED_AT)
    path = "/sapi/v1/openOrders?symbol=BTCUSDT&limit=1000"
    assert (request.method, request.path) == ("GET", path)
    assert request.headers["X-CH-SIGN"] == expected_signature("GET", path, REQUESTED_AT)
    assert open_orders_request(CREDS, "BTC USDT", now_ms=1, limit=5).path == (
        "/sapi/v1/openOrders?symbol=BTC%20USDT&limit=5"
    )


@pytest.mark.parametrize(
    ("symbol", "limit"), [("", 10), ("X" * 65, 10), ("BTC\nUSDT", 10), ("BTCUSDT", 0), ("BTCUSDT", 1001)]
)
def test_a_bad_open_orders_request_is_refused_before_sending(symbol: str, limit: int) -> None:
    with pytest.raises(LocalProtocolError):
        open_orders_request(CREDS, symbol, now_ms=1, limit=limit)


def test_no_repr_shows_a_credential_or_signature() -> None:
    request = open_orders_request(CREDS, "BTCUSDT", now_ms=REQUESTED_AT)
    signed = SignedHeaders(api_key="api-SECRET", timestamp="1", signature=request.headers["X-CH-SIGN"])
    for text in (repr(CREDS), repr(request), repr(signed)):
        assert "SECRET" not in text
        assert request.headers["X-CH-SIGN"] not in text
    assert repr(CREDS) == "Credentials(api_key=<hidden>, secret_key=<hidden>)"


@pytest.mark.parametrize(("api_key", "secret_key"), [("", "s"), ("k", ""), ("k\r\nX: y", "s"), ("k", "s\n")])
def test_unusable_credentials_are_a_configuration_error_naming_which(api_key: str, secret_key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials(api_key=api_key, secret_key=secret_key)
    assert "Coinlocally" in str(caught.value)
    assert "s\n" not in str(caught.value)


# --- replies ---------------------------------------------------------------------------------------------

ACCOUNT_REPLY = b"""{"balances": [
  {"asset": "BTC", "free": "0.10000000", "locked": "0"},
  {"asset": "USDT", "free": "2321.94456", "locked": "13000"}
]}"""

# The stream document's executionReport, as the openOrders list gives the same order.
ORDERS_REPLY = b"""[{
  "orderId": 2690536306533246156,
  "orderIdString": "2690536306533246156",
  "symbol": "BTCUSDT",
  "price": "13000",
  "origQty": "1",
  "executedQty": "0.17861112",
  "cummulativeQuoteQty": "2321.94456",
  "status": "PART_FILLED",
  "type": "LIMIT",
  "side": "SELL",
  "time": 1745389507000
}]"""

DOC_EXECUTION_REPORT = """{"e":"executionReport","E":1745389508000,"T":1745389508418,"S":"SELL","s":"BTCUSDT",
"X":"PART_FILLED","x":"STATUS","i":"2690536306533246156","l":"0.1000000000000000","z":"0.17861112",
"L":"13000.0000000000000000","Z":"2321.94456","n":"7.8000000000000000","o":"LIMIT","q":"1","p":"13000",
"Q":"0.17861112","O":1745389507000,"P":"0"}"""

BALANCES = (
    BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=REQUESTED_AT,
        asset="BTC",
        free=Decimal("0.10000000"),
        locked=Decimal("0"),
        source=Source.SNAPSHOT,
    ),
    BalanceUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=REQUESTED_AT,
        asset="USDT",
        free=Decimal("2321.94456"),
        locked=Decimal("13000"),
        source=Source.SNAPSHOT,
    ),
)

# The document's execution report (tests/support/examples.py) as a snapshot of account "alice" reports it: an
# open order carries no execution (l, L, n).
ORDER = msgspec.structs.replace(
    COINLOCALLY_ORDER_EVENT,
    account="alice",
    timestamp=REQUESTED_AT,
    last_fill_amount=None,
    last_fill_price=None,
    fee=None,
    source=Source.SNAPSHOT,
)


def compact(text: bytes) -> bytes:
    """The same JSON without whitespace (no string in these replies holds any), tokens as written."""
    return re.sub(rb"\s+", b"", text)


def test_the_account_reply_gives_exact_snapshot_balances() -> None:
    balances = parse_account_response(200, ACCOUNT_REPLY, account="alice", timestamp=REQUESTED_AT)
    assert balances == BALANCES
    assert str(balances[0].free) == "0.10000000"


def test_other_account_keys_are_ignored() -> None:
    reply = (
        b'{"makerCommission":10,"balances":[{"asset":"ETH","free":1,"locked":0.5}],"permissions":["SPOT"]}'
    )
    (balance,) = parse_account_response(200, reply, account="a", timestamp=1)
    assert (balance.asset, str(balance.free), str(balance.locked)) == ("ETH", "1", "0.5")


def test_the_open_orders_reply_gives_the_order_exactly_as_the_stream_would() -> None:
    orders = parse_open_orders_response(200, ORDERS_REPLY, account="alice", timestamp=REQUESTED_AT)
    assert orders == (ORDER,)
    streamed = coinlocally.Parser("alice")(DOC_EXECUTION_REPORT)
    assert isinstance(streamed, DataEvents)
    (stream_order,) = streamed.events
    assert isinstance(stream_order, OrderUpdate)
    # Equal but for what only one execution carries (l, L, n) and where it came from.
    same = msgspec.structs.replace(
        stream_order, last_fill_amount=None, last_fill_price=None, fee=None, source=Source.SNAPSHOT
    )
    assert same == ORDER


def test_an_order_id_may_be_a_number_or_a_string() -> None:
    numeric = ORDERS_REPLY.replace(b'"orderIdString": "2690536306533246156",\n', b"")
    (order,) = parse_open_orders_response(200, numeric, account="a", timestamp=1)
    assert order.id == "2690536306533246156"
    text = numeric.replace(b"2690536306533246156", b'"C7"')
    (order,) = parse_open_orders_response(200, text, account="a", timestamp=1)
    assert order.id == "C7"


def test_optional_order_fields_may_be_absent() -> None:
    reply = (
        b'[{"orderId":"1","symbol":"ETHBTC","side":"BUY","type":"MARKET","status":"NEW",'
        b'"origQty":"2","executedQty":"0"}]'
    )
    (order,) = parse_open_orders_response(200, reply, account="a", timestamp=1)
    assert (order.symbol, order.price, order.cost, order.created_at) == ("ETH/BTC", None, None, None)
    assert (order.type, order.status, order.remaining) == (OrderType.MARKET, OrderStatus.OPEN, Decimal(2))


def test_a_full_page_is_not_a_snapshot() -> None:
    with pytest.raises(RemoteProtocolError, match="the list may be incomplete"):
        parse_open_orders_response(200, ORDERS_REPLY, account="a", timestamp=1, limit=1)
    assert len(parse_open_orders_response(200, ORDERS_REPLY, account="a", timestamp=1, limit=2)) == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            401,
            b'{"code":-2015,"msg":"invalid api key"}',
            AuthenticationError,
            "Coinlocally refused the api key (HTTP 401, code -2015): invalid api key",
        ),
        (
            401,
            b'{"code":-1022,"msg":"signature for this request is not valid"}',
            AuthenticationError,
            "Coinlocally refused the request signature (HTTP 401, code -1022): signature for this request is "
            "not valid",
        ),
        (403, b"forbidden", AuthenticationError, "Coinlocally refused the api key (HTTP 403)"),
        (
            200,
            b'{"code":-1022,"msg":"bad"}',
            AuthenticationError,
            "Coinlocally refused the request signature (HTTP 200, code -1022): bad",
        ),
        (429, b"", RateLimitedError, "Coinlocally limited the request (HTTP 429)"),
        (
            400,
            b'{"code":-1021,"msg":"outside the window"}',
            ExchangeError,
            "Coinlocally refused the request's timestamp (HTTP 400, code -1021): outside the window; is this "
            "machine's clock right?",
        ),
        (
            400,
            b'{"code":-1102,"msg":"mandatory parameter"}',
            ExchangeError,
            "Coinlocally refused the request (HTTP 400, code -1102): mandatory parameter",
        ),
        (503, b"<html>", TransportError, "Coinlocally answered HTTP 503"),
        (
            200,
            b"<html>",
            FrameDecodeError,
            "Coinlocally snapshot reply is not JSON: JSON is malformed: invalid character (byte 0)",
        ),
    ],
)
def test_errors_are_typed(status: int, body: bytes, error: type[Exception], message: str) -> None:
    for parse in (parse_account_response, parse_open_orders_response):
        with pytest.raises(error) as caught:
            parse(status, body, account="a", timestamp=1)
        assert str(caught.value) == message


def test_the_rejected_credential_is_named() -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_account_response(401, render_error(-1022, "x"), account="a", timestamp=1)
    assert (caught.value.rejected, caught.value.status) == ("secret key", 401)
    with pytest.raises(AuthenticationError) as caught:
        parse_account_response(401, render_error(-2015, "x"), account="a", timestamp=1)
    assert caught.value.rejected == "api key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{}", "$.balances"),
        (b'{"balances":[{"asset":"BTC","free":"1"}]}', "$.balances[0].locked"),
        (b'{"balances":[{"asset":"BTC","free":"Infinity","locked":"1"}]}', "$.balances[0].free"),
    ],
)
def test_a_malformed_account_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_account_response(200, body, account="a", timestamp=1)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ((b'"SELL"', b'"HOLD"'), "$[0].side"),
        ((b'"origQty": "1"', b'"origQty": "NaN"'), "$[0].origQty"),
        ((b'"time": 1745389507000', b'"time": -1'), "$[0].time"),
        ((b'"symbol": "BTCUSDT",', b""), "$[0].symbol"),
    ],
)
def test_a_malformed_order_names_its_index_and_field(replace: tuple[bytes, bytes], field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, ORDERS_REPLY.replace(*replace), account="a", timestamp=1)
    assert caught.value.field == field


def test_an_object_where_a_list_belongs_is_a_shape_error() -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, b'{"orders":[]}', account="a", timestamp=1)
    assert caught.value.field == "$"


# --- the server side -------------------------------------------------------------------------------------


def test_rendering_the_snapshot_events_gives_the_replies_back_exactly() -> None:
    assert render_account(BALANCES) == compact(ACCOUNT_REPLY)
    assert render_open_orders([ORDER]) == compact(ORDERS_REPLY)
    assert render_open_orders([]) == b"[]"
    assert render_error(-1022, "signature for this request is not valid") == (
        b'{"code":-1022,"msg":"signature for this request is not valid"}'
    )


def test_orders_are_rendered_with_the_stream_words_and_numbers() -> None:
    # An order from another dialect (Bitmusa's words, no cost, no creation time) is written as the
    # Coinlocally stream writes it: NEW, LIMIT, "BTCUSDT", "0" for what it lacks, no `time`.
    order = msgspec.structs.replace(
        ORDER,
        id="C1",
        raw_symbol="BTC/USDT",
        raw_type="LIMIT_PRICE",
        raw_status="TRADING",
        filled=Decimal(0),
        remaining=Decimal(1),
        cost=None,
        created_at=None,
    )
    assert render_open_orders([order]) == (
        b'[{"orderId":"C1","orderIdString":"C1","symbol":"BTCUSDT","price":"13000","origQty":"1",'
        b'"executedQty":"0","cummulativeQuoteQty":"0","status":"NEW","type":"LIMIT","side":"SELL"}]'
    )
    report = json.loads(coinlocally_render.render_message(order))
    assert (report["X"], report["o"], report["s"], report["Z"]) == ("NEW", "LIMIT", "BTCUSDT", "0")


@pytest.mark.parametrize(
    ("order_id", "written"),
    [("123", 123), ("0123", "0123"), ("9223372036854775808", "9223372036854775808"), ("-1", "-1")],
)
def test_only_a_canonical_integer_id_is_written_as_a_number(order_id: str, written: int | str) -> None:
    rendered = json.loads(render_open_orders([msgspec.structs.replace(ORDER, id=order_id)]))
    assert (rendered[0]["orderId"], rendered[0]["orderIdString"]) == (written, order_id)


@pytest.mark.parametrize(
    ("query", "result"),
    [
        ({"symbol": "BTCUSDT"}, OpenOrdersQuery("BTCUSDT", 100)),
        ({"symbol": "BTCUSDT", "limit": "1000"}, OpenOrdersQuery("BTCUSDT", 1000)),
        ({"symbol": "btcusdt", "limit": "1"}, OpenOrdersQuery("btcusdt", 1)),
    ],
)
def test_the_server_reads_the_open_orders_query(query: dict[str, str], result: OpenOrdersQuery) -> None:
    assert parse_open_orders_query(query) == result


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "X" * 65}, "symbol"),
        ({"symbol": "BTCUSDT", "limit": "0"}, "limit"),
        ({"symbol": "BTCUSDT", "limit": "1001"}, "limit"),
        ({"symbol": "BTCUSDT", "limit": "ten"}, "limit"),
        ({"symbol": "BTCUSDT", "limit": "99999999999999999999"}, "limit"),
    ],
)
def test_the_server_refuses_a_bad_query_naming_the_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_query(query)
    assert caught.value.field == field


# --- round trips -----------------------------------------------------------------------------------------

STATUS_WORDS = {"NEW": OrderStatus.OPEN, "PART_FILLED": OrderStatus.OPEN, "PENDING_CANCEL": OrderStatus.OPEN}
decimals = st.builds(
    lambda digits, exponent: Decimal((0, tuple(digits), exponent)),
    st.lists(st.integers(0, 9), min_size=1, max_size=40),
    st.integers(-30, 10),
)
millis = st.integers(0, 2**63 - 1)


@st.composite
def open_orders(draw: st.DrawFn) -> OrderUpdate:
    raw_symbol = draw(st.sampled_from(["BTCUSDT", "ETHBTC", "XRPUSDT"]))
    raw_status = draw(st.sampled_from(sorted(STATUS_WORDS)))
    raw_type = draw(st.sampled_from(["LIMIT", "MARKET"]))
    # Possible orders (docs/events.md): a limit order's filled within its amount, its price positive.
    limit = raw_type == "LIMIT"
    amount, filled = draw(decimals), draw(decimals)
    if limit and filled > amount:
        amount, filled = filled, amount
    prices = decimals.filter(bool) if limit else decimals
    return OrderUpdate(
        exchange=Exchange.COINLOCALLY,
        account="alice",
        timestamp=REQUESTED_AT,
        id=draw(st.text(min_size=1, max_size=30) | st.integers(0, 2**63 - 1).map(str)),
        symbol=SymbolSplitter()(raw_symbol),
        raw_symbol=raw_symbol,
        side=draw(st.sampled_from(Side)),
        type=OrderType(raw_type.lower()),
        raw_type=raw_type,
        status=STATUS_WORDS[raw_status],
        raw_status=raw_status,
        price=draw(prices),
        amount=amount,
        filled=filled,
        remaining=exact_sub(amount, filled),
        cost=draw(decimals),
        created_at=draw(st.none() | millis),
        source=Source.SNAPSHOT,
    )


balances = st.builds(
    BalanceUpdate,
    exchange=st.just(Exchange.COINLOCALLY),
    account=st.just("alice"),
    timestamp=st.just(REQUESTED_AT),
    asset=st.text(min_size=1, max_size=12),
    free=decimals,
    locked=decimals,
    source=st.just(Source.SNAPSHOT),
)


@given(st.lists(open_orders(), max_size=4))
def test_render_then_parse_gives_the_open_orders_back(orders: list[OrderUpdate]) -> None:
    rendered = render_open_orders(orders)
    assert parse_open_orders_response(200, rendered, account="alice", timestamp=REQUESTED_AT) == tuple(orders)


@given(st.lists(balances, max_size=4))
def test_render_then_parse_gives_the_balances_back(events: list[BalanceUpdate]) -> None:
    rendered = render_account(events)
    assert parse_account_response(200, rendered, account="alice", timestamp=REQUESTED_AT) == tuple(events)


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ((b'"free": "0.10000000"', b'"free": "-0.1"'), "$.balances[0].free"),
        ((b'"locked": "13000"', b'"locked": "-13000"'), "$.balances[1].locked"),
    ],
)
def test_a_negative_balance_refuses_the_account_naming_the_item(
    replace: tuple[bytes, bytes], field: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_account_response(200, ACCOUNT_REPLY.replace(*replace), account="a", timestamp=1)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ((b'"origQty": "1"', b'"origQty": "-1"'), "$[0].origQty"),
        ((b'"executedQty": "0.17861112"', b'"executedQty": "1.5"'), "$[0].executedQty"),
        ((b'"executedQty": "0.17861112"', b'"executedQty": "-0.1"'), "$[0].executedQty"),
        ((b'"price": "13000"', b'"price": "0"'), "$[0].price"),
        (
            (b'"cummulativeQuoteQty": "2321.94456"', b'"cummulativeQuoteQty": "-1"'),
            "$[0].cummulativeQuoteQty",
        ),
    ],
)
def test_an_impossible_order_refuses_the_snapshot_naming_the_item(
    replace: tuple[bytes, bytes], field: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        parse_open_orders_response(200, ORDERS_REPLY.replace(*replace), account="a", timestamp=1)
    assert caught.value.field == field
