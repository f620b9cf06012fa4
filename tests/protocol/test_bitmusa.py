"""protocol/bitmusa.py: the document's payloads as vectors, words, constants, bad input, round trips."""

from __future__ import annotations

import gzip
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.bitmusa_paths import listen_key_from_ws_path
from support.examples import (
    BITMUSA_LISTEN_KEY,
    BITMUSA_ORDER,
    BITMUSA_ORDER_EVENT,
    BITMUSA_WALLET,
    BITMUSA_WALLET_EVENT,
)
from userstream.errors import FrameDecodeError, LocalProtocolError, MessageShapeError, UserStreamError
from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.money import checked, exact_sub
from userstream.protocol import bitmusa
from userstream.protocol.bitmusa import Parser
from userstream.protocol.bitmusa_render import render_event
from userstream.protocol.messages import DataEvents, Unknown, UnknownKind


def exact_fields(event: BalanceUpdate | OrderUpdate) -> dict[str, object]:
    """Every field but `raw`, Decimals as their text: 2 and 2.0 are equal, but not the same wire text."""
    out: dict[str, object] = {}
    for name in event.__struct_fields__:
        if name == "raw":
            continue
        value = getattr(event, name)
        out[name] = ("Decimal", str(value)) if isinstance(value, Decimal) else value
    return out


def ordered_json(text: str | bytes) -> Any:
    """JSON with key order kept and numbers as exact Decimals: equal means same keys, order and values."""
    return json.loads(text, parse_float=Decimal, object_pairs_hook=list)


# The document's order `data` fields as the JSON literals it writes ('"BUY"', '0.5155', 'null'), read off the
# verbatim payload: its `data` fields are the lines indented by four spaces.
DOC_ORDER_DATA_LITERALS = dict(re.findall(r'^    "(\w+)": (.*?),?$', BITMUSA_ORDER, flags=re.MULTILINE))


def order_frame(**data_literals: str) -> str:
    """The document's order frame with some `data` fields replaced by raw JSON literals (or removed: "")."""
    data = dict(DOC_ORDER_DATA_LITERALS)
    data.update(data_literals)
    fields = ",".join(f'"{name}":{literal}' for name, literal in data.items() if literal)
    return '{"data":{' + fields + '},"stream":"spot_order","eventTime":1700703548846}'


def wallet_frame(
    free: str = '"1132800.449"', locked: str = '"80669.91"', event_time: str = "1700703548846"
) -> str:
    return (
        '{"data":{"asset":"USDT","free":' + free + ',"locked":' + locked + "},"
        '"stream":"spot_wallet","eventTime":' + event_time + "}"
    )


def only_event(frame: str | bytes, account: str = "default") -> BalanceUpdate | OrderUpdate:
    result = Parser(account)(frame)
    assert isinstance(result, DataEvents), result
    assert len(result.events) == 1
    return result.events[0]


# --- the document's payloads as test vectors ---------------------------------------------------------


def test_doc_wallet_payload_parses_to_the_exact_balance_update() -> None:
    event = only_event(BITMUSA_WALLET)
    assert event == BITMUSA_WALLET_EVENT
    assert exact_fields(event) == exact_fields(BITMUSA_WALLET_EVENT)
    assert isinstance(event, BalanceUpdate)
    assert event.total == Decimal("1213470.359")
    assert event.raw == BITMUSA_WALLET


def test_doc_order_payload_parses_to_the_exact_order_update() -> None:
    event = only_event(BITMUSA_ORDER)
    assert event == BITMUSA_ORDER_EVENT
    assert exact_fields(event) == exact_fields(BITMUSA_ORDER_EVENT)
    assert event.raw == BITMUSA_ORDER


