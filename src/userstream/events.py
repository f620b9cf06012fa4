"""The normalized events every exchange's stream becomes: typed, immutable, Decimal money.

This module owns the *types* only. Their JSON form (the public contract of docs/events.md) lives in
`userstream.eventjson`; the wire formats of each exchange live in `userstream.protocol`. Nothing here parses
or performs I/O.

Three kinds: `BalanceUpdate` and `OrderUpdate` are what the exchanges send; `Fill` is one execution, sent
by Coinlocally (per execution report) or derived from cumulative growth on Bitmusa (`userstream.fills`).
Each carries a `source`: `stream` for what the WebSocket said, `snapshot` for a correction computed from a
REST snapshot after a reconnect (`userstream.state.AccountState.diff`).

Events are frozen msgspec Structs: immutable like frozen dataclasses, and several times cheaper to build,
which matters at hundreds of thousands of events per second. `raw` keeps the decoded wire message for
debugging, at most its first `RAW_LIMIT` characters (`clip_raw`): a peer that pads valid messages to a
mebibyte must not make every event a mebibyte (docs/reliability.md, "Memory"). A clipped `raw` is a
`ClippedRaw`, a `str` that also knows the whole message's length, and the event's `raw_clipped` says so.
`raw` takes no part in equality, so a rendered-then-parsed event equals the original. `source` does take
part: a snapshot correction is a different event from the stream update it resembles.

`event_size` is what the client's queue counts an event as, in bytes: cheap on the reader's path, and never
less than what the event holds.
"""

from __future__ import annotations

import operator
import sys
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal, get_args

import msgspec

from userstream.money import exact_add

__all__ = [
    "FINAL_STATUSES",
    "NOT_IN_SNAPSHOT",
    "RAW_LIMIT",
    "BalanceUpdate",
    "ClippedRaw",
    "Event",
    "Exchange",
    "Fill",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Side",
    "Source",
    "clip_raw",
    "event_size",
]


class Exchange(StrEnum):
    BITMUSA = "bitmusa"
    COINLOCALLY = "coinlocally"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(StrEnum):
    """ccxt's convention: a fully filled order is `closed`."""

    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"


