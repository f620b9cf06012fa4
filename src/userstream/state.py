"""An account's current picture, kept from its events: `AccountState`, a pure reducer, and `AccountSnapshot`.

This module owns the rules that make that picture converge whatever order events arrive in: which update is
newer, when an order leaves the open set and never comes back, and which events would turn the picture into
a REST snapshot's (`AccountState.diff`, what a resync after a reconnect emits). It performs no I/O, reads no
clock and makes no fills (`userstream.fills` does); docs/state.md explains the choices.

Ordering. A balance update is newer than the one held when its timestamp is later. An order update is
compared by (timestamp, filled, ends the order): at the same millisecond the one with more filled is newer,
and at the same filled the one that ends the order is. An older update is ignored, never applied over newer
state; an equal one is a duplicate and changes nothing. Two different updates with the same ordering key are
indistinguishable by their content, so the later arrival wins: the stream's own order is the best evidence.

Memory. What the state holds is kept without its `raw` text (`raw=""`): a balance or an open order can be
held for days, and its wire message is there for debugging the moment it arrives, not for the picture.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import TypeVar

import msgspec

from userstream.events import NOT_IN_SNAPSHOT, BalanceUpdate, Event, Fill, OrderUpdate, Source

__all__ = ["AccountSnapshot", "AccountState"]

_ZERO = Decimal(0)
_Held = TypeVar("_Held", bound=BalanceUpdate | OrderUpdate | Fill)

# (exchange, account, order id, order's filled after the fill): one piece of one order's execution
_FillKey = tuple[str, str, str, Decimal]


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An immutable picture of one account: balances by asset and open orders by id, as read-only mappings.

    It is also the shape of the truth a resync passes to `AccountState.diff`; `AccountSnapshot.of` builds one
    from a REST snapshot's events. The mappings are copied on construction, so nothing changes them later.
    """

    balances: Mapping[str, BalanceUpdate]
    open_orders: Mapping[str, OrderUpdate]
    recent_fills: tuple[Fill, ...] = ()  # oldest first, at most AccountState's max_recent_fills
    fill_count: int = 0  # every fill applied since the state was created
    applied: int = 0  # events accepted
    ignored: int = 0  # events refused: older than what was held, duplicates, late updates of ended orders

    def __post_init__(self) -> None:
        object.__setattr__(self, "balances", MappingProxyType(dict(self.balances)))
        object.__setattr__(self, "open_orders", MappingProxyType(dict(self.open_orders)))

    @classmethod
    def of(
        cls, balances: Iterable[BalanceUpdate] = (), open_orders: Iterable[OrderUpdate] = ()
    ) -> AccountSnapshot:
        """A snapshot of exactly these balances and open orders; ValueError if an asset or an id repeats."""
        by_asset: dict[str, BalanceUpdate] = {}
        for balance in balances:
            if by_asset.setdefault(balance.asset, balance) is not balance:
                raise ValueError(f"asset {balance.asset[:40]!r} appears twice")
        by_id: dict[str, OrderUpdate] = {}
        for order in open_orders:
            if by_id.setdefault(order.id, order) is not order:
                raise ValueError(f"order {order.id[:40]!r} appears twice")
        return cls(balances=by_asset, open_orders=by_id)


class _Ended:
    """A tombstone: an order ended by `key`. `definitive` unless only a snapshot said it was gone."""

    __slots__ = ("definitive", "key")

    def __init__(self, key: tuple[int, Decimal, bool], *, definitive: bool) -> None:
        self.key = key
        self.definitive = definitive