def test_doc_payloads_parse_the_same_from_bytes_and_from_decoded_objects() -> None:
    assert Parser()(BITMUSA_ORDER.encode()) == DataEvents((BITMUSA_ORDER_EVENT,))
    assert Parser()(BITMUSA_WALLET.encode()) == DataEvents((BITMUSA_WALLET_EVENT,))
    decoded = json.loads(BITMUSA_ORDER, parse_float=Decimal)
    assert bitmusa.Parser().parse_message(decoded) == DataEvents((BITMUSA_ORDER_EVENT,))


def test_parser_labels_events_with_its_account() -> None:
    event = only_event(BITMUSA_WALLET, account="desk-7")
    assert event.account == "desk-7"


def test_rendering_the_doc_wallet_event_gives_the_doc_payload() -> None:
    rendered = render_event(BITMUSA_WALLET_EVENT)
    assert ordered_json(rendered) == ordered_json(BITMUSA_WALLET)
    assert rendered == (
        '{"data":{"asset":"USDT","free":"1132800.449","locked":"80669.91"},'
        '"stream":"spot_wallet","eventTime":1700703548846}'
    )


def test_rendering_the_doc_order_event_gives_the_doc_payload() -> None:
    rendered = render_event(BITMUSA_ORDER_EVENT)
    assert ordered_json(rendered) == ordered_json(BITMUSA_ORDER)
    # Numbers where the document has numbers, written as the document writes them.
    assert '"price":0.5155,' in rendered
    assert '"amount":2,"tradedAmount":0,"value":0,' in rendered
    assert rendered == "".join(line.strip() for line in BITMUSA_ORDER.splitlines()).replace(": ", ":")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0.5155", "0.5155"),
        ("2", "2"),
        ("2.0E-5", "0.000020"),
        ("0.10000", "0.10000"),  # trailing zeros are what the exchange wrote
        ('"0.5155"', "0.5155"),  # a string is read exactly too
        ("1234567890123456789012345678901234567890", "1234567890123456789012345678901234567890"),
        # docs/events.md bounds money at 64 significant digits: 41 digits are exact, not refused
        ("12345678901234567890123456789012345678901", "12345678901234567890123456789012345678901"),
    ],
)
def test_price_is_the_exact_wire_text(literal: str, expected: str) -> None:
    event = only_event(order_frame(price=literal))
    assert isinstance(event, OrderUpdate)
    assert str(event.price) == expected


def test_forty_digit_quantities_subtract_exactly() -> None:
    amount = "9999999999999999999999999999999999999999"
    filled = "0.000000000000000000000000000000000000001"
    event = only_event(order_frame(amount=amount, tradedAmount=filled))
    assert isinstance(event, OrderUpdate)
    assert (
        str(event.remaining)
        == "9999999999999999999999999999999999999998.999999999999999999999999999999999999999"
    )


def test_nullable_fields_are_read_as_none() -> None:
    event = only_event(order_frame(price="null", value="null", createdTime="null"))
    assert isinstance(event, OrderUpdate)
    assert (event.price, event.cost, event.created_at) == (None, None, None)


def test_end_times_may_be_integers_or_absent() -> None:
    closed = only_event(order_frame(status='"COMPLETED"', completedTime="1700703548846", canceledTime=""))
    assert isinstance(closed, OrderUpdate)
    assert closed.status == OrderStatus.CLOSED


# --- the document's word lists -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("TRADING", OrderStatus.OPEN),
        ("COMPLETED", OrderStatus.CLOSED),
        ("CANCELED", OrderStatus.CANCELED),
        ("OVERTIMED", OrderStatus.EXPIRED),
    ],
)
def test_every_documented_status_normalizes(word: str, status: OrderStatus) -> None:
    event = only_event(order_frame(status=json.dumps(word)))
    assert isinstance(event, OrderUpdate)
    assert (event.status, event.raw_status) == (status, word)


@pytest.mark.parametrize(
    ("word", "order_type"), [("LIMIT_PRICE", OrderType.LIMIT), ("MARKET_PRICE", OrderType.MARKET)]
)
def test_every_documented_type_normalizes(word: str, order_type: OrderType) -> None:
    event = only_event(order_frame(type=json.dumps(word)))
    assert isinstance(event, OrderUpdate)
    assert (event.type, event.raw_type) == (order_type, word)


