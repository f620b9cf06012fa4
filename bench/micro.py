"""Section 0: the hot-path functions issue 6 changed, each measured against what it replaced, in one run.

This module owns the before/after figures of the micro-optimizations (docs/performance.md): each "before"
is the replaced code, kept here verbatim (or the library default it replaced), and each pair runs
round-robin over the same inputs, so both sides see the same machine. Figures are ns per call, median of
`runs` passes over thousands of distinct inputs; about 40-60 ns of loop overhead is included in both.
"""

from __future__ import annotations

import ssl
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from decimal import Decimal, Rounded
from typing import Any

import wire
from userstream import money
from userstream.events import Exchange, OrderStatus, OrderType, OrderUpdate, Side, Source
from userstream.events import _key as event_key  # the function measured
from userstream.protocol import bitmusa, coinlocally


def _old_key(event: Any) -> tuple[object, ...]:
    """events._key before: a generator of getattr over the fields."""
    return tuple(getattr(event, name) for name in event.__struct_fields__ if name != "raw")


def _checked_looked_up(value: Decimal) -> Decimal:
    """money.checked before its method was bound once: the Context's `plus` looked up on every call."""
    if value.is_finite() and -money.MAX_EXPONENT <= value.adjusted() <= money.MAX_EXPONENT:
        try:
            money._DIGIT_COUNT.plus(value)
        except Rounded:
            pass
        else:
            return value
    return money._checked_slowly(value)


def _exact_sub_wrapped(pair: tuple[Decimal, Decimal]) -> Decimal:
    """money.exact_sub before: a function around the exact context's method."""
    return money._EXACT.subtract(pair[0], pair[1])


def _exact_sub_bound(pair: tuple[Decimal, Decimal]) -> Decimal:
    return money.exact_sub(pair[0], pair[1])


def _order_by_keywords(price: Decimal) -> OrderUpdate:
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="a",
        timestamp=1,
        id="C1",
        symbol="BTC/USDT",
        raw_symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        raw_type="LIMIT_PRICE",
        status=OrderStatus.OPEN,
        raw_status="TRADING",
        price=price,
        amount=price,
        filled=price,
        remaining=price,
        cost=price,
        created_at=1,
        raw="",
    )


def _order_by_position(price: Decimal) -> OrderUpdate:
    return OrderUpdate(
        Exchange.BITMUSA,
        "a",
        1,
        "C1",
        "BTC/USDT",
        "BTC/USDT",
        Side.BUY,
        OrderType.LIMIT,
        "LIMIT_PRICE",
        OrderStatus.OPEN,
        "TRADING",
        price,
        price,
        price,
        price,
        price,
        None,
        None,
        None,
        1,
        Source.STREAM,
        "",
    )


def _pass_ns(function: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    started = time.perf_counter_ns()
    for item in inputs:
        function(item)
    return (time.perf_counter_ns() - started) / len(inputs)


def _pair(
    before: Callable[[Any], object], after: Callable[[Any], object], inputs: Sequence[Any], runs: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {"before_ns": [], "after_ns": []}
    _pass_ns(before, inputs[:64])
    _pass_ns(after, inputs[:64])
    for _ in range(runs):
        samples["before_ns"].append(_pass_ns(before, inputs))
        samples["after_ns"].append(_pass_ns(after, inputs))
    out = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    out["speedup"] = round(out["before_ns"] / out["after_ns"], 2)
    return out


def _context_cost() -> dict[str, float]:
    """What building one verifying SSL context costs (what every stream did before the shared one)."""
    started = time.perf_counter()
    tracemalloc.start()
    contexts = [ssl.create_default_context() for _ in range(20)]
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    seconds = (time.perf_counter() - started) / len(contexts)
    return {"ms_per_context": round(seconds * 1000, 2), "kib_per_context_traced": round(size / 20 / 1024, 1)}


def run(runs: int = 7) -> dict[str, Any]:
    decimals = [Decimal(f"{index * 7919 % 100_000}.{index * 104_729 % 10**8:08d}") for index in range(4096)]
    orders = [_order_by_position(value) for value in decimals]
    bitmusa_frames = [frame.decode() for frame in wire.pool("bitmusa")]
    coinlocally_frames = wire.pool("coinlocally")
    out: dict[str, Any] = {
        "runs": runs,
        "money.checked (a bounded Decimal)": _pair(money._checked_slowly, money.checked, decimals, runs),
        "money.checked: Context method bound once": _pair(_checked_looked_up, money.checked, decimals, runs),
        "money.exact_sub: the Context's method itself": _pair(
            _exact_sub_wrapped, _exact_sub_bound, list(zip(decimals, reversed(decimals), strict=True)), runs
        ),
        "OrderUpdate construction (18 fields given)": _pair(
            _order_by_keywords, _order_by_position, decimals, runs
        ),
        "event equality key (OrderUpdate)": _pair(_old_key, event_key, orders, runs),
        "ssl context per stream": _context_cost(),
    }
    bitmusa_parse, coinlocally_parse = bitmusa.Parser(), coinlocally.Parser()
    out["parse one frame, now (ns)"] = {
        "bitmusa": round(statistics.median(_pass_ns(bitmusa_parse, bitmusa_frames) for _ in range(runs)), 1),
        "coinlocally": round(
            statistics.median(_pass_ns(coinlocally_parse, coinlocally_frames) for _ in range(runs)), 1
        ),
    }
    return out
