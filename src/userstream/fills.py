"""Fills from order updates: `FillTracker` turns a stream of `OrderUpdate`s into `Fill` events.

It owns the per-order memory needed to do that once and only once, and nothing else: it is pure (no I/O,
no clock) and bounded. It does not touch balances or open orders (`userstream.state` does).

The rule, the same for every exchange: the fills of an order add up to the growth of its cumulative filled
amount. Per order the tracker keeps the highest cumulative `filled` seen and the cumulative `cost` that came
with it. An update whose `filled` is not above it yields nothing (a duplicate, an older update arriving late,
a status change). An update that raises it yields fills for exactly the growth:

- When the update reports its own execution (Coinlocally's `l`, `L`, `n` as `last_fill_amount`,
  `last_fill_price`, `fee`) and that execution fits in the growth, one exact fill: amount `l`, price `L`,
  cost `l * L` (exact), fee `n`, `derived` false. Its `fee_asset` is the base asset for a buy and the quote
  asset for a sell: Binance's rule (Coinlocally's executionReport copies Binance's shape) and
  `userstream serve`'s; the document's own report agrees (a fee of 7.8 on selling 0.1 BTC at 13000 cannot be
  BTC). The document shows no commission-asset field (Binance's `N`), so none is read. Growth the execution
  does not explain (the order was already partly filled when first seen, or an earlier report was lost)
  comes first as one derived fill.
- Otherwise (Bitmusa, which sends only cumulative `tradedAmount` and `value`; or a snapshot correction) one
  derived fill: amount = growth of filled, cost = growth of cost, price = cost / amount (`exact_div`, the
  one rounded value), fee and fee asset unknown (None). The first update of an order that is already partly
  filled yields one fill for what it shows.

Keeping only a high-water mark is what makes duplicates and reordering harmless: an update older than the
mark can never fill again, and its quantity is already inside an earlier fill (as a derived one, if the
report that would have given it exactly came late). An order is forgotten when an update ends it with a final
status (not a snapshot's NOT_IN_SNAPSHOT, which the stream may yet contradict); its id is
remembered in a bounded list of finished orders so that a late update does not re-create it and fill it a
second time. When more than `max_orders` orders are open at once the least recently updated one is evicted
the same way (counted in `evicted`): a later update of it yields no fill, because never filling twice
matters more than never missing one.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from userstream.events import Event, Fill, OrderUpdate, Side
from userstream.money import exact_div, exact_mul, exact_sub

__all__ = ["FillTracker", "fee_asset"]

_ZERO = Decimal(0)

# An order's identity: ids are only unique within one exchange account.
_OrderKey = tuple[str, str, str]


class _Progress:
    """What fills already account for: the highest cumulative filled, and the cost reported with it."""

    __slots__ = ("cost", "filled")

    def __init__(self) -> None:
        self.filled = _ZERO
        self.cost: Decimal | None = _ZERO  # nothing filled costs nothing


class FillTracker:
    """Feed it every order update of one or more accounts, in the order they arrive; it returns the fills."""

    def __init__(self, *, max_orders: int = 10_000, max_finished: int = 10_000) -> None:
        if max_orders < 1 or max_finished < 1:
            raise ValueError("max_orders and max_finished must be positive")
        self._max_orders = max_orders
        self._max_finished = max_finished
        self._progress: OrderedDict[_OrderKey, _Progress] = OrderedDict()  # least recently updated first
        self._finished: OrderedDict[_OrderKey, None] = OrderedDict()  # oldest first
        self.evicted = 0

    @property
    def tracked_orders(self) -> int:
        return len(self._progress)

    def feed(self, event: Event) -> list[Fill]:
        """The fills `event` reveals, oldest first; none for anything but an order update."""
        if not isinstance(event, OrderUpdate):
            return []
        key = (event.exchange.value, event.account, event.id)
        if key in self._finished:
            return []
        # A snapshot's "gone" verdict (status None) does not end tracking: the snapshot may have missed the
        # order, and forgetting it would fill its whole amount again if it is back. Eviction bounds it.
        ends = event.is_final and event.status is not None
        progress = self._progress.get(key)
        if progress is not None:
            self._progress.move_to_end(key)
        elif ends:
            progress = _Progress()  # seen only as it ends: fill what it shows, keep nothing
        else:
            progress = self._start(key)
        fills: list[Fill] = []
        if event.filled > progress.filled:
            fills = _fills(event, progress)
            progress.filled = event.filled
            progress.cost = event.cost
        if ends:
            self._progress.pop(key, None)
            self._finish(key)
        return fills

    def _start(self, key: _OrderKey) -> _Progress:
        if len(self._progress) >= self._max_orders:
            oldest, _ = self._progress.popitem(last=False)
            self._finish(oldest)
            self.evicted += 1
        progress = _Progress()
        self._progress[key] = progress
        return progress

    def _finish(self, key: _OrderKey) -> None:
        self._finished[key] = None
        if len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)


def _fills(update: OrderUpdate, progress: _Progress) -> list[Fill]:
    """The fills for the growth of `update.filled` above `progress.filled` (which the caller checked)."""
    growth = exact_sub(update.filled, progress.filled)
    execution = update.last_fill_amount
    if execution is None or not _ZERO < execution <= growth:
        # No execution reported, or one that does not fit the growth: all of it is derived.
        return [_derived(update, growth, _growth(update.cost, progress.cost), update.filled)]
    exact_cost = None if update.last_fill_price is None else exact_mul(execution, update.last_fill_price)
    fills: list[Fill] = []
    unexplained = exact_sub(growth, execution)
    if unexplained > 0:
        cost_before = (
            None if exact_cost is None or update.cost is None else exact_sub(update.cost, exact_cost)
        )
        gap_cost = _growth(cost_before, progress.cost)
        fills.append(_derived(update, unexplained, gap_cost, exact_sub(update.filled, execution)))
    fills.append(
        Fill(
            exchange=update.exchange,
            account=update.account,
            timestamp=update.timestamp,
            order_id=update.id,
            symbol=update.symbol,
            side=update.side,
            amount=execution,
            price=update.last_fill_price,
            cost=exact_cost,
            fee=update.fee,
            fee_asset=None if update.fee is None else fee_asset(update.symbol, update.side),
            order_filled=update.filled,
            derived=False,
            source=update.source,
            raw=update.raw,
        )
    )
    return fills


def fee_asset(symbol: str, side: Side) -> str | None:
    """The asset an execution's commission is paid in: a buy pays in the base asset it receives, a sell in the
    quote asset; None when `symbol` is not a unified "BASE/QUOTE"."""
    base, slash, quote = symbol.partition("/")
    if not slash or not base or not quote:
        return None
    return base if side is Side.BUY else quote


def _growth(now: Decimal | None, before: Decimal | None) -> Decimal | None:
    """How much a cumulative cost grew; None when either end is unknown or it shrank (inconsistent data)."""
    if now is None or before is None:
        return None
    grown = exact_sub(now, before)
    return grown if grown >= 0 else None


def _derived(update: OrderUpdate, amount: Decimal, cost: Decimal | None, order_filled: Decimal) -> Fill:
    return Fill(
        exchange=update.exchange,
        account=update.account,
        timestamp=update.timestamp,
        order_id=update.id,
        symbol=update.symbol,
        side=update.side,
        amount=amount,
        price=_average_price(cost, amount),
        cost=cost,
        fee=None,
        order_filled=order_filled,
        derived=True,
        source=update.source,
        raw=update.raw,
    )


def _average_price(cost: Decimal | None, amount: Decimal) -> Decimal | None:
    if cost is None:
        return None
    try:
        return exact_div(cost, amount)
    except ValueError:  # a quotient beyond the money bounds: absurd input, not a price
        return None
