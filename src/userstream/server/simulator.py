"""`--simulate RATE`: a small, consistent spot market per account, and the ledger of what it told the streams.

Each account trades a few symbols with limit orders. Placing an order locks funds (the quote asset for a buy,
the base asset for a sell); a fill, partial or full, at the order's price releases the locked funds it used
and credits the other asset less a 0.1 % fee (so a buy pays its fee in the base asset, a sell in the quote);
a cancel releases what is still locked. The order update of a fill reports that one execution: its amount,
price and fee (Coinlocally's `l`, `L`, `n`: the commission of this execution, as Binance reads it), so the
fees of the fills a client derives add up to what `Market.fees_charged` says was charged. Every change is
published as the order update followed by the balance updates of that same moment, through the same path as
the admin ingest. The `Ledger` is the truth those events describe (balances and open orders per account), so
later tests can compare what a client reconstructed against it. Invariants, checked by the tests: no balance
is ever negative, and each asset's locked amount equals what the open orders lock in it.

`Market.step` is pure given its random generator and `now_ms`; `Simulator.run` only paces the steps in time.
Money arithmetic is exact (products in an exact context, sums with money.exact_add / exact_sub); the fee is
the one deliberate rounding, always down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Context, Decimal, Inexact, InvalidOperation
from typing import Final

from userstream.errors import UserStreamError
from userstream.events import (
    BalanceUpdate,
    Event,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from userstream.logs import log_event
from userstream.money import exact_add, exact_sub
from userstream.protocol.registry import REGISTRY

__all__ = ["INSTRUMENTS", "Instrument", "Ledger", "Market", "Simulator"]

_log = logging.getLogger("userstream.server.simulator")

# Products of prices and quantities with a handful of digits each are exact in this context; it traps
# instead of rounding, so a mistake is an exception, never a silently wrong balance.
_EXACT = Context(prec=120, traps=[Inexact, InvalidOperation])
_FEE_RATE = Decimal("0.001")
_FEE_QUANTUM = Decimal("1e-8")
_ZERO = Decimal(0)
_MAX_BURST = 256  # events produced back to back before yielding to the event loop
#: The `exchange` an event of the market carries: a label only, since every published event is rendered in
#: every exchange's dialect (the registry's first entry, as an ingested event's default).
_LABEL: Final = next(iter(REGISTRY))


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str  # unified "BASE/QUOTE"
    base: str
    quote: str
    reference_price: Decimal
    price_quantum: Decimal
    amount_quantum: Decimal
    max_amount: Decimal


def _instrument(symbol: str, price: str, price_step: str, amount_step: str, most: str) -> Instrument:
    base, quote = symbol.split("/")
    return Instrument(
        symbol, base, quote, Decimal(price), Decimal(price_step), Decimal(amount_step), Decimal(most)
    )


INSTRUMENTS: tuple[Instrument, ...] = (
    _instrument("BTC/USDT", "65000.00", "0.01", "0.0001", "0.0500"),
    _instrument("ETH/USDT", "3500.00", "0.01", "0.001", "1.000"),
    _instrument("XRP/USDT", "0.5155", "0.0001", "1", "2000"),
)

_OPENING_BALANCES: dict[str, Decimal] = {
    "USDT": Decimal("100000.00"),
    "BTC": Decimal("1.0000"),
    "ETH": Decimal("10.000"),
    "XRP": Decimal("10000"),
}


@dataclass(slots=True)
class _Order:
    id: str
    instrument: Instrument
    side: Side
    price: Decimal
    amount: Decimal
    created_at: int
    filled: Decimal = _ZERO
    cost: Decimal = _ZERO

    @property
    def remaining(self) -> Decimal:
        return exact_sub(self.amount, self.filled)

    def locked_asset(self) -> str:
        return self.instrument.quote if self.side is Side.BUY else self.instrument.base

    def locked_amount(self) -> Decimal:
        """What the order still locks: remaining * price in quote for a buy, the remaining base for a sell."""
        if self.side is Side.BUY:
            return _EXACT.multiply(self.remaining, self.price)
        return self.remaining


@dataclass(frozen=True, slots=True)
class Ledger:
    """The true state of one simulated account: asset -> (free, locked), and order id -> its latest update."""

    balances: dict[str, tuple[Decimal, Decimal]]
    open_orders: dict[str, OrderUpdate] = field(default_factory=dict)


class Market:
    """One account's market. `step(now_ms)` makes one change and returns the events that describe it."""

    def __init__(
        self,
        account: str,
        rng: random.Random,
        *,
        first_order_id: int = 1,
        instruments: Sequence[Instrument] = INSTRUMENTS,
    ) -> None:
        self.account = account
        self._rng = rng
        self._instruments = tuple(instruments)
        self._prices = {instrument.symbol: instrument.reference_price for instrument in instruments}
        self._free: dict[str, Decimal] = dict(_OPENING_BALANCES)
        self._locked: dict[str, Decimal] = dict.fromkeys(_OPENING_BALANCES, _ZERO)
        self._orders: dict[str, _Order] = {}
        self._latest: dict[str, OrderUpdate] = {}
        self._next_id = first_order_id
        # asset -> every fee charged so far: what the fills a client derives from the stream must add up to
        self._fees: dict[str, Decimal] = {}

    def opening_balances(self, now_ms: int) -> list[Event]:
        """Every asset's balance as it stands: what a stream sees first."""
        return [self._balance(asset, now_ms) for asset in sorted(self._free)]

    def snapshot(self, now_ms: int) -> list[Event]:
        """The whole state as events: every balance (stamped now) and each open order's latest update.

        Folding these into any state gives the ledger, so a stream that joined late can catch up.
        """
        return [*self.opening_balances(now_ms), *self._latest.values()]

    def fees_charged(self) -> dict[str, Decimal]:
        """asset -> the total of the fees charged so far (a buy pays in its base asset, a sell in quote)."""
        return dict(sorted(self._fees.items()))

    def ledger(self) -> Ledger:
        return Ledger(
            balances={asset: (self._free[asset], self._locked[asset]) for asset in sorted(self._free)},
            open_orders=dict(self._latest),
        )

    def step(self, now_ms: int) -> list[Event]:
        rng = self._rng
        if not self._orders or (len(self._orders) < 3 and rng.random() < 0.6):
            events = self._place(now_ms)
            if events or not self._orders:
                return events
        roll = rng.random()
        if roll < 0.25:
            events = self._place(now_ms)
            if events:
                return events
        order = self._orders[rng.choice(sorted(self._orders))]
        if roll < 0.55:
            return self._fill(order, now_ms, full=False)
        if roll < 0.80:
            return self._fill(order, now_ms, full=True)
        return self._cancel(order, now_ms)

    # --- the three moves ------------------------------------------------------------------------------------

    def _place(self, now_ms: int) -> list[Event]:
        rng = self._rng
        instrument = rng.choice(self._instruments)
        side = rng.choice((Side.BUY, Side.SELL))
        reference = self._walk_price(instrument)
        offset = Decimal(str(round(rng.uniform(-0.01, 0.01), 4)))
        price = _EXACT.multiply(reference, exact_add(Decimal(1), offset)).quantize(
            instrument.price_quantum, rounding=ROUND_DOWN
        )
        if price <= 0:
            return []
        steps = int(instrument.max_amount / instrument.amount_quantum)
        amount = _EXACT.multiply(instrument.amount_quantum, Decimal(rng.randint(1, steps)))
        order = _Order(self._new_id(), instrument, side, price, amount, created_at=now_ms)
        asset, needed = order.locked_asset(), order.locked_amount()
        if needed > self._free[asset]:
            return []  # not enough funds: no order this time (the market never overdraws)
        self._free[asset] = exact_sub(self._free[asset], needed)
        self._locked[asset] = exact_add(self._locked[asset], needed)
        self._orders[order.id] = order
        return [self._order_update(order, OrderStatus.OPEN, now_ms), self._balance(asset, now_ms)]

    def _fill(self, order: _Order, now_ms: int, *, full: bool) -> list[Event]:
        quantum = order.instrument.amount_quantum
        remaining_steps = int(order.remaining / quantum)
        if full or remaining_steps <= 1:
            quantity = order.remaining
        else:
            quantity = _EXACT.multiply(quantum, Decimal(self._rng.randint(1, remaining_steps - 1)))
        value = _EXACT.multiply(quantity, order.price)
        base, quote = order.instrument.base, order.instrument.quote
        if order.side is Side.BUY:
            self._locked[quote] = exact_sub(self._locked[quote], value)
            fee, fee_asset = _fee(quantity), base
            self._free[base] = exact_add(self._free[base], exact_sub(quantity, fee))
        else:
            self._locked[base] = exact_sub(self._locked[base], quantity)
            fee, fee_asset = _fee(value), quote
            self._free[quote] = exact_add(self._free[quote], exact_sub(value, fee))
        self._fees[fee_asset] = exact_add(self._fees.get(fee_asset, _ZERO), fee)
        order.filled = exact_add(order.filled, quantity)
        order.cost = exact_add(order.cost, value)
        closed = order.remaining == 0
        if closed:
            del self._orders[order.id]
        update = self._order_update(
            order,
            OrderStatus.CLOSED if closed else OrderStatus.OPEN,
            now_ms,
            last_fill=(quantity, order.price, fee),
        )
        return [update, self._balance(base, now_ms), self._balance(quote, now_ms)]

    def _cancel(self, order: _Order, now_ms: int) -> list[Event]:
        asset, released = order.locked_asset(), order.locked_amount()
        self._locked[asset] = exact_sub(self._locked[asset], released)
        self._free[asset] = exact_add(self._free[asset], released)
        del self._orders[order.id]
        return [self._order_update(order, OrderStatus.CANCELED, now_ms), self._balance(asset, now_ms)]

    # --- helpers --------------------------------------------------------------------------------------------

    def _walk_price(self, instrument: Instrument) -> Decimal:
        drift = Decimal(str(round(self._rng.uniform(-0.002, 0.002), 5)))
        moved = _EXACT.multiply(self._prices[instrument.symbol], exact_add(Decimal(1), drift))
        price = moved.quantize(instrument.price_quantum, rounding=ROUND_DOWN)
        if price > 0:
            self._prices[instrument.symbol] = price
        return self._prices[instrument.symbol]

    def _new_id(self) -> str:
        order_id = str(self._next_id)
        self._next_id += 1
        return order_id

    def _balance(self, asset: str, now_ms: int) -> BalanceUpdate:
        return BalanceUpdate(
            exchange=_LABEL,
            account=self.account,
            timestamp=now_ms,
            asset=asset,
            free=self._free[asset],
            locked=self._locked[asset],
        )

    def _order_update(
        self,
        order: _Order,
        status: OrderStatus,
        now_ms: int,
        *,
        last_fill: tuple[Decimal, Decimal, Decimal] | None = None,
    ) -> OrderUpdate:
        """The order's update; `last_fill` is the (amount, price, fee) of the execution it reports, if any.
        `fee` is that execution's commission (Binance's `n`), never the order's running total."""
        update = OrderUpdate(
            exchange=_LABEL,
            account=self.account,
            timestamp=now_ms,
            id=order.id,
            symbol=order.instrument.symbol,
            raw_symbol=order.instrument.symbol,
            side=order.side,
            type=OrderType.LIMIT,
            raw_type="LIMIT",
            status=status,
            raw_status=status.value.upper(),
            price=order.price,
            amount=order.amount,
            filled=order.filled,
            remaining=order.remaining,
            cost=order.cost,
            last_fill_amount=None if last_fill is None else last_fill[0],
            last_fill_price=None if last_fill is None else last_fill[1],
            fee=None if last_fill is None else last_fill[2],
            created_at=order.created_at,
        )
        if status is OrderStatus.OPEN:
            self._latest[order.id] = update
        else:
            self._latest.pop(order.id, None)
        return update