#: The statuses after which an order never changes again.
FINAL_STATUSES = frozenset(
    {OrderStatus.CLOSED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)

#: The `raw_status` of the update `AccountState.diff` emits for an order the stream held open but a
#: snapshot no longer lists: it is not open any more, and how it ended is unknown. Its `status` is None
#: (no outcome is guessed) and its `source` is snapshot; only that combination means "gone".
NOT_IN_SNAPSHOT = "NOT_IN_SNAPSHOT"


#: The most characters of a wire message an event keeps in `raw`. Documented messages are 150-400
#: characters; a Coinlocally account position listing many assets can be longer and is clipped too.
RAW_LIMIT = 4096


class ClippedRaw(str):
    """The first `RAW_LIMIT` characters of a longer wire message; `size` is the whole message's length."""

    size: int

    def __new__(cls, message: str) -> ClippedRaw:
        clipped = super().__new__(cls, message[:RAW_LIMIT])
        clipped.size = len(message)
        return clipped

    def __reduce__(self) -> tuple[object, ...]:  # pickle: the prefix and the length, not the message
        return (_clipped_raw, (str(self), self.size))


def _clipped_raw(prefix: str, size: int) -> ClippedRaw:
    clipped = str.__new__(ClippedRaw, prefix)
    clipped.size = size
    return clipped


def clip_raw(message: str) -> str:
    """What an event keeps of its wire message: the message itself, or a `ClippedRaw` prefix of it."""
    return message if len(message) <= RAW_LIMIT else ClippedRaw(message)


class Source(StrEnum):
    """Where an event's knowledge came from."""

    STREAM = "stream"  # the exchange's WebSocket (or a fill derived from it)
    SNAPSHOT = "snapshot"  # a REST snapshot's correction after a reconnect


class BalanceUpdate(msgspec.Struct, frozen=True, gc=False):
    """One asset's balance after a change. `total` is always `free + locked`, computed exactly.

    Build it with keywords. The protocol parsers pass its fields positionally, in declaration order, on
    their hot path (msgspec takes positional arguments ~2x faster than keywords: docs/performance.md), so
    that order is fixed: a new field goes last, with a default (tests/test_events.py pins it).
    """

    kind: ClassVar[Literal["balance"]] = "balance"

    exchange: Exchange
    account: str
    timestamp: int  # the exchange's event time, integer milliseconds since the epoch
    asset: str
    free: Decimal
    locked: Decimal
    source: Source = Source.STREAM
    raw: str = msgspec.field(default="")

    @property
    def total(self) -> Decimal:
        return exact_add(self.free, self.locked)

    @property
    def raw_clipped(self) -> bool:
        """True when `raw` is only the first `RAW_LIMIT` characters of the message (a `ClippedRaw`)."""
        return type(self.raw) is ClippedRaw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BalanceUpdate):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self) -> int:
        return hash(_key(self))

    def __repr__(self) -> str:
        return (
            f"BalanceUpdate(exchange={self.exchange.value!r}, account={self.account!r}, "
            f"timestamp={self.timestamp}, asset={self.asset!r}, free={self.free}, "
            f"locked={self.locked}, total={self.total}{_source_note(self.source)})"
        )


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """One order's state after a change.

    `status` is None when the exchange sent a status this version does not know; `raw_status` always keeps
    what the exchange wrote, so such an update is never dropped. Likewise `type` is None for an unknown
    order type. Values the exchange does not send are None, never guessed.

    As with BalanceUpdate, the field order is fixed (the parsers build updates positionally): new fields
    go last, with a default.
    """

    kind: ClassVar[Literal["order"]] = "order"

    exchange: Exchange
    account: str
    timestamp: int
    id: str
    symbol: str  # unified "BASE/QUOTE", or the raw symbol when it cannot be split
    raw_symbol: str
    side: Side
    type: OrderType | None
    raw_type: str
    status: OrderStatus | None
    raw_status: str
    price: Decimal | None
    amount: Decimal
    filled: Decimal
    remaining: Decimal
    cost: Decimal | None  # filled quote value
    last_fill_amount: Decimal | None = None
    last_fill_price: Decimal | None = None
    fee: Decimal | None = None
    created_at: int | None = None
    source: Source = Source.STREAM
    raw: str = msgspec.field(default="")

    @property
    def is_final(self) -> bool:
        """True when this update ends the order: a final status, or a snapshot saying it is gone."""
        if self.status is None:
            return self.source is Source.SNAPSHOT and self.raw_status == NOT_IN_SNAPSHOT
        return self.status in FINAL_STATUSES

    @property
    def raw_clipped(self) -> bool:
        """True when `raw` is only the first `RAW_LIMIT` characters of the message (a `ClippedRaw`)."""
        return type(self.raw) is ClippedRaw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderUpdate):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self) -> int:
        return hash(_key(self))

    def __repr__(self) -> str:
        # The normalized fields; a raw one only where the normalized one is unknown (None), and never `raw`.
        status = repr(None if self.status is None else self.status.value)
        if self.status is None:
            status += f", raw_status={self.raw_status!r}"
        kind = repr(None if self.type is None else self.type.value)
        if self.type is None:
            kind += f", raw_type={self.raw_type!r}"
        execution = ""
        if self.last_fill_amount is not None:
            execution = f", last_fill_amount={self.last_fill_amount}, last_fill_price={self.last_fill_price}"
        if self.fee is not None:
            execution += f", fee={self.fee}"
        return (
            f"OrderUpdate(exchange={self.exchange.value!r}, account={self.account!r}, "
            f"timestamp={self.timestamp}, id={self.id!r}, symbol={self.symbol!r}, "
            f"side={self.side.value!r}, type={kind}, status={status}, price={self.price}, "
            f"amount={self.amount}, filled={self.filled}, remaining={self.remaining}, cost={self.cost}"
            f"{execution}{_source_note(self.source)})"
        )


