"""The JSON form of events: the public contract written down in docs/events.md, in both directions.

`to_dict` / `to_json` give one JSON object per event (`balance`, `order` or `fill`), decimals as strings in
plain notation (never scientific), absent values as null, `source` always present. `from_dict` /
`from_json` accept that same form (plus the lenient defaults docs/events.md lists, used by
`userstream serve`'s ingest) and raise `MessageShapeError` naming the field on anything else.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec

from userstream.errors import MessageShapeError
from userstream.events import (
    BalanceUpdate,
    Event,
    Exchange,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Source,
)
from userstream.money import checked, exact_add, exact_sub
from userstream.validation import failure

__all__ = ["dec", "from_dict", "from_json", "to_dict", "to_json"]

_ENCODER = msgspec.json.Encoder()


def dec(value: Decimal | None) -> str | None:
    """A Decimal as contract text: exact, plain notation, trailing zeros kept."""
    return None if value is None else format(value, "f")


def to_dict(event: Event) -> dict[str, Any]:
    head: dict[str, Any] = {
        "kind": event.kind,
        "exchange": event.exchange.value,
        "account": event.account,
        "timestamp": event.timestamp,
        "source": event.source.value,
    }
    if isinstance(event, BalanceUpdate):
        head.update(
            asset=event.asset,
            free=dec(event.free),
            locked=dec(event.locked),
            total=dec(event.total),
        )
        return head
    if isinstance(event, Fill):
        head.update(
            order_id=event.order_id,
            symbol=event.symbol,
            side=event.side.value,
            amount=dec(event.amount),
            price=dec(event.price),
            cost=dec(event.cost),
            fee=dec(event.fee),
            fee_asset=event.fee_asset,
            order_filled=dec(event.order_filled),
            derived=event.derived,
        )
        return head
    head.update(
        id=event.id,
        symbol=event.symbol,
        raw_symbol=event.raw_symbol,
        side=event.side.value,
        type=None if event.type is None else event.type.value,
        raw_type=event.raw_type,
        status=None if event.status is None else event.status.value,
        raw_status=event.raw_status,
        price=dec(event.price),
        amount=dec(event.amount),
        filled=dec(event.filled),
        remaining=dec(event.remaining),
        cost=dec(event.cost),
        last_fill_amount=dec(event.last_fill_amount),
        last_fill_price=dec(event.last_fill_price),
        fee=dec(event.fee),
        created_at=event.created_at,
    )
    return head


def to_json(event: Event) -> bytes:
    return _ENCODER.encode(to_dict(event))


# --- the other direction --------------------------------------------------------------------------------

_Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _BalanceIn(msgspec.Struct, tag_field="kind", tag="balance", forbid_unknown_fields=True):
    asset: str
    free: Decimal
    locked: Decimal
    total: Decimal | None = None
    timestamp: Any = None
    exchange: Exchange | None = None
    account: str | None = None
    source: Source = Source.STREAM


class _OrderIn(msgspec.Struct, tag_field="kind", tag="order", forbid_unknown_fields=True):
    id: str
    symbol: str
    side: Side
    status: OrderStatus | None
    amount: Decimal
    filled: Decimal
    type: OrderType | None = None
    price: Decimal | None = None
    cost: Decimal | None = None
    remaining: Decimal | None = None
    raw_symbol: str | None = None
    raw_type: str | None = None
    raw_status: str | None = None
    last_fill_amount: Decimal | None = None
    last_fill_price: Decimal | None = None
    fee: Decimal | None = None
    created_at: Any = None
    timestamp: Any = None
    exchange: Exchange | None = None
    account: str | None = None
    source: Source = Source.STREAM


class _FillIn(msgspec.Struct, tag_field="kind", tag="fill", forbid_unknown_fields=True):
    order_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal | None
    cost: Decimal | None
    order_filled: Decimal
    fee: Decimal | None = None
    fee_asset: str | None = None
    derived: bool = False
    timestamp: Any = None
    exchange: Exchange | None = None
    account: str | None = None
    source: Source = Source.STREAM


_IN = _BalanceIn | _OrderIn | _FillIn
_DICT_DECODER = msgspec.json.Decoder(dict[str, Any])


def from_json(data: bytes | str, **defaults: Any) -> Event:
    try:
        obj = _DICT_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise MessageShapeError(f"event is not a JSON object: {exc}") from None
    except RecursionError:  # msgspec's answer to absurdly deep nesting
        raise MessageShapeError("event is nested too deeply") from None
    return from_dict(obj, **defaults)


def from_dict(
    obj: dict[str, Any],
    *,
    exchange: Exchange = Exchange.BITMUSA,
    account: str = "default",
    timestamp: int | None = None,
) -> Event:
    """Build an event from its JSON form. `exchange`, `account` and `timestamp` fill in what is absent.

    Leniency (documented in docs/events.md): `total` and `remaining` may be omitted (they are computed; when
    given they must agree), `raw_*` default to the normalized values, `type` defaults to "limit", `source`
    to "stream", a fill's `fee` and `fee_asset` to null and `derived` to false.
    """
    try:
        parsed = msgspec.convert(obj, _IN, strict=False)
    except msgspec.ValidationError as exc:
        raise MessageShapeError(f"invalid event: {exc}", field=failure(exc).at) from None
    except RecursionError:
        raise MessageShapeError("event is nested too deeply") from None
    stamp = _millis(parsed.timestamp, "$.timestamp")
    if stamp is None:
        if timestamp is None:
            raise MessageShapeError("timestamp is required", field="$.timestamp")
        stamp = timestamp
    exch = parsed.exchange or exchange
    acct = parsed.account if parsed.account is not None else account
    if isinstance(parsed, _BalanceIn):
        free = _money(parsed.free, "$.free")
        locked = _money(parsed.locked, "$.locked")
        if parsed.total is not None and parsed.total != exact_add(free, locked):
            raise MessageShapeError("total is not free + locked", field="$.total")
        return BalanceUpdate(
            exchange=exch,
            account=acct,
            timestamp=stamp,
            asset=parsed.asset,
            free=free,
            locked=locked,
            source=parsed.source,
        )
    if isinstance(parsed, _FillIn):
        amount = _money(parsed.amount, "$.amount")
        if amount <= 0:
            raise MessageShapeError("a fill's amount must be positive", field="$.amount")
        return Fill(
            exchange=exch,
            account=acct,
            timestamp=stamp,
            order_id=parsed.order_id,
            symbol=parsed.symbol,
            side=parsed.side,
            amount=amount,
            price=_opt_money(parsed.price, "$.price"),
            cost=_opt_money(parsed.cost, "$.cost"),
            fee=_opt_money(parsed.fee, "$.fee"),
            fee_asset=_fee_asset(parsed.fee, parsed.fee_asset),
            order_filled=_money(parsed.order_filled, "$.order_filled"),
            derived=parsed.derived,
            source=parsed.source,
        )
    amount = _money(parsed.amount, "$.amount")
    filled = _money(parsed.filled, "$.filled")
    remaining = exact_sub(amount, filled)
    if parsed.remaining is not None and parsed.remaining != remaining:
        raise MessageShapeError("remaining is not amount - filled", field="$.remaining")
    order_type = parsed.type if "type" in obj else OrderType.LIMIT
    return OrderUpdate(
        exchange=exch,
        account=acct,
        timestamp=stamp,
        id=parsed.id,
        symbol=parsed.symbol,
        raw_symbol=parsed.raw_symbol if parsed.raw_symbol is not None else parsed.symbol,
        side=parsed.side,
        type=order_type,
        raw_type=_raw_default(parsed.raw_type, order_type),
        status=parsed.status,
        raw_status=_raw_default(parsed.raw_status, parsed.status),
        price=_opt_money(parsed.price, "$.price"),
        amount=amount,
        filled=filled,
        remaining=remaining,
        cost=_opt_money(parsed.cost, "$.cost"),
        last_fill_amount=_opt_money(parsed.last_fill_amount, "$.last_fill_amount"),
        last_fill_price=_opt_money(parsed.last_fill_price, "$.last_fill_price"),
        fee=_opt_money(parsed.fee, "$.fee"),
        created_at=_millis(parsed.created_at, "$.created_at"),
        source=parsed.source,
    )


def _fee_asset(fee: Decimal | None, asset: str | None) -> str | None:
    """A fill's fee asset, which only a fee can have (events.md: null whenever `fee` is null)."""
    if asset is not None and fee is None:
        raise MessageShapeError(
            "fee_asset needs a fee: it names the asset the fee is paid in", field="$.fee_asset"
        )
    if asset is not None and not asset:
        raise MessageShapeError("fee_asset must be a non-empty asset name or null", field="$.fee_asset")
    return asset


def _raw_default(raw: str | None, value: OrderType | OrderStatus | None) -> str:
    if raw is not None:
        return raw
    if value is None:
        raise MessageShapeError("an unknown (null) value needs its raw_* text", field="$.raw_status")
    return value.value.upper()


def _money(value: Decimal, path: str) -> Decimal:
    try:
        return checked(value)
    except ValueError as exc:
        raise MessageShapeError(f"{path}: {exc}", field=path) from None


def _opt_money(value: Decimal | None, path: str) -> Decimal | None:
    return None if value is None else _money(value, path)


def _millis(value: Any, path: str) -> int | None:
    if value is None:
        return None
    try:
        return msgspec.convert(value, _Millis)
    except msgspec.ValidationError:
        raise MessageShapeError(f"{path}: expected integer milliseconds", field=path) from None
