"""Fuzzing every decoder of untrusted bytes: the frame codec, both stream Parsers, the REST reply parsers, and
the server's readers of client frames, credentials, queries and ingest bodies.

The contract under test is the same everywhere: whatever arrives, the function returns a value of its
declared kind or raises one of our typed errors (`UserStreamError`), never anything else, never hangs,
and never inflates more than its bound. The "never raises" classifiers (`Parser.__call__`,
`parse_client_frame`) may not even reach their own catch-all: an `Unknown` whose reason is
"internal error" is a bug the catch-all hid, and fails the test. Inputs are random bytes and text, and
the documents' own example payloads mutated field by field (types swapped, keys dropped or added, values
out of range), in text, binary and gzip form.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import tracemalloc
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import examples
from userstream.errors import UserStreamError
from userstream.events import BalanceUpdate, Event, OrderType, OrderUpdate
from userstream.protocol import (
    bitmusa,
    bitmusa_listen_key,
    bitmusa_render,
    bitmusa_rest,
    coinlocally,
    coinlocally_control,
    coinlocally_rest,
    coinlocally_rest_render,
)
from userstream.protocol.codec import decode_frame, gunzip
from userstream.protocol.messages import (
    ControlReply,
    DataEvents,
    ErrorReply,
    Incoming,
    Ping,
    Pong,
    SystemClose,
    Unknown,
)
from userstream.server.ingest import IngestError, coerce_events, parse_batch

FUZZ = settings(settings.get_profile("userstream-fuzz"))
INCOMING = (ControlReply, ErrorReply, Ping, Pong, SystemClose, DataEvents, Unknown)

# --- strategies ------------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    | st.sampled_from(
        ["", "0", "-1", "1e400", "NaN", "Infinity", "0.1", "1" * 80, "BTCUSDT", "TRADING", "NEW"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _replace(copy[head], rest, value) if rest else value
    return copy


def _delete(node: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        copy: Any = dict(node) if isinstance(node, dict) else list(node)
        del copy[path[0]]
        return copy
    head = path[0]
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _delete(copy[head], path[1:])
    return copy


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` (decoded JSON) with a few random edits: a value replaced, a key or item dropped, a key
    added."""
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace" or not path:
            document = _replace(document, path, draw(json_values))
        elif action == "delete":
            document = _delete(document, path)
        else:
            parent = path[:-1]
            target: Any = document
            for step in parent:
                target = target[step]
            if isinstance(target, dict):
                document = _replace(document, (*parent, draw(st.text(max_size=6))), draw(json_values))
    return document


def wire_forms(text: str) -> st.SearchStrategy[str | bytes]:
    """The same message as a text frame, a plain binary frame, or a gzip binary frame."""
    return st.sampled_from([text, text.encode(), gzip.compress(text.encode())])


@st.composite
def frames_from(draw: st.DrawFn, *payloads: str) -> str | bytes:
    document = json.loads(draw(st.sampled_from(payloads)), parse_float=Decimal)
    text = json.dumps(draw(mutated(document)), default=str)
    return draw(wire_forms(text))


raw_frames = st.binary(max_size=400) | st.text(max_size=400) | st.binary(max_size=200).map(gzip.compress)

# --- oracles ---------------------------------------------------------------------------------------------


def outcome(call: Callable[[], Any]) -> tuple[Any, UserStreamError | None]:
    """(result, None), or (None, the typed error): anything else propagates and fails the test."""
    try:
        return call(), None
    except UserStreamError as exc:
        return None, exc


def check_incoming(incoming: Incoming) -> None:
    assert isinstance(incoming, INCOMING)
    if isinstance(incoming, Unknown):
        assert not incoming.reason.startswith("internal error"), incoming.reason
        assert len(incoming.raw) <= 512
    if isinstance(incoming, DataEvents):
        for event in incoming.events:
            check_event(event)


def check_event(event: Event) -> None:
    assert 0 <= event.timestamp < 2**63
    assert isinstance(event, BalanceUpdate | OrderUpdate)
    for name in ("free", "locked", "price", "amount", "filled", "remaining", "cost", "fee"):
        value = getattr(event, name, None)
        if value is not None:
            assert isinstance(value, Decimal)
            assert value.is_finite()
            assert len(value.as_tuple().digits) <= 64
    check_possible(event)


def check_possible(event: Event) -> None:
    """No impossible value gets through (docs/events.md, "Impossible values")."""
    if isinstance(event, BalanceUpdate):
        assert event.free >= 0
        assert event.locked >= 0
        return
    assert isinstance(event, OrderUpdate)
    for value in (
        event.amount,
        event.filled,
        event.price,
        event.cost,
        event.last_fill_amount,
        event.last_fill_price,
    ):
        assert value is None or value >= 0
    if event.type is OrderType.LIMIT:
        assert event.filled <= event.amount
        assert event.price is None or event.price > 0
    if event.last_fill_amount:
        assert event.last_fill_amount <= event.filled
        assert event.last_fill_price is None or event.last_fill_price > 0


# --- the frame codec -------------------------------------------------------------------------------------


