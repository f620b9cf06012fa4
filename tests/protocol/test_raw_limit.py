"""Both parsers keep at most RAW_LIMIT characters of a message in `raw` (events.clip_raw), and say so.

A peer that pads valid messages with an unknown field (issue 13: ~1 KB gzip frames inflating to ~1 MB) must
not make every event hold the whole message: the event is the one the unpadded message gives, its `raw` is
the message's first RAW_LIMIT characters (a `ClippedRaw` knowing the whole length) and `raw_clipped` is true.
A message of RAW_LIMIT characters or fewer is kept whole, as the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from support.examples import (
    BITMUSA_ORDER,
    BITMUSA_ORDER_EVENT,
    BITMUSA_WALLET,
    BITMUSA_WALLET_EVENT,
    COINLOCALLY_ACCOUNT_POSITION,
    COINLOCALLY_BALANCE_EVENT,
    COINLOCALLY_EXECUTION_REPORT,
    COINLOCALLY_ORDER_EVENT,
)
from userstream.events import RAW_LIMIT, ClippedRaw, Event
from userstream.protocol import bitmusa, coinlocally
from userstream.protocol.codec import gzip_bytes
from userstream.protocol.messages import DataEvents

Encode = Callable[[str], bytes | str]


def _text(message: str) -> bytes | str:
    return message


def _binary(message: str) -> bytes | str:
    return message.encode()


def _gzip(message: str) -> bytes | str:
    return gzip_bytes(message.encode())


def padded(message: str, length: int, pad: str = "x") -> str:
    """`message` with an unknown field "pad" first, making it exactly `length` characters long."""
    fields = json.loads(message)
    bare = json.dumps({"pad": "", **fields}, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(
        {"pad": pad * (length - len(bare)), **fields}, separators=(",", ":"), ensure_ascii=False
    )


# (exchange's parser, the document's message, the event it gives, the encodings that exchange sends)
CASES = [
    pytest.param(coinlocally.Parser(), COINLOCALLY_EXECUTION_REPORT, COINLOCALLY_ORDER_EVENT, id="cl-order"),
    pytest.param(
        coinlocally.Parser(), COINLOCALLY_ACCOUNT_POSITION, COINLOCALLY_BALANCE_EVENT, id="cl-balance"
    ),
    pytest.param(bitmusa.Parser(), BITMUSA_ORDER, BITMUSA_ORDER_EVENT, id="bm-order"),
    pytest.param(bitmusa.Parser(), BITMUSA_WALLET, BITMUSA_WALLET_EVENT, id="bm-wallet"),
]
# Coinlocally sends gzip binary frames (and text ones); Bitmusa text ones, which a client also takes as bytes.
PADDED_CASES = [
    pytest.param(*case.values, encode, id=f"{case.id}-{encode.__name__.lstrip('_')}")
    for case in CASES
    for encode in (_text, _binary, _gzip)
    if encode is not _gzip or str(case.id).startswith("cl")
]


def only_event(incoming: object) -> Event:
    assert isinstance(incoming, DataEvents), incoming
    (event,) = incoming.events
    return event


@pytest.mark.parametrize(("parser", "message", "expected", "encode"), PADDED_CASES)
def test_a_padded_message_gives_the_same_event_with_a_clipped_raw(
    parser: Callable[[bytes | str], object], message: str, expected: Event, encode: Encode
) -> None:
    text = padded(message, 1_000_000)
    event = only_event(parser(encode(text)))
    assert event == expected
    assert event.raw_clipped is True
    assert type(event.raw) is ClippedRaw
    assert event.raw == text[:RAW_LIMIT]
    assert isinstance(event.raw, ClippedRaw)
    assert event.raw.size == 1_000_000


@pytest.mark.parametrize(("parser", "message", "expected"), CASES)
def test_the_limit_is_in_characters_and_a_message_at_it_is_kept_whole(
    parser: Callable[[bytes | str], object], message: str, expected: Event
) -> None:
    at_limit = padded(message, RAW_LIMIT, pad="\N{GRINNING FACE}")  # four bytes each in UTF-8
    event = only_event(parser(at_limit.encode()))
    assert (event.raw, event.raw_clipped, type(event.raw)) == (at_limit, False, str)
    over = padded(message, RAW_LIMIT + 1, pad="\N{GRINNING FACE}")
    event = only_event(parser(over.encode()))
    assert (event.raw, event.raw_clipped) == (over[:RAW_LIMIT], True)
    assert isinstance(event.raw, ClippedRaw)
    assert event.raw.size == RAW_LIMIT + 1


@pytest.mark.parametrize(("parser", "message", "expected"), CASES)
def test_the_documents_messages_are_kept_whole(
    parser: Callable[[bytes | str], object], message: str, expected: Event
) -> None:
    event = only_event(parser(message))
    assert (event.raw, event.raw_clipped, type(event.raw)) == (message, False, str)


def test_every_event_of_a_padded_multi_asset_position_shares_one_clipped_raw() -> None:
    balances = [{"a": f"A{index}", "f": "1.5", "l": "0"} for index in range(3)]
    message = json.dumps({"e": "outboundAccountPosition", "E": 1, "u": 1, "B": balances})
    text = padded(message, 300_000)
    incoming = coinlocally.Parser()(gzip_bytes(text.encode()))
    assert isinstance(incoming, DataEvents)
    assert [event.asset for event in incoming.events] == ["A0", "A1", "A2"]  # type: ignore[union-attr]
    assert all(event.raw_clipped and event.raw == text[:RAW_LIMIT] for event in incoming.events)
    assert len({id(event.raw) for event in incoming.events}) == 1  # one prefix, not one per event


def test_a_decoded_object_is_clipped_too() -> None:
    fields = json.loads(padded(BITMUSA_ORDER, 50_000))
    (event,) = bitmusa.Parser().parse_message(fields).events
    assert event == BITMUSA_ORDER_EVENT
    assert event.raw_clipped
    assert len(event.raw) == RAW_LIMIT