@pytest.mark.parametrize(("word", "side"), [("BUY", Side.BUY), ("SELL", Side.SELL)])
def test_every_documented_direction_normalizes(word: str, side: Side) -> None:
    event = only_event(order_frame(direction=json.dumps(word)))
    assert isinstance(event, OrderUpdate)
    assert event.side == side


def test_unknown_status_is_kept_raw_and_the_event_is_not_dropped() -> None:
    event = only_event(order_frame(status='"PARTIALLY_TRADED"'))
    assert isinstance(event, OrderUpdate)
    assert (event.status, event.raw_status) == (None, "PARTIALLY_TRADED")
    assert event.id == "C171558199502193"


def test_unknown_type_is_kept_raw() -> None:
    event = only_event(order_frame(type='"STOP_LIMIT"'))
    assert isinstance(event, OrderUpdate)
    assert (event.type, event.raw_type) == (None, "STOP_LIMIT")


def test_unknown_direction_is_unknown_not_an_order() -> None:
    frame = order_frame(direction='"HOLD"')
    assert Parser()(frame) == Unknown(
        raw=frame[:512], reason="unknown direction 'HOLD'", kind=UnknownKind.MALFORMED
    )


# --- bad input: never an exception from the parser -----------------------------------------------------

TEN_MB = 10 * 1024 * 1024

BAD_FRAMES: list[tuple[str, str | bytes, type[UserStreamError], str | None]] = [
    ("empty text", "", FrameDecodeError, None),
    ("empty bytes", b"", FrameDecodeError, None),
    ("truncated JSON", BITMUSA_ORDER[:-20], FrameDecodeError, None),
    ("not JSON", "hello", FrameDecodeError, None),
    ("JSON array", "[]", MessageShapeError, "$"),
    ("JSON null", "null", MessageShapeError, "$"),
    ("JSON string", '"spot_wallet"', MessageShapeError, "$"),
    ("price true", order_frame(price="true"), MessageShapeError, "$.data.price"),
    ("price text", order_frame(price='"abc"'), MessageShapeError, "$.data.price"),
    ("amount null", order_frame(amount="null"), MessageShapeError, "$.data.amount"),
    ("orderId number", order_frame(orderId="171558199502193"), MessageShapeError, "$.data.orderId"),
    ("missing orderId", order_frame(orderId=""), MessageShapeError, "$.data.orderId"),
    ("createdTime text", order_frame(createdTime='"1715581995021"'), MessageShapeError, "$.data.createdTime"),
    ("canceledTime text", order_frame(canceledTime='"x"'), MessageShapeError, "$.data.canceledTime"),
    ("41-digit eventTime", wallet_frame(event_time="1" * 41), MessageShapeError, "$.eventTime"),
    ("eventTime 2**63", wallet_frame(event_time=str(2**63)), MessageShapeError, "$.eventTime"),
    ("negative eventTime", wallet_frame(event_time="-1"), MessageShapeError, "$.eventTime"),
    ("float eventTime", wallet_frame(event_time="1700703548846.5"), MessageShapeError, "$.eventTime"),
    ("65-digit price", order_frame(price="1" * 65), MessageShapeError, "$.data.price"),
    ("price 1e400", order_frame(price="1e400"), MessageShapeError, "$.data.price"),
    ("tiny value", order_frame(value="1e-400"), MessageShapeError, "$.data.value"),
    (
        "the first bad value is named",
        order_frame(tradedAmount="1e99", value="1e-400"),
        MessageShapeError,
        "$.data.tradedAmount",
    ),
    ("bare NaN", order_frame(price="NaN"), FrameDecodeError, None),
    ("NaN string", wallet_frame(free='"NaN"'), MessageShapeError, "$.data.free"),
    ("Infinity string", wallet_frame(locked='"Infinity"'), MessageShapeError, "$.data.locked"),
    ("free true", wallet_frame(free="true"), MessageShapeError, "$.data.free"),
    ("unknown stream", '{"data":{},"stream":"spot_margin","eventTime":1}', MessageShapeError, "$.stream"),
    ("stream number", '{"data":{},"stream":5,"eventTime":1}', MessageShapeError, "$.stream"),
    ("missing stream", '{"data":{},"eventTime":1}', MessageShapeError, "$.stream"),
    ("missing data", '{"stream":"spot_order","eventTime":1700703548846}', MessageShapeError, "$.data"),
    ("null data", '{"data":null,"stream":"spot_wallet","eventTime":1}', MessageShapeError, "$.data"),
    (
        "missing asset",
        '{"data":{"free":"1","locked":"1"},"stream":"spot_wallet","eventTime":1}',
        MessageShapeError,
        "$.data.asset",
    ),
    (
        "missing eventTime",
        '{"data":{"asset":"A","free":"1","locked":"1"},"stream":"spot_wallet"}',
        MessageShapeError,
        "$.eventTime",
    ),
    ("unknown direction", order_frame(direction='"HOLD"'), MessageShapeError, "$.data.direction"),
    ("deep nesting", '{"data":' + "[" * 100_000, FrameDecodeError, None),
    ("deep nesting, closed", '{"data":' + "[" * 100_000 + "]" * 100_000 + "}", FrameDecodeError, None),
    (
        "deep nesting, stream first",
        '{"stream":"spot_wallet","data":' + "[" * 100_000,
        MessageShapeError,
        "$.data",
    ),
    ("invalid UTF-8", b'{"data":{"asset":"\xff"}}', FrameDecodeError, None),
    ("truncated gzip", gzip.compress(BITMUSA_WALLET.encode())[:-8], FrameDecodeError, None),
    ("gzip of non-JSON", gzip.compress(b"not json"), FrameDecodeError, None),
    ("10 MB text", '{"data":"' + "x" * TEN_MB + '"}', FrameDecodeError, None),
    ("10 MB bytes", b" " * TEN_MB + BITMUSA_WALLET.encode(), FrameDecodeError, None),
]