@FUZZ
@given(raw_frames, st.integers(min_value=1, max_value=300))
def test_decode_frame_returns_bounded_bytes_or_a_frame_decode_error(frame: str | bytes, limit: int) -> None:
    try:
        message = decode_frame(frame, limit)
    except UserStreamError:
        return
    assert isinstance(message, bytes)
    assert len(message) <= limit


@FUZZ
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=3000))
def test_a_gzip_frame_is_its_payload_when_within_the_limit_and_refused_past_it(
    payload: bytes, limit: int
) -> None:
    frame = gzip.compress(payload)
    if len(payload) <= limit:
        assert decode_frame(frame, limit) == payload
    else:
        with pytest.raises(UserStreamError, match="limit"):
            decode_frame(frame, limit)


@FUZZ
@given(st.binary(min_size=1, max_size=400), st.integers(min_value=0, max_value=399))
def test_a_truncated_or_corrupted_gzip_frame_is_a_typed_error(payload: bytes, cut: int) -> None:
    frame = gzip.compress(payload)
    broken = frame[: cut % len(frame)] if cut % 2 else frame[:10] + bytes([frame[10] ^ 0xFF]) + frame[11:]
    with contextlib.suppress(UserStreamError):
        gunzip(broken, 1 << 16)


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(UserStreamError, match="limit"):
            decode_frame(bomb, 1 << 20)
        for parse in (bitmusa.Parser(), coinlocally.Parser()):
            assert isinstance(parse(bomb), Unknown)
        assert isinstance(coinlocally_control.parse_client_frame(bomb), Unknown)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the 1 MiB limit, with room for zlib's buffers; never the 64 MiB


# --- the stream parsers ----------------------------------------------------------------------------------


@FUZZ
@given(raw_frames)
def test_both_parsers_classify_any_bytes_or_text_without_raising(frame: str | bytes) -> None:
    check_incoming(bitmusa.Parser()(frame))
    check_incoming(coinlocally.Parser()(frame))


@FUZZ
@given(frames_from(examples.BITMUSA_WALLET, examples.BITMUSA_ORDER))
def test_the_bitmusa_parser_survives_mutated_document_frames(frame: str | bytes) -> None:
    check_incoming(bitmusa.Parser(max_frame=1 << 16)(frame))


@FUZZ
@given(
    frames_from(
        examples.COINLOCALLY_ACCOUNT_POSITION,
        examples.COINLOCALLY_EXECUTION_REPORT,
        examples.COINLOCALLY_SYSTEM_CLOSE,
        examples.COINLOCALLY_PING,
        examples.COINLOCALLY_PONG,
        '{"event":"error","code":401002,"message":"sub rejected"}',
    )
)
def test_the_coinlocally_parser_survives_mutated_document_frames(frame: str | bytes) -> None:
    check_incoming(coinlocally.Parser(max_frame=1 << 16)(frame))


@FUZZ
@given(st.sampled_from(["connect success", "sub success", '"sub success"', "SUB SUCCESS", " sub success"]))
def test_control_words_in_every_wire_form_are_classified(word: str) -> None:
    for frame in (word, word.encode(), gzip.compress(word.encode())):
        check_incoming(coinlocally.Parser()(frame))


# --- REST replies (client side) --------------------------------------------------------------------------

statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 418, 429, 500, 502, 503]) | st.integers(
    min_value=0, max_value=999
)


def _reply_bodies(*documents: bytes) -> st.SearchStrategy[bytes]:
    mutated_bodies = st.sampled_from(documents).flatmap(
        lambda body: mutated(json.loads(body, parse_float=Decimal)).map(
            lambda doc: json.dumps(doc, default=str).encode()
        )
    )
    return mutated_bodies | st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())


BITMUSA_WALLET_REPLY = bitmusa_rest.render_wallet([examples.BITMUSA_WALLET_EVENT])
BITMUSA_ORDERS_REPLY = bitmusa_rest.render_open_orders([examples.BITMUSA_ORDER_EVENT])
COINLOCALLY_ACCOUNT_REPLY = coinlocally_rest_render.render_account([examples.COINLOCALLY_BALANCE_EVENT])
COINLOCALLY_ORDERS_REPLY = coinlocally_rest_render.render_open_orders([examples.COINLOCALLY_ORDER_EVENT])


@FUZZ
@given(
    statuses,
    _reply_bodies(
        examples.BITMUSA_CREATE_REPLY,
        examples.BITMUSA_ACK_REPLY,
        BITMUSA_WALLET_REPLY,
        BITMUSA_ORDERS_REPLY,
        bitmusa_render.render_error(401001, "invalid api key or auth key"),
    ),
)
def test_bitmusa_replies_parse_or_raise_a_typed_error(status: int, body: bytes) -> None:
    calls = [
        lambda: bitmusa_listen_key.parse_listen_key_response(status, body),
        lambda: bitmusa_listen_key.parse_ack_response(status, body),
        lambda: bitmusa_rest.parse_wallet_response(status, body, account="a", timestamp=1),
        lambda: bitmusa_rest.parse_open_orders_response(status, body, account="a", timestamp=1),
    ]
    for call in calls:
        try:
            result = call()
        except UserStreamError:
            continue
        for item in result if isinstance(result, tuple) else ():
            check_event(item)


