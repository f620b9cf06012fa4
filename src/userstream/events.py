"""The normalized events every exchange's stream becomes: typed, immutable, Decimal money.

This module owns the *types* only. Their JSON form (the public contract of docs/events.md) lives in
`userstream.eventjson`; the wire formats of each exchange live in `userstream.protocol`. Nothing here parses
or performs I/O.

Events are frozen msgspec Structs: immutable like frozen dataclasses, and several times cheaper to build,
which matters at hundreds of thousands of events per second. `raw` keeps the decoded wire message for
debugging; it takes no part in equality, so a rendered-then-parsed event equals the original.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

import msgspec

from userstream.money import exact_add

__all__ = [
    "BalanceUpdate",
    "Event",
    "Exchange",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Side",
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


class BalanceUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One asset's balance after a change. `total` is always `free + locked`, computed exactly."""

    kind: ClassVar[Literal["balance"]] = "balance"

    exchange: Exchange
    account: str
    timestamp: int  # the exchange's event time, integer milliseconds since the epoch
    asset: str
    free: Decimal
    locked: Decimal
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
            f"locked={self.locked}, total={self.total})"
        )


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One order's state after a change.

    `status` is None when the exchange sent a status this version does not know; `raw_status` always keeps
    what the exchange wrote, so such an update is never dropped. Likewise `type` is None for an unknown
    order type. Values the exchange does not send are None, never guessed.
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
    raw: str = msgspec.field(default="")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderUpdate):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self) -> int:
        return hash(_key(self))

    def __repr__(self) -> str:
        return (
            f"OrderUpdate(exchange={self.exchange.value!r}, account={self.account!r}, "
            f"timestamp={self.timestamp}, id={self.id!r}, symbol={self.symbol!r}, "
            f"side={self.side.value!r}, status={self.raw_status!r}, price={self.price}, "
            f"amount={self.amount}, filled={self.filled})"
        )


Event = BalanceUpdate | OrderUpdate


def _key(event: BalanceUpdate | OrderUpdate) -> tuple[object, ...]:
    """Every field but `raw`: what equality and hashing compare."""
    fields = event.__struct_fields__
    return tuple(getattr(event, name) for name in fields if name != "raw")