class Fill(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One execution of an order: `amount` at `price`, worth `cost` in the quote asset.

    `derived` is False when the exchange reported the execution itself (Coinlocally's l, L, n) and True
    when it was computed from the growth of the order's cumulative filled amount and value between two
    updates (Bitmusa, or executions the stream did not report one by one); a derived fill's `price` is the
    average price of that growth. `price` and `cost` are None only when the exchange did not send what they
    need; `fee` is None when the exchange does not report one, and `fee_asset` (the asset the fee is paid
    in) is None whenever `fee` is, or when the symbol does not split into base and quote. `order_filled` is
    the order's cumulative filled amount after this fill: with `order_id` it identifies the fill.
    """

    kind: ClassVar[Literal["fill"]] = "fill"

    exchange: Exchange
    account: str
    timestamp: int  # the event time of the order update that revealed the fill
    order_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal | None
    cost: Decimal | None  # quote value of this fill
    fee: Decimal | None = None
    fee_asset: str | None = (
        None  # the asset `fee` is paid in; None when unknown (fills.py says how it is known)
    )
    order_filled: Decimal
    derived: bool = False
    source: Source = Source.STREAM
    raw: str = msgspec.field(default="")  # the raw message of the order update it came from

    @property
    def raw_clipped(self) -> bool:
        """True when `raw` is only the first `RAW_LIMIT` characters of the message (a `ClippedRaw`)."""
        return type(self.raw) is ClippedRaw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fill):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self) -> int:
        return hash(_key(self))

    def __repr__(self) -> str:
        return (
            f"Fill(exchange={self.exchange.value!r}, account={self.account!r}, "
            f"timestamp={self.timestamp}, order_id={self.order_id!r}, symbol={self.symbol!r}, "
            f"side={self.side.value!r}, amount={self.amount}, price={self.price}, cost={self.cost}, "
            f"fee={self.fee}, fee_asset={self.fee_asset!r}, order_filled={self.order_filled}, "
            f"derived={self.derived}{_source_note(self.source)})"
        )


Event = BalanceUpdate | OrderUpdate | Fill


def _key(event: Event) -> tuple[object, ...]:
    """Every field but `raw`: what equality and hashing compare."""
    getter = _KEY_GETTERS.get(type(event))
    if getter is None:  # a subclass: its own fields, found once
        getter = _KEY_GETTERS[type(event)] = _key_getter(type(event))
    key: tuple[object, ...] = getter(event)
    return key


def _key_getter(kind: type[Event]) -> operator.attrgetter[tuple[object, ...]]:
    # One C call that builds the tuple: ~3x faster than a generator of getattr (equality runs for every
    # event an AccountState or a rotation's de-duplication sees).
    return operator.attrgetter(*(name for name in kind.__struct_fields__ if name != "raw"))


_KEY_GETTERS: dict[type, operator.attrgetter[tuple[object, ...]]] = {
    kind: _key_getter(kind) for kind in (BalanceUpdate, OrderUpdate, Fill)
}


def _source_note(source: Source) -> str:
    """A repr suffix only for the unusual source, so the common repr stays short."""
    return "" if source is Source.STREAM else f", source={source.value!r}"


# --- what an event holds, for the queue's byte bound ----------------------------------------------------

#: An event's own memory, without its text: the struct, its integers, and every Decimal at the widest
#: money bounds allow (64 digits; measured with tracemalloc on CPython 3.11, rounded up).
_FIXED_BYTES: dict[type, int] = {OrderUpdate: 1_300, BalanceUpdate: 400, Fill: 800}
_FIXED_DEFAULT = 1_300  # a subclass


def _text_fields(kind: type[Event]) -> tuple[str, ...]:
    """The fields of `kind` that hold text of their own (`account`, one per stream, is not counted)."""
    return tuple(
        field.name
        for field in msgspec.structs.fields(kind)
        if field.name not in ("raw", "account") and (field.type is str or str in get_args(field.type))
    )


def _sizes(kind: type[Event]) -> tuple[int, operator.attrgetter[tuple[object, ...]]]:
    """(the fast path's fixed count, a getter of every text field and `raw`) for `kind`, found once."""
    fields = _text_fields(kind)
    fixed = _FIXED_BYTES.get(kind, _FIXED_DEFAULT) + _STR_HEADER * len(fields)
    return fixed, operator.attrgetter(*fields, "raw")


_STR_HEADER = sys.getsizeof("")
_SIZES: dict[type, tuple[int, operator.attrgetter[tuple[object, ...]]]] = {
    kind: _sizes(kind) for kind in (BalanceUpdate, OrderUpdate, Fill)
}


def event_size(event: Event) -> int:
    """Bytes `event` holds, as the client's queue counts it (`queue_bytes`): never less than the truth.

    The usual event keeps its whole message in `raw` (at most RAW_LIMIT characters), and each of its own
    texts (id, symbol, asset...) is a piece of that message, or (the unified symbol) the length of one plus
    a slash. So its text is at most three times the message's: counted so, from its length when it is
    ASCII (two cheap calls), else with `sys.getsizeof` (six times dearer). An event whose `raw` is clipped
    or empty (a snapshot's correction, one built by hand) has texts the message does not bound, and they
    are measured one by one. `account` is shared by every event of a stream and not counted.
    """
    raw = event.raw
    fixed = _FAST_FIXED.get(type(event))
    if fixed is not None and type(raw) is str and raw:
        # An ASCII str takes its header plus one byte a character: `len` costs a sixth of `getsizeof`.
        return fixed + 3 * (_STR_HEADER + len(raw) if raw.isascii() else _getsizeof(raw))
    sizes = _SIZES.get(type(event))
    if sizes is None:  # a subclass: its own fields, found once
        sizes = _SIZES[type(event)] = _sizes(type(event))
    # + the attribute dict a ClippedRaw carries (`size`), counted for an empty raw too: it is the rare path
    return _FIXED_BYTES.get(type(event), _FIXED_DEFAULT) + 256 + sum(map(_getsizeof, sizes[1](event)))


_getsizeof = sys.getsizeof
#: The fast path's fixed count per exact type (a subclass takes the measured path).
_FAST_FIXED: dict[type, int] = {kind: sizes[0] for kind, sizes in _SIZES.items()}