@FUZZ
@given(
    statuses,
    _reply_bodies(
        COINLOCALLY_ACCOUNT_REPLY,
        COINLOCALLY_ORDERS_REPLY,
        coinlocally_rest_render.render_error(-1022, "signature for this request is not valid"),
    ),
    st.none() | st.integers(min_value=1, max_value=1000),
)
def test_coinlocally_replies_parse_or_raise_a_typed_error(
    status: int, body: bytes, limit: int | None
) -> None:
    calls = [
        lambda: coinlocally_rest.parse_account_response(status, body, account="a", timestamp=1),
        lambda: coinlocally_rest.parse_open_orders_response(
            status, body, account="a", timestamp=1, limit=limit
        ),
    ]
    for call in calls:
        try:
            result = call()
        except UserStreamError:
            continue
        for item in result:
            check_event(item)


# --- what the server reads from its peers ----------------------------------------------------------------

client_frames = (
    raw_frames
    | frames_from('{"event":"sub","token":"alice-coinlocally-token"}', '{"ping":1713338308232}')
    | st.builds(lambda n: json.dumps({"ping": n}), json_values)
)


@FUZZ
@given(client_frames)
def test_the_server_classifies_any_client_frame_without_raising(frame: str | bytes) -> None:
    request = coinlocally_control.parse_client_frame(frame)
    assert isinstance(request, coinlocally_control.SubRequest | coinlocally_control.PingRequest | Unknown)
    if isinstance(request, Unknown):
        assert not request.reason.startswith("internal error"), request.reason
        assert "alice-coinlocally-token" not in request.raw  # a token is never kept for a log
    if isinstance(request, coinlocally_control.PingRequest):
        assert 0 <= request.timestamp < 2**63


header_names = st.sampled_from(
    [
        "Authorization",
        "authorization",
        "x-api-key",
        "X-API-KEY",
        "token",
        "api-key",
        "Token",
        "X-CH-APIKEY",
        "X-CH-TS",
        "X-CH-SIGN",
    ]
) | st.text(max_size=12)
header_values = st.text(max_size=40) | st.sampled_from(
    ["Bearer", "Bearer ", "bearer x", "Basic x", "Bearer  a b"]
)


@FUZZ
@given(st.dictionaries(header_names, header_values, max_size=6))
def test_credentials_are_read_from_any_headers_without_raising(headers: dict[str, str]) -> None:
    found = bitmusa_listen_key.credentials_from_headers(headers)
    assert found is None or isinstance(found, bitmusa_listen_key.Credentials)
    chosen = coinlocally_control.credentials_from_headers(headers)
    assert chosen is None or isinstance(chosen, coinlocally_control.Credentials)
    signed = coinlocally_rest.signed_headers(headers)
    assert signed is None or isinstance(signed, coinlocally_rest.SignedHeaders)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["symbol", "limit", "status", "x"]) | st.text(max_size=5), st.text(max_size=30)
    )
)
def test_snapshot_queries_parse_or_name_the_bad_parameter(query: dict[str, str]) -> None:
    for parse in (bitmusa_rest.parse_open_orders_query, coinlocally_rest_render.parse_open_orders_query):
        _, error = outcome(lambda parse=parse: parse(query))
        assert error is None or getattr(error, "field", None) in ("symbol", "limit", "status")


VALID_EVENTS = [
    {"kind": "balance", "asset": "USDT", "free": "10", "locked": "0"},
    {
        "kind": "order",
        "id": "C1",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "status": "open",
        "price": "100",
        "amount": "1",
        "filled": "0",
        "cost": "0",
        "timestamp": 1_700_703_548_000,
    },
]


@FUZZ
@given(
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(mutated(VALID_EVENTS[0]) | mutated(VALID_EVENTS[1]), max_size=5).map(
        lambda events: json.dumps({"account": "alice", "events": events}, default=str).encode()
    )
)
def test_an_ingest_body_is_accepted_whole_or_refused_with_a_status_and_a_reason(body: bytes) -> None:
    def ingest() -> list[Event]:
        account, items = parse_batch(body)
        return coerce_events(items, account=account, now_ms=1)

    events, error = outcome(ingest)
    if error is not None:
        assert isinstance(error, IngestError)
        assert error.status in (400, 404, 413, 422)
        assert str(error)
    for event in events or ():
        check_event(event)


def test_deeply_nested_json_is_a_typed_error_not_a_recursion_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    nested_object = '{"a":' * 50_000 + "1" + "}" * 50_000
    for text in (deep, nested_object):
        check_incoming(bitmusa.Parser()(text))
        check_incoming(coinlocally.Parser()(text))
        check_incoming(coinlocally.Parser()(gzip.compress(text.encode())))
        assert isinstance(coinlocally_control.parse_client_frame(text[:4000]), Unknown)
        with pytest.raises(IngestError):
            parse_batch(text.encode())