@pytest.mark.parametrize(
    ("frame", "error", "field"),
    [pytest.param(frame, error, field, id=name) for name, frame, error, field in BAD_FRAMES],
)
def test_bad_frame_is_unknown_with_the_typed_error_as_reason(
    frame: str | bytes, error: type[UserStreamError], field: str | None
) -> None:
    with pytest.raises(error) as caught:
        Parser().parse_message(frame)
    if field is not None:
        assert isinstance(caught.value, MessageShapeError)
        assert caught.value.field == field
    result = Parser()(frame)
    assert isinstance(result, Unknown)
    assert result.reason
    assert result.reason == str(caught.value)[:300] + ("..." if len(str(caught.value)) > 300 else "")
    expected_raw = frame[:512] if isinstance(frame, str) else frame[:2048].decode("utf-8", "replace")[:512]
    assert result.raw == expected_raw


def test_unknown_stream_reason_names_the_stream() -> None:
    result = Parser()('{"data":{},"stream":"spot_margin","eventTime":1}')
    assert result == Unknown(
        raw='{"data":{},"stream":"spot_margin","eventTime":1}',
        reason="unknown stream: Invalid value 'spot_margin' - at `$.stream`",
    )


def test_out_of_bounds_money_names_the_field() -> None:
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse_message(order_frame(price="1" * 65))
    assert str(caught.value) == "$.data.price: more than 64 significant digits"


def test_gzip_frames_are_accepted_too() -> None:
    assert Parser()(gzip.compress(BITMUSA_WALLET.encode())) == DataEvents((BITMUSA_WALLET_EVENT,))


