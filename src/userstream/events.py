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
debugging; it takes no part in equality, so a rendered-then-parsed event equals the original. `source`
does take part: a snapshot correction is a different event from the stream update it resembles.
"""

from __future__ import annotations

import operator
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

import msgspec

from userstream.money import exact_add

__all__ = [
    "FINAL_STATUSES",
    "NOT_IN_SNAPSHOT",
    "BalanceUpdate",
    "Event",
    "Exchange",
    "Fill",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Side",
    "Source",
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
