"""protocol/coinlocally.py: the document's payloads as test vectors, words, control frames, bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.coinlocally_tables import MULTI_ASSET, STATUS_TABLE, TYPE_TABLE
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
from userstream.errors import FrameDecodeError, MessageShapeError
from userstream.eventjson import to_dict
from userstream.events import BalanceUpdate, Event, OrderStatus, OrderType, OrderUpdate, Side
from userstream.protocol import coinlocally
from userstream.protocol.codec import DEFAULT_MAX_FRAME, gunzip, gzip_bytes
from userstream.protocol.coinlocally import Parser
from userstream.protocol.coinlocally_render import render_error, render_system_close
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


# --- constants ------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert coinlocally.WS_URL == "wss://ws2.coinlocally.com/spotws_user/userData/ws"
    assert coinlocally.WS_PATH == "/spotws_user/userData/ws"
    assert coinlocally.WS_URL.endswith(coinlocally.WS_PATH)
    assert coinlocally.CONNECT_SUCCESS == "connect success"
    assert coinlocally.SUB_SUCCESS == "sub success"
    assert coinlocally.PING_INTERVAL_MS == 30_000
    assert coinlocally.HEARTBEAT_TIMEOUT_MS == 40_000


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
