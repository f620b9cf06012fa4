"""protocol/coinlocally.py: the document's payloads as test vectors, both directions, bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from support.examples import (
    COINLOCALLY_ACCOUNT_POSITION,
    COINLOCALLY_BALANCE_EVENT,
    COINLOCALLY_BALANCE_JSON,
    COINLOCALLY_EXECUTION_REPORT,
    COINLOCALLY_ORDER_EVENT,
    COINLOCALLY_ORDER_JSON,
    COINLOCALLY_PING,
    COINLOCALLY_PONG,
    COINLOCALLY_SYSTEM_CLOSE,
)
from userstream.errors import (
    ConfigurationError,
    FrameDecodeError,
    LocalProtocolError,
    MessageShapeError,
)
from userstream.eventjson import to_dict
from userstream.events import (
    BalanceUpdate,
    Event,
    Exchange,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from userstream.money import exact_sub
from userstream.protocol import coinlocally
from userstream.protocol.codec import DEFAULT_MAX_FRAME, gunzip, gzip_bytes
from userstream.protocol.coinlocally import Parser
from userstream.protocol.coinlocally_control import (
    Credentials,
    PingRequest,
    SubRequest,
    credentials_from_headers,
    handshake_headers,
    parse_client_frame,
    ping_frame,
    pong_frame,
    sub_frame,
)
from userstream.protocol.coinlocally_render import (
    render_balances,
    render_error,
    render_event,
    render_message,
    render_pong,
    render_system_close,
)
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Ping,
    Pong,
    SystemClose,
    Unknown,
    UnknownKind,
)
from userstream.protocol.symbols import SymbolSplitter

DOC_KEY_ORDER = list(json.loads(COINLOCALLY_EXECUTION_REPORT))  # e, E, T, S, s, X, x, i, ... O, P


def as_text(message: str) -> str:
    return message


def as_plain_binary(message: str) -> bytes:
    return message.encode()


def as_gzip_binary(message: str) -> bytes:
    return gzip_bytes(message.encode())


ENCODINGS = pytest.mark.parametrize("encode", [as_text, as_plain_binary, as_gzip_binary])


def single_event(incoming: Incoming) -> Event:
    assert isinstance(incoming, DataEvents), incoming
    assert len(incoming.events) == 1
    return incoming.events[0]


def single_order(incoming: Incoming) -> OrderUpdate:
    order = single_event(incoming)
    assert isinstance(order, OrderUpdate)
    return order


# --- constants and client frames ------------------------------------------------------------------------


def test_constants() -> None:
    assert coinlocally.WS_URL == "wss://ws2.coinlocally.com/spotws_user/userData/ws"
    assert coinlocally.WS_PATH == "/spotws_user/userData/ws"
    assert coinlocally.WS_URL.endswith(coinlocally.WS_PATH)
    assert coinlocally.CONNECT_SUCCESS == "connect success"
    assert coinlocally.SUB_SUCCESS == "sub success"
    assert coinlocally.PING_INTERVAL_MS == 30_000
    assert coinlocally.HEARTBEAT_TIMEOUT_MS == 40_000


def test_token_connection_frames() -> None:
    creds = Credentials(token="tok-123")
    assert handshake_headers(creds) == {"token": "tok-123"}
    assert sub_frame(creds) == '{"event":"sub","token":"tok-123"}'


def test_api_key_connection_sends_the_key_as_the_sub_token() -> None:
    creds = Credentials(api_key="key-456")
    assert handshake_headers(creds) == {"api-key": "key-456"}
    assert sub_frame(creds) == '{"event":"sub","token":"key-456"}'


def test_sub_frame_escapes_json() -> None:
    assert sub_frame(Credentials(token='a"b\\c')) == '{"event":"sub","token":"a\\"b\\\\c"}'


def test_ping_and_pong_frames() -> None:
    assert ping_frame(1713338308232) == '{"ping":1713338308232}'
    assert pong_frame(1713338308233) == '{"pong":1713338308233}'
    assert render_pong(1713338308233) == '{"pong":1713338308233}'
    assert json.loads(ping_frame(0)) == {"ping": 0}


def test_credentials_repr_hides_secrets() -> None:
    token = Credentials(token="s3cret-token")
    api_key = Credentials(api_key="s3cret-key")
    assert repr(token) == "Credentials(token=<hidden>)"
    assert repr(api_key) == "Credentials(api_key=<hidden>)"
    assert "s3cret" not in str(token) + str(api_key) + f"{token!r}{api_key!r}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one credential: a token or an api_key (got neither)"),
        ({"token": "s3cret", "api_key": "s3cret"}, "(got token and api_key)"),
        ({"token": ""}, "the Coinlocally token is empty or has control characters"),
        ({"api_key": "s3cret\r\nX-Evil: 1"}, "the Coinlocally api_key is empty or has control"),
    ],
)
def test_exactly_one_usable_credential(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Credentials(**kwargs)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_credentials_are_frozen() -> None:
    creds = Credentials(token="t")
    with pytest.raises(AttributeError):
        creds.token = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"token": "t1"}, Credentials(token="t1")),
        ({"Token": "t1", "Host": "x"}, Credentials(token="t1")),
        ({"API-Key": "k1"}, Credentials(api_key="k1")),
        ({"api-key": "k1"}, Credentials(api_key="k1")),
        ({"token": "t1", "api-key": "k1"}, None),
        ({"Host": "x"}, None),
        ({"token": ""}, None),
        ({"token": "bad\nvalue"}, None),
    ],
)
def test_credentials_from_headers(headers: dict[str, str], expected: Credentials | None) -> None:
    assert credentials_from_headers(headers) == expected


# --- the document's data frames -------------------------------------------------------------------------


@ENCODINGS
def test_document_account_position(encode: Any) -> None:
    incoming = Parser()(encode(COINLOCALLY_ACCOUNT_POSITION))
    assert incoming == DataEvents((COINLOCALLY_BALANCE_EVENT,))
    balance = single_event(incoming)
    assert to_dict(balance) == COINLOCALLY_BALANCE_JSON
    assert balance.raw == COINLOCALLY_ACCOUNT_POSITION


@ENCODINGS
def test_document_execution_report(encode: Any) -> None:
    incoming = Parser()(encode(COINLOCALLY_EXECUTION_REPORT))
    assert incoming == DataEvents((COINLOCALLY_ORDER_EVENT,))
    order = single_event(incoming)
    assert to_dict(order) == COINLOCALLY_ORDER_JSON
    assert order.raw == COINLOCALLY_EXECUTION_REPORT


def test_parser_labels_events_with_its_account() -> None:
    order = single_event(Parser(account="desk-7")(COINLOCALLY_EXECUTION_REPORT))
    assert order.account == "desk-7"


def test_parser_uses_its_quote_list() -> None:
    order = single_order(Parser(quotes=["SDT"])(COINLOCALLY_EXECUTION_REPORT))
    assert (order.symbol, order.raw_symbol) == ("BTCU/SDT", "BTCUSDT")
    unsplit = single_order(Parser(quotes=["EUR"])(COINLOCALLY_EXECUTION_REPORT))
    assert (unsplit.symbol, unsplit.raw_symbol) == ("BTCUSDT", "BTCUSDT")


MULTI_ASSET = (
    '{"e":"outboundAccountPosition","E":1700000000123,"u":1700000000100,"B":['
    '{"a":"ETH","f":"10000.000000","l":"0.000000"},'
    '{"a":"BTC","f":0.5155,"l":2.0E-5},'
    '{"a":"USDT","f":2,"l":"1234.5678"}]}'
)


@ENCODINGS
def test_multi_asset_account_update_is_one_event_per_asset(encode: Any) -> None:
    incoming = Parser()(encode(MULTI_ASSET))
    assert isinstance(incoming, DataEvents)
    assert [to_dict(event) for event in incoming.events] == [
        {
            "kind": "balance",
            "exchange": "coinlocally",
            "account": "default",
            "timestamp": 1700000000123,
            "source": "stream",
            "asset": asset,
            "free": free,
            "locked": locked,
            "total": total,
        }
        for asset, free, locked, total in [
            ("ETH", "10000.000000", "0.000000", "10000.000000"),
            ("BTC", "0.5155", "0.000020", "0.515520"),
            ("USDT", "2", "1234.5678", "1236.5678"),
        ]
    ]
    assert all(event.raw == MULTI_ASSET for event in incoming.events)


def test_empty_balance_list_is_a_data_frame_with_no_events() -> None:
    frame = '{"e":"outboundAccountPosition","E":1,"u":1,"B":[]}'
    assert Parser()(frame) == DataEvents(())


def test_forty_one_digit_decimals_are_kept_exactly() -> None:
    # money.checked allows up to 64 significant digits, so 41 digits is valid input, kept digit for digit.
    amount = "1234567890123456789012345678901.0123456789"  # 41 digits
    filled = "0.0000000000000000000000000000000000000001"
    # The last execution (`l`) cannot exceed the cumulative filled (`z`): it is the whole of it here.
    frame = (
        COINLOCALLY_EXECUTION_REPORT.replace('"q": "1"', f'"q": "{amount}"')
        .replace('"z": "0.17861112"', f'"z": {filled}')
        .replace('"l": "0.1000000000000000"', f'"l": "{filled}"')
    )
    order = single_event(Parser()(frame))
    assert isinstance(order, OrderUpdate)
    assert to_dict(order)["amount"] == amount
    assert to_dict(order)["filled"] == filled
    remaining = "1234567890123456789012345678901.0123456788999999999999999999999999999999"
    assert to_dict(order)["remaining"] == remaining


def test_numeric_order_id_is_accepted_as_text() -> None:
    # The document sends "i" as a string; Binance, whose format it copies, sends a number.
    frame = COINLOCALLY_EXECUTION_REPORT.replace('"i": "2690536306533246156"', '"i": 2690536306533246156')
    assert single_event(Parser()(frame)) == COINLOCALLY_ORDER_EVENT


def test_absent_optional_order_fields_are_none_not_guessed() -> None:
    frame = (
        '{"e":"executionReport","E":5,"S":"BUY","s":"ETHBTC","X":"NEW","i":"9","o":"MARKET","q":"2","z":"0"}'
    )
    order = single_event(Parser()(frame))
    assert to_dict(order) == {
        "kind": "order",
        "exchange": "coinlocally",
        "account": "default",
        "timestamp": 5,
        "source": "stream",
        "id": "9",
        "symbol": "ETH/BTC",
        "raw_symbol": "ETHBTC",
        "side": "buy",
        "type": "market",
        "raw_type": "MARKET",
        "status": "open",
        "raw_status": "NEW",
        "price": None,
        "amount": "2",
        "filled": "0",
        "remaining": "2",
        "cost": None,
        "last_fill_amount": None,
        "last_fill_price": None,
        "fee": None,
        "created_at": None,
    }


# --- statuses, types, sides -----------------------------------------------------------------------------

STATUS_TABLE = {
    "NEW": OrderStatus.OPEN,
    "PART_FILLED": OrderStatus.OPEN,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "FILLED": OrderStatus.CLOSED,
    "CANCELED": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}
TYPE_TABLE = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}


def execution_report_with(**changes: str) -> str:
    message = json.loads(COINLOCALLY_EXECUTION_REPORT)
    message.update(changes)
    return json.dumps(message)


@pytest.mark.parametrize(("raw_status", "status"), list(STATUS_TABLE.items()))
def test_every_status(raw_status: str, status: OrderStatus) -> None:
    order = single_event(Parser()(execution_report_with(X=raw_status)))
    assert isinstance(order, OrderUpdate)
    assert (order.status, order.raw_status) == (status, raw_status)


@pytest.mark.parametrize("raw_status", ["TRIGGERED", "PARTIALLY_FILLED", "new", ""])
def test_unknown_status_is_kept_raw_and_not_dropped(raw_status: str) -> None:
    order = single_event(Parser()(execution_report_with(X=raw_status)))
    assert isinstance(order, OrderUpdate)
    assert (order.status, order.raw_status) == (None, raw_status)
    assert order.filled == Decimal("0.17861112")


@pytest.mark.parametrize(
    ("raw_type", "order_type"),
    [*TYPE_TABLE.items(), ("STOP_LOSS_LIMIT", None), ("limit", None)],
)
def test_order_types(raw_type: str, order_type: OrderType | None) -> None:
    order = single_event(Parser()(execution_report_with(o=raw_type)))
    assert isinstance(order, OrderUpdate)
    assert (order.type, order.raw_type) == (order_type, raw_type)


@pytest.mark.parametrize(("raw_side", "side"), [("BUY", Side.BUY), ("SELL", Side.SELL)])
def test_sides(raw_side: str, side: Side) -> None:
    order = single_event(Parser()(execution_report_with(S=raw_side)))
    assert isinstance(order, OrderUpdate)
    assert order.side == side


def test_unknown_side_is_unknown_naming_the_field() -> None:
    frame = execution_report_with(S="HOLD")
    assert Parser()(frame) == Unknown(frame, "unknown side 'HOLD'", UnknownKind.MALFORMED)
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse(frame)
    assert caught.value.field == "$.S"


# --- control frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "connect success",
        b"connect success",
        '"connect success"',
        gzip_bytes(b"connect success"),
        gzip_bytes(b'"connect success"'),
        "connect success\n",
    ],
)
def test_connect_success_in_every_spelling(frame: bytes | str) -> None:
    assert Parser()(frame) == ControlReply("connect success")


@pytest.mark.parametrize(
    "frame", ["sub success", '"sub success"', gzip_bytes(b"sub success"), b'"sub success"']
)
def test_sub_success_in_every_spelling(frame: bytes | str) -> None:
    assert Parser()(frame) == ControlReply("sub success")


@ENCODINGS
def test_pong(encode: Any) -> None:
    assert Parser()(encode(COINLOCALLY_PONG)) == Pong(1713338308233)


@ENCODINGS
def test_server_ping(encode: Any) -> None:
    assert Parser()(encode(COINLOCALLY_PING)) == Ping(1713338308232)


@ENCODINGS
def test_system_close_notice(encode: Any) -> None:
    assert Parser()(encode(COINLOCALLY_SYSTEM_CLOSE)) == SystemClose(uid=24005174)


def test_system_close_without_uid() -> None:
    assert Parser()('{"channel":"SYSTEM","et":"close"}') == SystemClose(uid=None)


def test_render_system_close_is_gzip_of_the_document_shape() -> None:
    frame = render_system_close(24005174)
    assert json.loads(gunzip(frame)) == json.loads(COINLOCALLY_SYSTEM_CLOSE)
    assert Parser()(frame) == SystemClose(uid=24005174)


def test_error_frame() -> None:
    frame = render_error(4004, "sub token does not match the handshake")
    assert frame == '{"event":"error","code":4004,"message":"sub token does not match the handshake"}'
    assert Parser()(frame) == ErrorReply(4004, "sub token does not match the handshake")
    assert Parser()(gzip_bytes(frame.encode())) == ErrorReply(4004, "sub token does not match the handshake")
    assert Parser()('{"event":"error","code":1}') == ErrorReply(1, "")


def test_unrecognized_control_text_is_unknown() -> None:
    assert Parser()("hello") == Unknown("hello", "unrecognized text frame")
    # issue 12: a plain-text reply with a refusal word is a refusal (tests/protocol/test_refusal.py)
    assert Parser()('"sub failed"') == ErrorReply(None, "sub failed")
    assert Parser()("{}") == Unknown("{}", "unrecognized message (no known keys)")
    assert Parser()('{"channel":"SYSTEM","et":"open"}') == Unknown(
        '{"channel":"SYSTEM","et":"open"}', "unrecognized message (no known keys)"
    )


# --- rendering (server side) ----------------------------------------------------------------------------


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


# --- the bad-input corpus -------------------------------------------------------------------------------

GZIPPED_REPORT = gzip_bytes(COINLOCALLY_EXECUTION_REPORT.encode())
FORTY_ONE_DIGITS = "12345678901234567890123456789012345678901"
SIXTY_FIVE_DIGITS = "1" * 65
GZIP_BOMB = gzip_bytes(b" " * (DEFAULT_MAX_FRAME + 1))


def corrupted(frame: bytes) -> bytes:
    damaged = bytearray(frame)
    damaged[-6] ^= 0xFF
    return bytes(damaged)


# (frame, the typed error Parser.parse raises (None: it returns Unknown itself), reason fragment)
BAD_FRAMES: dict[str, tuple[bytes | str, type[Exception] | None, str]] = {
    "truncated gzip": (GZIPPED_REPORT[:-8], FrameDecodeError, "truncated gzip frame"),
    "gzip header only": (GZIPPED_REPORT[:10], FrameDecodeError, "truncated gzip frame"),
    "corrupt gzip": (corrupted(GZIPPED_REPORT), FrameDecodeError, "corrupt gzip frame"),
    "gzip then garbage": (GZIPPED_REPORT + b"x", FrameDecodeError, "trailing bytes"),
    "gzip of broken JSON": (gzip_bytes(b'{"e": "executionReport",'), FrameDecodeError, "not JSON"),
    "gzip of binary junk": (gzip_bytes(b"\x00\x01\x02junk"), None, "unrecognized text frame"),
    "gzip bomb": (GZIP_BOMB, FrameDecodeError, "inflates past the 1048576-byte limit"),
    "empty bytes": (b"", FrameDecodeError, "empty frame"),
    "empty text": ("", FrameDecodeError, "empty frame"),
    "whitespace": (" \n", FrameDecodeError, "empty frame"),
    "10 MB text": ("{" * 10_000_000, FrameDecodeError, "exceeds"),
    "10 MB bytes": (b"{" * 10_000_000, FrameDecodeError, "exceeds"),
    "non-UTF-8 bytes": (b'{"e":"executionReport","s":"\xff\xfe"}', FrameDecodeError, "not UTF-8"),
    "non-UTF-8 gzip": (gzip_bytes(b"\xc3\x28"), FrameDecodeError, "not UTF-8"),
    "trailing JSON garbage": ('{"pong": 1} }', FrameDecodeError, "not JSON"),
    "unknown e": ('{"e":"balanceUpdate","E":1}', None, "unknown event type 'balanceUpdate'"),
    "e not a string": ('{"e":5}', None, "unknown event type 5"),
    "JSON array": ("[1, 2]", None, "unrecognized text frame"),
    "JSON number": ("42", None, "unrecognized text frame"),
    "JSON null": ("null", None, "unrecognized text frame"),
    "missing fields": ('{"e":"executionReport"}', MessageShapeError, "missing required field"),
    "E as text": (
        execution_report_with(E="1745389508472"),
        MessageShapeError,
        "Expected `int`, got `str` - at `$.E`",
    ),
    "41-digit E": (
        COINLOCALLY_EXECUTION_REPORT.replace("1745389508472", FORTY_ONE_DIGITS),
        MessageShapeError,
        "$.E",
    ),
    "41-digit O": (
        COINLOCALLY_EXECUTION_REPORT.replace("1745389507000", FORTY_ONE_DIGITS),
        MessageShapeError,
        "$.O",
    ),
    "41-digit numeric i": (
        COINLOCALLY_EXECUTION_REPORT.replace('"2690536306533246156"', FORTY_ONE_DIGITS),
        MessageShapeError,
        "$.i",
    ),
    "41-digit ping": ('{"ping": ' + FORTY_ONE_DIGITS + "}", MessageShapeError, "$.ping"),
    "65-digit decimal": (
        execution_report_with(q=SIXTY_FIVE_DIGITS),
        MessageShapeError,
        "$.q: more than 64 significant digits",
    ),
    "huge exponent": (
        COINLOCALLY_EXECUTION_REPORT.replace('"p": "13000"', '"p": 1e400'),
        MessageShapeError,
        "$.p: exponent out of range",
    ),
    "65-digit fee": (
        execution_report_with(n=SIXTY_FIVE_DIGITS),
        MessageShapeError,
        "$.n: more than 64 significant digits",
    ),
    "the first bad value is named": (
        execution_report_with(L="Infinity", Z=SIXTY_FIVE_DIGITS),
        MessageShapeError,
        "$.Z: more than 64 significant digits",
    ),
    "a bad locked, not the first asset": (
        MULTI_ASSET.replace('"l":2.0E-5', '"l":"sNaN"'),
        MessageShapeError,
        "$.B[1].l: not a finite number",
    ),
    "NaN balance": (
        MULTI_ASSET.replace('"f":2', '"f":"NaN"'),
        MessageShapeError,
        "$.B[2].f: not a finite number",
    ),
    "decimal not a number": (
        execution_report_with(z="abc"),
        MessageShapeError,
        "$.z",
    ),
    "decimal as bool": (
        MULTI_ASSET.replace('"f":2', '"f":true'),
        MessageShapeError,
        "Expected `decimal`, got `bool` - at `$.B[2].f`",
    ),
    "B not a list": (
        '{"e":"outboundAccountPosition","E":1,"B":{"a":"ETH"}}',
        MessageShapeError,
        "Expected `array`, got `object` - at `$.B`",
    ),
    "B entry not an object": (
        '{"e":"outboundAccountPosition","E":1,"B":["ETH"]}',
        MessageShapeError,
        "$.B[0]",
    ),
    "negative E": (execution_report_with(E=-1), MessageShapeError, "$.E"),  # type: ignore[arg-type]
    "ping as text": ('{"ping":"soon"}', MessageShapeError, "$.ping"),
    "negative pong": ('{"pong":-1}', MessageShapeError, "$.pong"),
    "uid as text": (
        '{"uid":"24005174","channel":"SYSTEM","et":"close"}',
        MessageShapeError,
        "$.uid",
    ),
    "quoted string broken": ('"connect success', FrameDecodeError, "neither a control reply"),
}


@pytest.mark.parametrize(("frame", "error", "reason"), BAD_FRAMES.values(), ids=list(BAD_FRAMES))
def test_bad_input_is_unknown_with_a_reason(
    frame: bytes | str, error: type[Exception] | None, reason: str
) -> None:
    incoming = Parser()(frame)
    assert isinstance(incoming, Unknown)
    assert reason in incoming.reason
    assert "internal error" not in incoming.reason
    assert len(incoming.raw) <= 512


@pytest.mark.parametrize(("frame", "error", "reason"), BAD_FRAMES.values(), ids=list(BAD_FRAMES))
def test_bad_input_raises_a_typed_error_from_parse(
    frame: bytes | str, error: type[Exception] | None, reason: str
) -> None:
    if error is None:
        assert isinstance(Parser().parse(frame), Unknown)
        return
    with pytest.raises(error) as caught:
        Parser().parse(frame)
    assert reason in str(caught.value)


def test_the_gzip_bomb_is_about_a_kibibyte() -> None:
    assert len(GZIP_BOMB) < 1100
    assert len(gunzip(GZIP_BOMB, max_size=2 * DEFAULT_MAX_FRAME)) > DEFAULT_MAX_FRAME


def test_unknown_keeps_a_readable_truncated_preview() -> None:
    big = "{" * 10_000_000
    incoming = Parser()(big)
    assert incoming == Unknown(
        "{" * 512, "frame of 10000000 characters exceeds the 1048576 limit", UnknownKind.UNDECODABLE
    )
    assert Parser(max_frame=8)(b'{"ping": 12345}') == Unknown(
        '{"ping": 12345}', "frame of 15 bytes exceeds the 8-byte limit", UnknownKind.UNDECODABLE
    )


def test_shape_errors_name_the_field() -> None:
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse(MULTI_ASSET.replace('"f":2', '"f":"NaN"'))
    assert caught.value.field == "$.B[2].f"


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_input_never_raises(frame: bytes | str) -> None:
    assert isinstance(
        Parser()(frame), ControlReply | ErrorReply | Ping | Pong | SystemClose | DataEvents | Unknown
    )


@given(st.integers(0, len(GZIPPED_REPORT) - 1), st.integers(1, 255))
def test_damaged_gzip_frames_never_raise(position: int, flip: int) -> None:
    damaged = bytearray(GZIPPED_REPORT)
    damaged[position] ^= flip
    incoming = Parser()(bytes(damaged))
    assert isinstance(incoming, DataEvents | Unknown)


@given(st.integers(0, len(COINLOCALLY_EXECUTION_REPORT) - 1), st.characters())
def test_mutated_document_frames_never_raise(position: int, character: str) -> None:
    mutated = (
        COINLOCALLY_EXECUTION_REPORT[:position] + character + COINLOCALLY_EXECUTION_REPORT[position + 1 :]
    )
    incoming = Parser()(mutated)
    if isinstance(incoming, Unknown):
        assert "internal error" not in incoming.reason


# --- the client's frames (server side) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        '{"event":"sub","token":"tok-1"}',
        b'{"event": "sub", "token": "tok-1"}',
        gzip_bytes(b'{"event":"sub","token":"tok-1"}'),
        sub_frame(Credentials(token="tok-1")),
    ],
)
def test_client_sub_frame(frame: bytes | str) -> None:
    assert parse_client_frame(frame) == SubRequest("tok-1")


def test_sub_request_repr_hides_the_token() -> None:
    assert repr(SubRequest("tok-1")) == "SubRequest(token=<hidden>)"


@pytest.mark.parametrize("frame", [ping_frame(1713338308232), COINLOCALLY_PING.encode()])
def test_client_ping_frame(frame: bytes | str) -> None:
    assert parse_client_frame(frame) == PingRequest(1713338308232)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"event":"sub"}', "sub frame without a string token"),
        ('{"event":"sub","token":7}', "sub frame without a string token"),
        ('{"ping":"now"}', "$.ping"),
        ('{"ping":-5}', "$.ping"),
        ('{"event":"unsub","token":"t"}', "unrecognized client frame"),
        ("{}", "unrecognized client frame"),
        ("[1]", "not a JSON object"),
        ("ping", "not a JSON object"),
        ("", "not a JSON object"),
        (b"", "not a JSON object"),
        (b'{"ping":1,"x":"\xff"}', "frame is not UTF-8"),
        ('{"ping":1}' + " " * 4096, "exceeds the 4096"),
        (b'{"ping":1}' + b" " * 4096, "exceeds the 4096"),
        (gzip_bytes(b" " * 5000), "inflates past the 4096-byte limit"),
        (gzip_bytes(b'{"ping":1}')[:-3], "truncated gzip frame"),
    ],
)
def test_bad_client_frames_are_unknown(frame: bytes | str, reason: str) -> None:
    incoming = parse_client_frame(frame)
    assert isinstance(incoming, Unknown)
    assert reason in incoming.reason


def test_bad_client_frames_never_show_a_token() -> None:
    incoming = parse_client_frame('{"event":"sub","token":"s3cret"')
    assert isinstance(incoming, Unknown)
    assert "s3cret" not in incoming.raw + incoming.reason
    gzipped = parse_client_frame(gzip_bytes(b'{"event":"sub","token":"s3cret"')[:-2])
    assert isinstance(gzipped, Unknown)
    assert "s3cret" not in gzipped.raw + gzipped.reason


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_client_input_never_raises(frame: bytes | str) -> None:
    assert isinstance(parse_client_frame(frame), SubRequest | PingRequest | Unknown)


# --- impossible values (docs/events.md, "Impossible values") ---------------------------------------------


@pytest.mark.parametrize(
    ("frame", "field", "message"),
    [
        (
            MULTI_ASSET.replace('"f":0.5155', '"f":-0.5155'),
            "$.B[1].f",
            "$.B[1].f: a balance cannot be negative, got -0.5155",
        ),
        (
            MULTI_ASSET.replace('"l":"1234.5678"', '"l":"-1234.5678"'),
            "$.B[2].l",
            "$.B[2].l: a balance cannot be negative, got -1234.5678",
        ),
        (execution_report_with(q="-1"), "$.q", "$.q: cannot be negative, got -1"),
        (execution_report_with(z="-0.17861112"), "$.z", "$.z: cannot be negative, got -0.17861112"),
        (execution_report_with(p="-13000"), "$.p", "$.p: cannot be negative, got -13000"),
        (execution_report_with(Z="-2321.94456"), "$.Z", "$.Z: cannot be negative, got -2321.94456"),
        (execution_report_with(l="-0.1"), "$.l", "$.l: cannot be negative, got -0.1"),
        (execution_report_with(L="-13000"), "$.L", "$.L: cannot be negative, got -13000"),
        (
            execution_report_with(o="MARKET", p="-1"),
            "$.p",
            "$.p: cannot be negative, got -1",
        ),
        (execution_report_with(p="0"), "$.p", "$.p: a limit order's price must be positive, got 0"),
        (
            execution_report_with(z="1.5"),
            "$.z",
            "$.z: the filled quantity 1.5 exceeds the limit order's amount 1",
        ),
        (
            execution_report_with(l="0.2"),
            "$.l",
            "$.l: the execution's quantity 0.2 exceeds the order's filled quantity 0.17861112",
        ),
        (
            execution_report_with(L="0"),
            "$.L",
            "$.L: an execution of 0.1000000000000000 at a price of 0",
        ),
    ],
)
def test_an_impossible_value_is_a_malformed_frame_naming_the_field(
    frame: str, field: str, message: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse(frame)
    assert (caught.value.field, str(caught.value)) == (field, message)
    assert Parser()(frame) == Unknown(frame, message, UnknownKind.MALFORMED)
    assert Parser()(as_gzip_binary(frame)) == Unknown(frame, message, UnknownKind.MALFORMED)


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (execution_report_with(n="-7.8"), "fee", Decimal("-7.8")),  # a negative commission is a rebate
        (execution_report_with(l="0", L="0"), "last_fill_price", Decimal("0")),  # no execution, no price
        (execution_report_with(l="0.17861112"), "last_fill_amount", Decimal("0.17861112")),  # l == z
        (execution_report_with(z="1", l="0.1"), "remaining", Decimal("0")),  # filled == amount
        # A quote-quantity market order (Binance's quoteOrderQty) reports q 0 and a price of 0.
        (execution_report_with(o="MARKET", q="0", p="0"), "remaining", Decimal("-0.17861112")),
    ],
)
def test_possible_edge_values_are_accepted(frame: str, name: str, value: Decimal) -> None:
    assert getattr(single_event(Parser()(frame)), name) == value


def test_a_negative_zero_balance_is_a_zero() -> None:
    frame = MULTI_ASSET.replace('"l":"0.000000"', '"l":"-0.000000"')
    first = Parser()(frame).events[0]  # type: ignore[union-attr]
    assert isinstance(first, BalanceUpdate)
    assert first.locked == 0


def test_unknown_kinds_tell_broken_frames_from_news() -> None:
    assert Parser()(b"\x1f\x8b\x08\x00broken").kind is UnknownKind.UNDECODABLE  # type: ignore[union-attr]
    assert Parser()("{not json").kind is UnknownKind.UNDECODABLE  # type: ignore[union-attr]
    assert Parser()(execution_report_with(q="one")).kind is UnknownKind.MALFORMED  # type: ignore[union-attr]
    assert Parser()('{"ping":"soon"}').kind is UnknownKind.MALFORMED  # type: ignore[union-attr]
    assert Parser()('{"e":"listStatus","E":1}').kind is UnknownKind.UNKNOWN  # type: ignore[union-attr]
    assert Parser()("hello").kind is UnknownKind.UNKNOWN  # type: ignore[union-attr]