def test_decoded_object_of_the_wrong_shape_is_a_shape_error() -> None:
    with pytest.raises(MessageShapeError) as caught:
        bitmusa.Parser().parse_message({"data": {"asset": "USDT"}, "stream": "spot_wallet", "eventTime": 1})
    assert caught.value.field == "$.data.free"
    with pytest.raises(MessageShapeError):
        bitmusa.Parser().parse_message([1, 2])  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_parser_never_raises_on_any_bytes(frame: bytes) -> None:
    assert isinstance(Parser()(frame), DataEvents | Unknown)


@given(st.text(max_size=300))
def test_parser_never_raises_on_any_text(frame: str) -> None:
    assert isinstance(Parser()(frame), DataEvents | Unknown)


@given(st.sampled_from([BITMUSA_WALLET, BITMUSA_ORDER]), st.data())
def test_parser_never_raises_on_mangled_documents(document: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(document)))
    end = data.draw(st.integers(start, len(document)))
    insert = data.draw(st.text(max_size=20))
    mangled = document[:start] + insert + document[end:]
    assert isinstance(Parser()(mangled), DataEvents | Unknown)


# --- round trip: render then parse gives the event back ------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
_MILLIS = st.integers(0, 2**63 - 1)


def _decimal_from(sign: int, coefficient: int, exponent: int) -> Decimal:
    return Decimal((sign, tuple(int(digit) for digit in str(coefficient)), exponent))


def _within_bounds(value: Decimal) -> bool:
    try:
        checked(value)
    except ValueError:
        return False
    return True


EXACT_DECIMALS = st.one_of(
    st.builds(_decimal_from, st.integers(0, 1), st.integers(0, 10**40 - 1), st.integers(-80, 64)).filter(
        _within_bounds
    ),
    st.sampled_from(
        [
            Decimal("9" * 40),
            Decimal("0." + "0" * 20 + "1" * 40),
            Decimal("1132800.449"),
            Decimal("0.5155"),
            Decimal("2.0E-5"),
            Decimal("0.1000000000000000"),
            Decimal("0"),
        ]
    ),
)

# (normalized, raw) pairs consistent with Bitmusa's tables: a known word, or an unknown word kept raw.
STATUS_PAIRS = st.one_of(
    st.sampled_from(sorted((status, word) for word, status in bitmusa.STATUSES.items())),
    st.tuples(st.none(), _TEXT.filter(lambda word: word not in bitmusa.STATUSES)),
)
TYPE_PAIRS = st.one_of(
    st.sampled_from(sorted((order_type, word) for word, order_type in bitmusa.ORDER_TYPES.items())),
    st.tuples(st.none(), _TEXT.filter(lambda word: word not in bitmusa.ORDER_TYPES)),
)


# Quantities, prices and balances are never negative (docs/events.md, "Impossible values"): a copy_abs
# keeps every digit (abs() would round to the context's 28 digits).
POSSIBLE_DECIMALS = EXACT_DECIMALS.map(Decimal.copy_abs)


@st.composite
def bitmusa_orders(draw: st.DrawFn) -> OrderUpdate:
    """Possible orders: a limit order's filled is at most its amount and its price is positive."""
    status, raw_status = draw(STATUS_PAIRS)
    order_type, raw_type = draw(TYPE_PAIRS)
    symbol = draw(_TEXT)
    amount = draw(POSSIBLE_DECIMALS)
    filled = draw(POSSIBLE_DECIMALS)
    limit = order_type is OrderType.LIMIT
    if limit and filled > amount:
        amount, filled = filled, amount
    prices = POSSIBLE_DECIMALS.filter(bool) if limit else POSSIBLE_DECIMALS
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account=draw(_TEXT),
        timestamp=draw(_MILLIS),
        id=draw(_TEXT),
        symbol=symbol,
        raw_symbol=symbol,
        side=draw(st.sampled_from(Side)),
        type=order_type,
        raw_type=raw_type,
        status=status,
        raw_status=raw_status,
        price=draw(st.none() | prices),
        amount=amount,
        filled=filled,
        remaining=exact_sub(amount, filled),
        cost=draw(st.none() | POSSIBLE_DECIMALS),
        created_at=draw(st.none() | _MILLIS),
    )


