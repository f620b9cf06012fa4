"""A terminal dashboard of a running gateway: a pure render of a snapshot, and the loop that redraws it.

This module owns what the dashboard shows and how it is laid out: per account its connection state,
events, events per second, reconnects and resyncs; each sink's health (ok, retrying, DOWN or FAILED, for
how long, and the error on a line of its own); every balance; the open orders; the most recent fills; the
latest log lines. `render(snapshot, width, height)` is a pure function (no clock, no terminal), so its
exact text is tested; `snapshot_of(gateway, ...)` reads a running gateway into a `DashboardSnapshot`;
`RateMeter` turns event totals into rates; `run_dashboard` redraws with plain ANSI escapes (alternate
screen, cursor home, erase) about four times a second, with no curses dependency.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import shutil
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from userstream.eventjson import dec
from userstream.events import BalanceUpdate, Fill, OrderUpdate
from userstream.gateway.service import Gateway, SinkHandle

__all__ = [
    "AccountPanel",
    "DashboardSnapshot",
    "LogTail",
    "RateMeter",
    "render",
    "run_dashboard",
    "snapshot_of",
]

REDRAW_INTERVAL = 0.25  # seconds between frames: about four a second
_ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, normal screen back
_HOME = "\x1b[H"
_ERASE_LINE = "\x1b[K"
_ERASE_BELOW = "\x1b[J"


@dataclass(frozen=True, slots=True)
class AccountPanel:
    """What the dashboard shows of one account."""

    name: str
    exchange: str
    state: str
    events: int
    events_per_second: float
    reconnects: int
    resyncs: int
    seconds_since_last_event: float | None
    error: str | None = None
    balances: tuple[BalanceUpdate, ...] = ()
    open_orders: tuple[OrderUpdate, ...] = ()
    recent_fills: tuple[Fill, ...] = ()


@dataclass(frozen=True, slots=True)
class DashboardSnapshot:
    """Everything one frame shows: a pure value, so a frame is a pure function of it."""

    title: str
    now_ms: int  # wall-clock time of the frame, for the header
    accounts: tuple[AccountPanel, ...]
    http_url: str | None = None
    sinks: tuple[str, ...] = ()  # one short description per sink ("sqlite:events.db ok, 0 pending")
    sink_errors: tuple[str, ...] = ()  # "name: error" of each sink whose writes fail, a line each
    log_lines: tuple[str, ...] = ()
    footer: str = "Ctrl-C to stop"

    @property
    def events_per_second(self) -> float:
        return sum(account.events_per_second for account in self.accounts)


def render(snapshot: DashboardSnapshot, width: int = 100, height: int = 40) -> str:
    """The frame for `snapshot`, at most `width` columns and `height` lines (never fewer than 10 lines)."""
    height = max(height, 10)
    when = datetime.datetime.fromtimestamp(snapshot.now_ms / 1000, datetime.UTC)
    header = [f"{snapshot.title}  {when:%Y-%m-%d %H:%M:%S} UTC  {snapshot.events_per_second:.1f} events/s"]
    where = ([f"HTTP {snapshot.http_url}"] if snapshot.http_url else []) + [
        f"sink {sink}" for sink in snapshot.sinks
    ]
    if where:
        header.append("  ".join(where))
    header.append("")
    header.append(
        f"{'ACCOUNT':<18}{'EXCHANGE':<13}{'STATE':<14}{'EVENTS':>8}{'EV/S':>8}{'RECONNECTS':>12}"
        f"{'RESYNCS':>9}  LAST EVENT"
    )
    for account in snapshot.accounts:
        last = (
            "-"
            if account.seconds_since_last_event is None
            else f"{account.seconds_since_last_event:.1f}s ago"
        )
        header.append(
            f"{account.name:<18}{account.exchange:<13}{account.state:<14}{account.events:>8}"
            f"{account.events_per_second:>8.1f}{account.reconnects:>12}{account.resyncs:>9}  {last}"
        )
    for account in snapshot.accounts:
        if account.error is not None:
            header.append(f"  {account.name}: {account.error}")
    header.extend(f"  sink {error}" for error in snapshot.sink_errors)

    balances = ["", f"{'BALANCES':<18}{'ASSET':<8}{'FREE':>22}{'LOCKED':>22}{'TOTAL':>22}"]
    for account in snapshot.accounts:
        for index, balance in enumerate(account.balances):
            owner = account.name if index == 0 else ""
            balances.append(
                f"{owner:<18}{balance.asset:<8}{dec(balance.free):>22}{dec(balance.locked):>22}"
                f"{dec(balance.total):>22}"
            )

    orders_total = sum(len(account.open_orders) for account in snapshot.accounts)
    order_rows = [
        f"{account.name:<18}{order.id:<12}{order.symbol:<11}{order.side.value:<5}{_price(order.price):>14}"
        f"{dec(order.amount):>12}{dec(order.filled):>12}  {order.raw_status}"
        for account in snapshot.accounts
        for order in account.open_orders
    ]
    fills = sorted(
        ((fill, account.name) for account in snapshot.accounts for fill in account.recent_fills),
        key=lambda item: item[0].timestamp,
    )
    fill_rows = [
        f"{_clock(fill.timestamp):<14}{owner:<18}{fill.symbol:<11}{fill.side.value:<5}{dec(fill.amount):>12}"
        f" @ {_price(fill.price):<14}"
        + ("" if fill.fee is None else f"fee {dec(fill.fee)}")
        + ("  (derived)" if fill.derived else "")
        for fill, owner in reversed(fills)  # newest first
    ]
    logs = ["", "LOG", *(f"  {line}" for line in snapshot.log_lines)] if snapshot.log_lines else []
    footer = ["", snapshot.footer]

    fixed = len(header) + len(balances) + len(logs) + len(footer) + 4  # 4: two titles, two blank lines
    room = max(2, height - fixed)
    orders_room = max(1, min(len(order_rows), room // 2) if fill_rows else room)
    fills_room = max(1, room - min(len(order_rows), orders_room))
    lines = [
        *header,
        *balances,
        "",
        f"{f'OPEN ORDERS ({orders_total})':<18}{'ID':<12}{'SYMBOL':<11}{'SIDE':<5}{'PRICE':>14}{'AMOUNT':>12}"
        f"{'FILLED':>12}  STATUS",
        *_fit(order_rows, orders_room),
        "",
        f"{'RECENT FILLS':<14}{'ACCOUNT':<18}{'SYMBOL':<11}{'SIDE':<5}{'AMOUNT':>12}   PRICE",
        *_fit(fill_rows, fills_room),
        *logs,
        *footer,
    ]
    if len(lines) > height:  # a small terminal: cut the middle short, keep the footer
        lines = [*lines[: height - 1], snapshot.footer]
    return "\n".join(_cut(line.rstrip(), width) for line in lines)


def _cut(line: str, width: int) -> str:
    """A line fit for `width` columns; a cut one ends with an ellipsis, so no number is shown half."""
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def _fit(rows: list[str], room: int) -> list[str]:
    if len(rows) <= room:
        return rows
    return [*rows[: room - 1], f"  ... and {len(rows) - room + 1} more"]


def _price(value: Decimal | None) -> str:
    return "market" if value is None else format(value, "f")


def _clock(timestamp_ms: int) -> str:
    when = datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    return f"{when:%H:%M:%S}.{timestamp_ms % 1000:03d}"


# --- reading a running gateway ------------------------------------------------------------------------------


class RateMeter:
    """Events per second per account, over a sliding window of totals sampled at each frame."""

    def __init__(self, window: float = 2.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, Mapping[str, int]]] = deque()

    def update(self, now: float, totals: Mapping[str, int]) -> dict[str, float]:
        """Record `totals` at `now` (seconds) and return each name's rate over the window."""
        self._samples.append((now, dict(totals)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        first_at, first = self._samples[0]
        elapsed = now - first_at
        if elapsed <= 0:
            return dict.fromkeys(totals, 0.0)
        return {name: (total - first.get(name, 0)) / elapsed for name, total in totals.items()}


class LogTail(logging.Handler):
    """Keeps the last few log messages for the dashboard (logs written to the terminal would tear it)."""

    def __init__(self, size: int = 5) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        self.lines.append(f"{when:%H:%M:%S} {record.levelname.lower():<7} {record.getMessage()}")


def snapshot_of(
    gateway: Gateway,
    *,
    title: str,
    rates: Mapping[str, float],
    now_ms: int,
    log_lines: Sequence[str] = (),
    footer: str = "Ctrl-C to stop",
) -> DashboardSnapshot:
    """A running gateway as one frame's worth of values."""
    panels = []
    for account in gateway.accounts:
        picture = account.state.snapshot()
        panels.append(
            AccountPanel(
                name=account.name,
                exchange=account.exchange.value,
                state=account.connection.value,
                events=sum(account.events.values()),
                events_per_second=rates.get(account.name, 0.0),
                reconnects=account.reconnects,
                resyncs=account.resyncs,
                seconds_since_last_event=account.seconds_since_last_event,
                error=account.error,
                balances=tuple(picture.balances[asset] for asset in sorted(picture.balances)),
                open_orders=tuple(
                    sorted(picture.open_orders.values(), key=lambda order: (order.created_at or 0, order.id))
                ),
                recent_fills=picture.recent_fills[-20:],
            )
        )
    sinks = tuple(_sink_line(sink) for sink in gateway.sinks)
    sink_errors = tuple(
        f"{sink.name}: {sink.health.error}" for sink in gateway.sinks if sink.health.error is not None
    )
    return DashboardSnapshot(
        title=title,
        now_ms=now_ms,
        accounts=tuple(panels),
        http_url=gateway.http_url,
        sinks=sinks,
        sink_errors=sink_errors,
        log_lines=tuple(log_lines),
        footer=footer,
    )


def _sink_line(sink: SinkHandle) -> str:
    """`sqlite:events.db ok, 0 pending`, or how it fails: `redis:... DOWN for 12.0s (9 attempts), 4 pending`
    (the error goes on a line of its own)."""
    health = sink.health
    line = f"{sink.name} {health.state if health.up else health.state.upper()}"
    if health.failing_for is not None:
        line += f" for {health.failing_for:.1f}s ({health.attempts} attempts)"
    return f"{line}, {sink.runner.pending} pending"


async def run_dashboard(
    gateway: Gateway,
    stop: asyncio.Event,
    *,
    title: str,
    out: TextIO,
    clock: Callable[[], float],
    wall_ms: Callable[[], int],
    log_tail: LogTail | None = None,
    footer: str = "Ctrl-C to stop",
) -> None:
    """Redraw the dashboard on `out` (a terminal) until `stop` is set, then give the screen back."""
    meter = RateMeter()
    out.write(_ENTER)
    try:
        while not stop.is_set():
            totals = {account.name: sum(account.events.values()) for account in gateway.accounts}
            snapshot = snapshot_of(
                gateway,
                title=title,
                rates=meter.update(clock(), totals),
                now_ms=wall_ms(),
                log_lines=() if log_tail is None else tuple(log_tail.lines),
                footer=footer,
            )
            size = shutil.get_terminal_size()
            frame = render(snapshot, width=size.columns, height=size.lines - 1)
            out.write(_HOME + frame.replace("\n", _ERASE_LINE + "\n") + _ERASE_LINE + _ERASE_BELOW)
            out.flush()
            try:
                async with asyncio.timeout(REDRAW_INTERVAL):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        out.write(_LEAVE)
        out.flush()