class AccountState:
    """The balances, open orders and recent fills one account's events imply. Feed it every event.

    Memory is bounded except for the balances and open orders themselves (which the exchange bounds): the
    recent fills keep the last `max_recent_fills`, and the ids of ended orders (so that a late update cannot
    bring one back) the last `max_ended_orders`.
    """

    def __init__(self, *, max_recent_fills: int = 1_000, max_ended_orders: int = 10_000) -> None:
        if max_recent_fills < 1 or max_ended_orders < 1:
            raise ValueError("max_recent_fills and max_ended_orders must be positive")
        self._max_recent_fills = max_recent_fills
        self._max_ended = max_ended_orders
        self._balances: dict[str, BalanceUpdate] = {}
        self._open: dict[str, OrderUpdate] = {}
        self._ended: OrderedDict[str, _Ended] = OrderedDict()  # oldest first
        self._recent_fills: OrderedDict[_FillKey, Fill] = OrderedDict()  # oldest first
        self._fill_count = 0
        self._applied = 0
        self._ignored = 0

    def apply(self, event: Event) -> bool:
        """Fold one event in. True when the picture (balances, open orders, recent fills) changed."""
        if isinstance(event, OrderUpdate):  # the most common event: tested first
            accepted, changed = self._apply_order(event)
        elif isinstance(event, BalanceUpdate):
            accepted, changed = self._apply_balance(event)
        else:
            accepted = changed = self._apply_fill(event)
        if accepted:
            self._applied += 1
        else:
            self._ignored += 1
        return changed

    def copy(self) -> AccountState:
        """An independent copy: applying to it leaves this state as it is."""
        twin = AccountState(max_recent_fills=self._max_recent_fills, max_ended_orders=self._max_ended)
        twin._balances = dict(self._balances)
        twin._open = dict(self._open)
        twin._ended = OrderedDict(self._ended)
        twin._recent_fills = OrderedDict(self._recent_fills)
        twin._fill_count = self._fill_count
        twin._applied = self._applied
        twin._ignored = self._ignored
        return twin

    def snapshot(self) -> AccountSnapshot:
        """A consistent, immutable copy of the picture now, with the counters."""
        return AccountSnapshot(
            balances=self._balances,
            open_orders=self._open,
            recent_fills=tuple(self._recent_fills.values()),
            fill_count=self._fill_count,
            applied=self._applied,
            ignored=self._ignored,
        )

    def diff(
        self, truth: AccountSnapshot, *, timestamp: int, source: Source = Source.SNAPSHOT
    ) -> list[Event]:
        """The events that turn this picture into `truth`, each stamped `timestamp` and marked `source`.

        `truth` must be complete (every non-zero balance, every open order) and `timestamp` the time the
        snapshot was requested, on the exchange's clock, once a connection was live: anything this state
        holds stamped that millisecond or later came over the live stream and may be newer than the truth, so
        it is left alone (the snapshot may already be behind the stream; whatever is newer still comes over
        the same stream). So every event
        returned is one `apply` accepts, and applying them all makes the picture equal the truth where the
        truth is not older. Balances first (by asset), then orders (by id).

        - A balance that differs (free or locked) or is new is emitted as the truth has it.
        - A non-zero balance the truth does not list is emitted as zero: a complete snapshot omits it
          because there is none.
        - An open order that differs (ignoring the per-execution fields last_fill_*, fee, which a snapshot
          does not carry) or is new is emitted as the truth has it, unless the stream already saw it end.
        - An open order the truth does not list has ended, but how is unknown: it is emitted as its last
          known state with status None and raw_status NOT_IN_SNAPSHOT, which `apply` treats as the end of
          the order. No outcome is invented. A later stream update of that order (the snapshot may have
          missed it) is still accepted, unlike one after a real final status.
        """
        events: list[Event] = []
        for asset, balance in sorted(truth.balances.items()):
            held = self._balances.get(asset)
            if held is not None and (
                held.timestamp >= timestamp or (held.free, held.locked) == (balance.free, balance.locked)
            ):
                continue
            events.append(msgspec.structs.replace(balance, timestamp=timestamp, source=source, raw=""))
        for asset, held in sorted(self._balances.items()):
            if asset not in truth.balances and held.timestamp < timestamp and held.total != 0:
                zero = msgspec.structs.replace(
                    held, free=_ZERO, locked=_ZERO, timestamp=timestamp, source=source, raw=""
                )
                events.append(zero)
        for order_id, order in sorted(truth.open_orders.items()):
            candidate = msgspec.structs.replace(order, timestamp=timestamp, source=source, raw="")
            held_open = self._open.get(order_id)
            if held_open is not None and held_open.timestamp >= timestamp:
                continue
            if self._accepts_order(candidate) and _material(order) != _material(held_open):
                events.append(candidate)
        for order_id, held_order in sorted(self._open.items()):
            if order_id not in truth.open_orders and held_order.timestamp < timestamp:
                gone = msgspec.structs.replace(
                    held_order,
                    timestamp=timestamp,
                    source=source,
                    status=None,
                    raw_status=NOT_IN_SNAPSHOT,
                    last_fill_amount=None,
                    last_fill_price=None,
                    fee=None,
                    raw="",
                )
                events.append(gone)
        return events

    # --- the rules ---------------------------------------------------------------------------------------

    def _apply_balance(self, update: BalanceUpdate) -> tuple[bool, bool]:
        held = self._balances.get(update.asset)
        if held is not None and (update.timestamp < held.timestamp or update == held):
            return False, False
        self._balances[update.asset] = bare(update)
        return True, True

    def _accepts_order(self, update: OrderUpdate) -> bool:
        """Whether `update` is newer than what is known of its order (held, or its tombstone)."""
        ended = self._ended.get(update.id)
        if ended is not None:
            return not ended.definitive and _order_key(update) > ended.key
        held = self._open.get(update.id)
        if held is None:
            return True
        new, old = _order_key(update), _order_key(held)
        # Events whose keys differ differ (the key's fields are compared by equality too), so the full
        # comparison is needed only on a tie, not for every newer update.
        return new > old or (new == old and update != held)

    def _apply_order(self, update: OrderUpdate) -> tuple[bool, bool]:
        if not self._accepts_order(update):
            return False, False
        order_id = update.id
        if order_id in self._ended:  # only a "gone" verdict can be overruled, by a newer update
            del self._ended[order_id]
        if not update.is_final:
            self._open[order_id] = bare(update)
            return True, True
        self._ended[order_id] = _Ended(_order_key(update), definitive=update.status is not None)
        if len(self._ended) > self._max_ended:
            self._ended.popitem(last=False)
        return True, self._open.pop(order_id, None) is not None

    def _apply_fill(self, fill: Fill) -> bool:
        key = (fill.exchange.value, fill.account, fill.order_id, fill.order_filled)
        if key in self._recent_fills:
            return False
        self._recent_fills[key] = bare(fill)
        if len(self._recent_fills) > self._max_recent_fills:
            self._recent_fills.popitem(last=False)
        self._fill_count += 1
        return True


def bare(event: _Held) -> _Held:
    """`event` as the state keeps it: without its wire text (see "Memory" above)."""
    return msgspec.structs.replace(event, raw="") if event.raw else event


def _order_key(update: OrderUpdate) -> tuple[int, Decimal, bool]:
    return (update.timestamp, update.filled, update.is_final)


# What a snapshot can tell about an order: every field but when and how it was learned, and the fields of
# one execution (a REST order has none).
_NOT_MATERIAL = frozenset({"timestamp", "source", "raw", "last_fill_amount", "last_fill_price", "fee"})
_MATERIAL_FIELDS = tuple(name for name in OrderUpdate.__struct_fields__ if name not in _NOT_MATERIAL)


def _material(order: OrderUpdate | None) -> tuple[object, ...] | None:
    return None if order is None else tuple(getattr(order, name) for name in _MATERIAL_FIELDS)