BALANCES = st.builds(
    BalanceUpdate,
    exchange=st.just(Exchange.BITMUSA),
    account=_TEXT,
    timestamp=_MILLIS,
    asset=_TEXT,
    free=POSSIBLE_DECIMALS,
    locked=POSSIBLE_DECIMALS,
)


@given(st.one_of(BALANCES, bitmusa_orders()))
def test_render_then_parse_gives_the_event_back(event: BalanceUpdate | OrderUpdate) -> None:
    assert Parser(event.account)(render_event(event)) == DataEvents((event,))


def _same_wire_text(sent: Decimal | None, received: Decimal | None) -> bool:
    """The exact digits and exponent come back; only a zero's sign may not (JSON's -0 reads as 0)."""
    if sent is None or received is None or sent.is_zero():
        return sent == received
    return sent.as_tuple() == received.as_tuple()


@given(bitmusa_orders())
def test_order_quantities_keep_their_exact_text_through_a_round_trip(event: OrderUpdate) -> None:
    back = only_event(render_event(event), account=event.account)
    assert isinstance(back, OrderUpdate)
    for name in ("price", "amount", "filled", "cost"):
        assert _same_wire_text(getattr(event, name), getattr(back, name)), name


@given(st.builds(_decimal_from, st.integers(0, 1), st.integers(0, 10**70), st.integers(-200, 200)))
def test_money_bounds_on_the_wire_are_exactly_moneys_bounds(value: Decimal) -> None:
    result = Parser()(order_frame(price=str(value)))
    # The document's order is a limit order: its price must also be positive (docs/events.md).
    assert isinstance(result, DataEvents) == (_within_bounds(value) and value > 0)


def test_ws_paths() -> None:
    assert bitmusa.ws_path(BITMUSA_LISTEN_KEY) == "/ws/spot/cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"
    assert bitmusa.ws_url(BITMUSA_LISTEN_KEY) == (
        "wss://websocket.bitmusa.com:60002/ws/spot/cAUzPhRQYWX1a2cE528PeAgtErBE96QWP5HpwFMSEzUC"
    )
    assert bitmusa.ws_path("a/b?c") == "/ws/spot/a%2Fb%3Fc"
    assert listen_key_from_ws_path(bitmusa.ws_path("a/b?c")) == "a/b?c"
    assert listen_key_from_ws_path(bitmusa.ws_path(BITMUSA_LISTEN_KEY)) == BITMUSA_LISTEN_KEY
    assert listen_key_from_ws_path("/ws/spot/") is None
    assert listen_key_from_ws_path("/ws/spot/a/b") is None
    assert listen_key_from_ws_path("/ws/futures/a") is None
    with pytest.raises(LocalProtocolError):
        bitmusa.ws_path("")


def test_documented_constants() -> None:
    assert bitmusa.REST_BASE == "https://openapi.bitmusa.com"
    assert bitmusa.WS_BASE == "wss://websocket.bitmusa.com:60002"
    assert bitmusa.LISTEN_KEY_PATH == "/spot/userDataStream"
    assert bitmusa.WS_PATH_PREFIX == "/ws/spot/"
    assert bitmusa.LISTEN_KEY_VALIDITY_MS == 60 * 60 * 1000
    assert bitmusa.MAX_CONNECTION_AGE_MS == 24 * 60 * 60 * 1000
    assert (
        bitmusa.ERR_BAD_REQUEST,
        bitmusa.ERR_UNAUTHORIZED,
        bitmusa.ERR_LISTEN_KEY_NOT_FOUND,
        bitmusa.ERR_RATE_LIMITED,
    ) == (400001, 401001, 404001, 429001)
    assert sorted(bitmusa.STREAMS) == ["spot_order", "spot_wallet"]