def _fee(received: Decimal) -> Decimal:
    return _EXACT.multiply(received, _FEE_RATE).quantize(_FEE_QUANTUM, rounding=ROUND_DOWN)


class Simulator:
    """The markets of every account, paced at about `rate` events per second in total."""

    def __init__(self, accounts: Sequence[str], *, rate: float, seed: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._rng = random.Random(seed)  # noqa: S311 (a simulation, not cryptography)
        self._markets = {
            name: Market(
                name,
                random.Random(f"{seed}:{name}" if seed is not None else None),  # noqa: S311
                first_order_id=1_000_000 * (index + 1) + 1,
            )
            for index, name in enumerate(accounts)
        }
        self.events_published = 0
        self._running = asyncio.Event()
        self._running.set()

    @property
    def accounts(self) -> list[str]:
        return list(self._markets)

    def market(self, account: str) -> Market:
        return self._markets[account]

    def ledger(self, account: str) -> Ledger:
        """The true state of `account` after everything published so far."""
        return self._markets[account].ledger()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        """Stop changing the markets (after the step in progress): the ledger holds still for comparisons."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def step(self, now_ms: int) -> tuple[str, list[Event]]:
        """One change in one account's market (chosen at random): (account, its events)."""
        account = self._rng.choice(list(self._markets))
        return account, self._markets[account].step(now_ms)

    async def run(self, publish: Callable[[str, Sequence[Event]], int]) -> None:
        """Publish the opening balances, then changes at about `rate` events per second, until cancelled."""
        for account, market in self._markets.items():
            self._publish(publish, account, market.opening_balances(_now_ms()))
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            if not self._running.is_set():
                await self._running.wait()
                next_at = time.monotonic()  # a pause is not a backlog
            burst = 0
            while time.monotonic() >= next_at and burst < _MAX_BURST and self._running.is_set():
                account, events = self.step(_now_ms())
                self._publish(publish, account, events)
                produced = max(1, len(events))  # a step that changed nothing still takes its turn
                burst += produced
                next_at += produced * interval
            now = time.monotonic()
            if next_at < now - 1.0:  # more than a second behind (a busy loop): drop the backlog, no burst
                next_at = now
            await asyncio.sleep(max(0.0, next_at - now))

    def _publish(
        self, publish: Callable[[str, Sequence[Event]], int], account: str, events: list[Event]
    ) -> None:
        if not events:
            return
        try:
            publish(account, events)
        except UserStreamError as exc:  # a rendering bug must not stop the market; say so loudly
            log_event(_log, logging.ERROR, "simulated events not published", account=account, error=str(exc))
            return
        self.events_published += len(events)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