# --- impossible values (docs/events.md, "Impossible values") -------------------------------------------


@pytest.mark.parametrize(
    ("frame", "field", "message"),
    [
        (wallet_frame(free='"-1"'), "$.data.free", "$.data.free: a balance cannot be negative, got -1"),
        (
            wallet_frame(locked="-0.5"),
            "$.data.locked",
            "$.data.locked: a balance cannot be negative, got -0.5",
        ),
        (order_frame(amount="-2"), "$.data.amount", "$.data.amount: cannot be negative, got -2"),
        (
            order_frame(tradedAmount="-1"),
            "$.data.tradedAmount",
            "$.data.tradedAmount: cannot be negative, got -1",
        ),
        (order_frame(price="-0.5155"), "$.data.price", "$.data.price: cannot be negative, got -0.5155"),
        (order_frame(value="-1.031"), "$.data.value", "$.data.value: cannot be negative, got -1.031"),
        (
            order_frame(type='"MARKET_PRICE"', price="-1"),
            "$.data.price",
            "$.data.price: cannot be negative, got -1",
        ),
        (
            order_frame(price="0"),
            "$.data.price",
            "$.data.price: a limit order's price must be positive, got 0",
        ),
        (
            order_frame(tradedAmount="2.5"),
            "$.data.tradedAmount",
            "$.data.tradedAmount: the filled quantity 2.5 exceeds the limit order's amount 2",
        ),
    ],
)
def test_an_impossible_value_is_a_malformed_frame_naming_the_field(
    frame: str, field: str, message: str
) -> None:
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse_message(frame)
    assert (caught.value.field, str(caught.value)) == (field, message)
    assert Parser()(frame) == Unknown(frame, message, UnknownKind.MALFORMED)


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (wallet_frame(free='"-0"'), "free", Decimal("0")),  # a negative zero is a zero
        (order_frame(price="null"), "price", None),  # not sent: null, never guessed
        # A market order's amount may be in the quote asset (a MARKET_PRICE buy spends `amount` USDT) and its
        # price 0: neither is judged.
        (order_frame(type='"MARKET_PRICE"', price="0", tradedAmount="3"), "remaining", Decimal("-1")),
        (order_frame(amount="0", tradedAmount="0"), "amount", Decimal("0")),
        (order_frame(tradedAmount="2", value="1.031"), "filled", Decimal("2")),  # filled == amount
    ],
)
def test_possible_edge_values_are_accepted(frame: str, name: str, value: Decimal | None) -> None:
    assert getattr(only_event(frame), name) == value


def test_the_first_impossible_value_is_named_in_the_documented_order() -> None:
    frame = order_frame(amount="-2", tradedAmount="-1", price="0")
    with pytest.raises(MessageShapeError) as caught:
        Parser().parse_message(frame)
    assert caught.value.field == "$.data.amount"


def test_unknown_kinds_tell_broken_frames_from_news() -> None:
    assert Parser()("not json").kind is UnknownKind.UNDECODABLE  # type: ignore[union-attr]
    assert Parser()(b"\xff\xfe").kind is UnknownKind.UNDECODABLE  # type: ignore[union-attr]
    assert Parser()(order_frame(amount='"two"')).kind is UnknownKind.MALFORMED  # type: ignore[union-attr]
    assert Parser()('{"code":10002,"msg":"token invalid"}').kind is UnknownKind.UNKNOWN  # type: ignore[union-attr]
    unknown_stream = '{"data":{},"stream":"spot_margin","eventTime":1}'
    assert Parser()(unknown_stream).kind is UnknownKind.UNKNOWN  # type: ignore[union-attr]


def test_a_message_without_a_stream_is_named_so() -> None:
    frame = '{"code":10002,"msg":"token invalid"}'
    assert Parser()(frame) == Unknown(
        frame, "not a Bitmusa stream message: Object missing required field `stream`", UnknownKind.UNKNOWN
    )
