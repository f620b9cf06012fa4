"""A terminal dashboard of a running gateway: a pure render of a snapshot, and the loop that redraws it.

This module owns what the dashboard shows and how it is laid out: per account its connection state,
events, events per second, reconnects and resyncs; each sink's health (ok, retrying, DOWN or FAILED, for
how long, and the error on a line of its own); the latest faults and reconnects, held a few seconds; every
balance; the open orders; the most recent fills; the latest log lines. The frame is laid out by priority to
fit the terminal (docs/gateway.md, "The dashboard"): a short one gives up the log, then fills and orders,
the balances only last, and a cut section counts what it hides in its title.

`render(snapshot, width, height)` is a pure function (no clock, no terminal), so its exact text is tested;
`snapshot_of(gateway, ...)` reads a running gateway into a `DashboardSnapshot`; `RateMeter` turns event
totals into rates; `Notices` holds each account's latest fault or reconnect for `hold` seconds;
`run_dashboard` redraws with plain ANSI escapes (alternate screen, cursor home, erase) about four times a
second at the terminal's current size, with no curses dependency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import shutil
import textwrap
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TextIO

from userstream.events import BalanceUpdate, Fill, OrderUpdate
from userstream.gateway.service import Gateway, SinkHandle

__all__ = [
    "AccountPanel",
    "DashboardSnapshot",
    "LogTail",
    "Notices",
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
    notices: tuple[str, ...] = ()  # the latest faults and reconnects, newest first (see `Notices`)

    @property
    def events_per_second(self) -> float:
        return sum(account.events_per_second for account in self.accounts)


def render(snapshot: DashboardSnapshot, width: int = 100, height: int = 40) -> str:
    """The frame for `snapshot`, at most `width` columns and `height` lines (never fewer than 10 lines).

    What a frame shows is chosen by priority, so a short terminal loses the least useful lines first: the
    header (title, clock, events per second, HTTP address, each sink's health), the newest held notice,
    the account table with each failed account's and each failing sink's error, every balance, three open
    orders, the latest fill, the newest log line and the footer, in that order, each while it fits; then
    the room left grows the open orders, the fills, the log and the notices a row each in turn. Blank
    lines go between the sections before that growth on a tall terminal, after it on a short one. A
    section that is cut says so in its title (`OPEN ORDERS (3 of 12, newest)`), never with a row of its
    own; a narrow terminal drops the least useful columns first, and a wide one puts the open orders and
    the fills side by side."""
    width = max(width, 20)
    height = max(height, 10)
    header = _header(snapshot, width)
    table = _account_table(snapshot.accounts, width)
    faults = [
        *(f"  {account.name}: {account.error}" for account in snapshot.accounts if account.error),
        *(f"  sink {error}" for error in snapshot.sink_errors),
    ]
    # An error is why something is down: wrapped, not cut, where it is wider than the terminal.
    faults = [part for fault in faults for part in _wrap(fault, width)]
    account_rows = [*table[1:], *faults]
    accounts = _Section(table[:1], account_rows, least=_ALL, title=_counted(table[0], len(account_rows)))
    notices = _Section([], [f"! {notice}" for notice in snapshot.notices], least=1, blank=False)
    balance_head, balance_rows = _balances(snapshot.accounts, width)
    balances = _Section(
        balance_head, balance_rows, least=_ALL, title=_counted(balance_head[0], len(balance_rows))
    )
    # No section shows more rows than the terminal has lines: only those are formatted.
    orders = _orders(snapshot.accounts, width, limit=height)
    fills = _fills(snapshot.accounts, width, limit=height)
    trades = [orders, fills]
    # A wide terminal: the open orders whole, and beside them the fills in the columns that fit.
    pair = None
    if (room := width - len(_SEPARATOR) - _width_of(orders)) >= _NARROWEST_FILLS:
        pair = _side_by_side(orders, _fills(snapshot.accounts, room, limit=height), width)
    if pair is not None:
        trades = [pair]
    log_rows = [f"  {line}" for line in snapshot.log_lines]
    logs = _Section(["LOG"] if log_rows else [], log_rows, least=1, tail=True)
    footer = _Section([], [snapshot.footer], least=1)
    _allocate(
        height - len(header),
        first=[notices, accounts, balances, *trades, logs, footer],
        grow=[*trades, logs, notices],
    )
    lines = [
        *header,
        *notices.lines(),
        *accounts.lines(),
        *balances.lines(),
        *(line for section in trades for line in section.lines()),
        *logs.lines(),
        *footer.lines(),
    ][:height]
    return "\n".join(_cut(line.rstrip(), width) for line in lines)


_ALL = 1 << 30  # a section's `least`: every row before anything grows


def _counted(head: str, total: int) -> Callable[[int], list[str]]:
    """The title of a section shown whole but on a very short terminal: there, it says how many rows of
    `total` it shows, since nothing disappears unsaid."""

    def title(shown: int) -> list[str]:
        return [head if shown >= total else f"{head}  ({shown} of {total} rows)"]

    return title


class _Section:
    """Some rows under a title; the allocation decides how many of its rows a frame shows."""

    def __init__(
        self,
        head: list[str],
        rows: list[str],
        *,
        least: int,
        blank: bool = True,
        tail: bool = False,
        title: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.head = head
        self.rows = rows
        self.least = least
        self.blank = blank  # preceded by a blank line when there is room for one
        self.tail = tail  # cut from the top: the last rows are the ones to keep (a log)
        self.title = title  # the head for `shown` rows, when it says how many are hidden
        self.shown = 0
        self.on = False
        self.spaced = False

    def heading(self, shown: int) -> list[str]:
        """The head when `shown` rows are shown."""
        return self.head if self.title is None else self.title(shown)

    def lines(self) -> list[str]:
        if not self.on:
            return []
        head = self.heading(self.shown)
        rows = self.rows[len(self.rows) - self.shown :] if self.tail else self.rows[: self.shown]
        return [*([""] if self.spaced else []), *head, *rows]


def _allocate(room: int, *, first: list[_Section], grow: list[_Section]) -> None:
    """Share `room` lines: each of `first` in turn gets its head and up to `least` rows; then the sections
    of `grow` get a row each in turn while they have more; blank lines go between the sections before that
    growth when the room left is at least twice what they take (a tall terminal), else after it."""
    for section in first:
        opening = (
            len(section.head) + (1 if section.rows else 0) if section.head else min(1, len(section.rows))
        )
        if opening == 0 or opening > room:
            continue
        section.on = True
        room -= len(section.head)
        take = min(section.least, len(section.rows), room)
        section.shown = take
        room -= take
    spaced = [section for section in first if section.on and section.blank]
    if room >= 2 * len(spaced):
        for section in spaced:
            section.spaced = True
        room -= len(spaced)
    growing = True
    while room > 0 and growing:
        growing = False
        for section in grow:
            if room > 0 and section.on and section.shown < len(section.rows):
                section.shown += 1
                room -= 1
                growing = True
    for section in spaced:
        if room > 0 and not section.spaced:
            section.spaced = True
            room -= 1


def _header(snapshot: DashboardSnapshot, width: int) -> list[str]:
    """The title (cut before the clock and the rate are), then where the gateway serves and writes: on one
    line, or a line each when they do not fit on one (a sink that is down is never cut from the frame)."""
    when = datetime.datetime.fromtimestamp(snapshot.now_ms / 1000, datetime.UTC)
    stats = f"  {when:%Y-%m-%d %H:%M:%S} UTC  {snapshot.events_per_second:.1f} events/s"
    if len(snapshot.title) + len(stats) > width:
        stats = f"  {when:%H:%M:%S} UTC  {snapshot.events_per_second:.1f} ev/s"
    lines = [_cut(snapshot.title, max(1, width - len(stats))) + stats]
    where = ([f"HTTP {snapshot.http_url}"] if snapshot.http_url else []) + [
        f"sink {sink}" for sink in snapshot.sinks
    ]
    joined = "  ".join(where)
    if where and len(joined) <= width:
        lines.append(joined)
    elif where:
        lines.extend(where)
    return lines


def _account_table(accounts: Sequence[AccountPanel], width: int) -> list[str]:
    rows = [
        (
            account.name,
            account.exchange,
            account.state,
            str(account.events),
            f"{account.events_per_second:.1f}",
            str(account.reconnects),
            str(account.resyncs),
            "-"
            if account.seconds_since_last_event is None
            else f"{account.seconds_since_last_event:.1f}s ago",
        )
        for account in accounts
    ]
    return _table(
        [
            _Column("ACCOUNT"),
            _Column("EXCHANGE"),
            _Column("STATE", minimum=12),  # `reconnecting` fits: the columns do not jump at a cut
            _Column("EVENTS", right=True, gap=1, drop=2),
            _Column("EV/S", right=True, gap=1, minimum=5),
            _Column("RECONNECTS", right=True, gap=1),
            _Column("RESYNCS", right=True, gap=1),
            _Column("LAST EVENT", right=True, drop=3),
        ],
        rows,
        width,
    )


def _balances(accounts: Sequence[AccountPanel], width: int) -> tuple[list[str], list[str]]:
    """Balances as one row per asset and a `free / locked` column per account when that fits the width
    (the demo's two accounts at 80 columns), else one row per account and asset."""
    holders = [account for account in accounts if account.balances]
    if not holders:
        return ["BALANCES  none yet"], []
    assets = sorted({balance.asset for account in holders for balance in account.balances})
    columns = [_Column("BALANCES")]
    cells: list[list[str]] = [[asset] for asset in assets]
    for account in holders:
        held = {balance.asset: balance for balance in account.balances}
        free = max(len(_num(balance.free)) for balance in account.balances)
        locked = max(len(_num(balance.locked)) for balance in account.balances)
        columns.append(_Column(f"{account.name} free / locked"))
        for row, asset in zip(cells, assets, strict=True):
            balance = held.get(asset)
            row.append(
                "-".rjust(free)
                if balance is None
                else f"{_num(balance.free):>{free}} / {_num(balance.locked):<{locked}}"
            )
    matrix = _table(columns, [tuple(row) for row in cells], width, cut=False)
    if matrix:
        return matrix[:1], matrix[1:]
    table = _table(
        [
            _Column("BALANCES"),
            _Column("ASSET"),
            _Column("FREE", right=True),
            _Column("LOCKED", right=True),
            _Column("TOTAL", right=True, drop=1),
        ],
        [
            (account.name if index == 0 else "", b.asset, _num(b.free), _num(b.locked), _num(b.total))
            for account in holders
            for index, b in enumerate(account.balances)
        ],
        width,
    )
    return table[:1], table[1:]


def _orders(accounts: Sequence[AccountPanel], width: int, *, limit: int) -> _Section:
    """The open orders, newest first; the title counts them, and says how many are shown when cut."""
    orders = sorted(
        ((order, account.name) for account in accounts for order in account.open_orders),
        key=lambda item: (item[0].created_at or 0, item[0].id),
        reverse=True,
    )
    rows = [
        (
            owner,
            order.id,
            order.symbol,
            order.side.value,
            _price(order.price),
            _num(order.amount),
            _num(order.filled),
            order.raw_status,
        )
        for order, owner in orders[:limit]
    ]
    columns = [
        _Column("ACCOUNT"),
        _Column("ID", drop=2),
        _Column("SYMBOL"),
        _Column("SIDE"),
        _Column("PRICE", right=True),
        _Column("AMOUNT", right=True),
        _Column("FILLED", right=True, drop=3),
        _Column("STATUS", drop=1),
    ]
    table = _table(columns, rows, width)
    if not rows:
        return _Section(["OPEN ORDERS  none"], [], least=0)

    def title(shown: int) -> list[str]:
        count = f"{len(orders)}" if shown >= len(orders) else f"{shown} of {len(orders)}, newest"
        return [f"OPEN ORDERS ({count})", table[0]]

    return _Section(["OPEN ORDERS", table[0]], table[1:], least=3, title=title)


# The fills' table needs more columns than this: in less room, it is not tried beside the orders.
_NARROWEST_FILLS = 40


def _fills(accounts: Sequence[AccountPanel], width: int, *, limit: int) -> _Section:
    """The most recent fills, newest first."""
    fills = sorted(
        ((fill, account.name) for account in accounts for fill in account.recent_fills),
        key=lambda item: item[0].timestamp,
        reverse=True,
    )
    if not fills:
        return _Section(["RECENT FILLS  none yet"], [], least=0)
    rows = [
        (
            _clock(fill.timestamp),
            owner,
            fill.symbol,
            fill.side.value,
            _num(fill.amount),
            _price(fill.price),
            "-" if fill.fee is None else _num(fill.fee),
            "derived" if fill.derived else "",
        )
        for fill, owner in fills[:limit]
    ]
    table = _table(
        [
            _Column("TIME"),
            _Column("ACCOUNT"),
            _Column("SYMBOL"),
            _Column("SIDE"),
            _Column("AMOUNT", right=True),
            _Column("PRICE", right=True),
            _Column("FEE", right=True, drop=2),
            _Column("", drop=1),
        ],
        rows,
        width,
    )

    def title(shown: int) -> list[str]:
        count = "" if shown >= len(fills) else f" ({shown} of {len(fills)}, newest)"
        return [f"RECENT FILLS{count}", table[0]]

    return _Section(["RECENT FILLS", table[0]], table[1:], least=1, title=title)


_SEPARATOR = " \u2502 "  # between two sections side by side


def _width_of(section: _Section) -> int:
    return max(len(line) for line in [*section.head, *section.rows, *section.heading(0)])


def _side_by_side(left: _Section, right: _Section, width: int) -> _Section | None:
    """`left` and `right` as one section, a row of each on every line, when both fit the width whole."""
    left_width, right_width = _width_of(left), _width_of(right)
    if left_width + len(_SEPARATOR) + right_width > width:
        return None

    def join(one: list[str], other: list[str]) -> list[str]:
        size = max(len(one), len(other))
        one, other = one + [""] * (size - len(one)), other + [""] * (size - len(other))
        return [f"{a:<{left_width}}{_SEPARATOR}{b}" for a, b in zip(one, other, strict=True)]

    def heading(shown: int) -> list[str]:
        return join(left.heading(min(shown, len(left.rows))), right.heading(min(shown, len(right.rows))))

    return _Section(
        join(left.head, right.head),
        join(left.rows, right.rows),
        least=max(left.least, right.least),
        title=heading,
    )


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    right: bool = False  # right-aligned (numbers)
    gap: int = 2  # spaces before the column
    minimum: int = 0
    drop: int = 0  # 0: always shown; else dropped when the table is too wide, 1 first


def _table(
    columns: Sequence[_Column], rows: Sequence[tuple[str, ...]], width: int, *, cut: bool = True
) -> list[str]:
    """A header line and a line per row, each column as wide as its widest cell; when that is wider than
    `width`, the droppable columns go (`drop` 1 first) until it fits. [] when it cannot fit and not `cut`."""
    widths = [
        max(column.minimum, len(column.header), *(len(row[index]) for row in rows))
        for index, column in enumerate(columns)
    ]
    shown = list(range(len(columns)))

    def total() -> int:
        return sum(widths[i] + (columns[i].gap if n else 0) for n, i in enumerate(shown))

    for rank in sorted({column.drop for column in columns if column.drop}):
        if total() <= width:
            break
        shown = [i for i in shown if columns[i].drop != rank]
    if total() > width and not cut:
        return []

    def line(cells: Sequence[str]) -> str:
        parts = []
        for n, i in enumerate(shown):
            cell = cells[i].rjust(widths[i]) if columns[i].right else cells[i].ljust(widths[i])
            parts.append((" " * columns[i].gap if n else "") + cell)
        return "".join(parts).rstrip()

    return [line([column.header for column in columns]), *(line(row) for row in rows)]


_WRAP_LINES = 3  # lines an error may take; a longer one is cut on the last


def _wrap(line: str, width: int) -> list[str]:
    """`line` on up to _WRAP_LINES lines of `width`, the next ones indented under its text."""
    parts = textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False) or [line]
    if len(parts) > _WRAP_LINES:
        parts = [*parts[: _WRAP_LINES - 1], _cut(" ".join(parts[_WRAP_LINES - 1 :]), width)]
    return parts


def _cut(line: str, width: int) -> str:
    """A line fit for `width` columns; a cut one ends with an ellipsis, so no number is shown half."""
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def _num(value: Decimal) -> str:
    """Exact, in plain notation, trailing zeros kept: the wire's text."""
    return format(value, "f")


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
    """Keeps the last few log messages for the dashboard (logs written to the terminal would tear it), and
    counts the warnings and errors among them, so the dashboard can hold the latest in its header."""

    def __init__(self, size: int = 5) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=size)
        self.warnings = 0  # records at WARNING or above so far
        self.last_warning: str | None = None  # the latest of them, as a line

    def emit(self, record: logging.LogRecord) -> None:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = f"{when:%H:%M:%S} {record.levelname.lower():<7} {record.getMessage()}"
        self.lines.append(line)
        if record.levelno >= logging.WARNING:
            self.warnings += 1
            self.last_warning = line


class Notices:
    """The latest fault and reconnect of each account (and the latest warning of the log), each held for
    `hold` seconds: a cut connection is back within a fraction of a second, so its log lines scroll out of
    the log at once; the header keeps them in view long enough to be read.

    `observe` compares each frame's accounts with the previous frame's: an account that left `live` says
    so (`demo-bitmusa reconnecting`), and one that is live again says after how long and which reconnect
    it was; a reconnect quicker than a frame shows as its count going up. Times are `now` seconds (any
    monotonic clock) and `wall_ms` for the clock shown."""

    def __init__(self, hold: float = 8.0) -> None:
        self.hold = hold
        self._held: dict[str, tuple[float, str]] = {}  # subject -> (since, line)
        self._states: dict[str, tuple[str, int]] = {}  # account -> (state, reconnects) last frame
        self._down_since: dict[str, float] = {}
        self._warnings = 0

    def note(self, subject: str, text: str, *, now: float, wall_ms: int) -> None:
        """Hold `text` about `subject` (any key: an account's is `account <name>`), replacing what was
        held about it, with the time of `wall_ms` in front."""
        self._held[subject] = (now, f"{_clock(wall_ms)[:8]} {text}")

    def observe(
        self,
        accounts: Sequence[AccountPanel],
        *,
        now: float,
        wall_ms: int,
        log: LogTail | None = None,
    ) -> None:
        for account in accounts:
            before = self._states.get(account.name)
            self._states[account.name] = (account.state, account.reconnects)
            if before is None:
                continue
            state, reconnects = before
            if account.state == "live" and (state == "reconnecting" or account.reconnects > reconnects):
                since = self._down_since.pop(account.name, None)
                after = "" if since is None else f" after {now - since:.1f}s"
                text = f"live again{after} (reconnect {account.reconnects}, resync {account.resyncs})"
                self.note(f"account {account.name}", f"{account.name} {text}", now=now, wall_ms=wall_ms)
            elif account.state != state and account.state in ("reconnecting", "failed"):
                if state == "live":
                    self._down_since[account.name] = now
                why = f": {account.error}" if account.state == "failed" and account.error else ""
                self.note(
                    f"account {account.name}",
                    f"{account.name} {account.state}{why}",
                    now=now,
                    wall_ms=wall_ms,
                )
        if log is not None and log.warnings != self._warnings and log.last_warning is not None:
            self._warnings = log.warnings
            self._held["log"] = (now, log.last_warning)  # stamped already, by the record's time

    def current(self, now: float) -> tuple[str, ...]:
        """What is held at `now`, newest first."""
        for subject, (since, _) in list(self._held.items()):
            if now - since > self.hold:
                del self._held[subject]
        return tuple(line for _, line in sorted(self._held.values(), key=lambda item: -item[0]))


def snapshot_of(
    gateway: Gateway,
    *,
    title: str,
    rates: Mapping[str, float],
    now_ms: int,
    log_lines: Sequence[str] = (),
    footer: str = "Ctrl-C to stop",
    notices: Sequence[str] = (),
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
        notices=tuple(notices),
    )


def _sink_line(sink: SinkHandle) -> str:
    """`sqlite:events.db ok, 0 pending`, or how it fails: `redis:... DOWN for 12.0s (9 attempts), 4 pending`
    (the error goes on a line of its own)."""
    health = sink.health
    line = f"{sink.name} {health.state if health.up else health.state.upper()}"
    if health.failing_for is not None:
        line += f" for {health.failing_for:.1f}s ({health.attempts} attempts)"
    return f"{line}, {sink.runner.pending} pending"


def _terminal_size(out: TextIO) -> os.terminal_size:
    """The size of the terminal `out` writes to, read from it (a resize shows at the next frame): not
    from $COLUMNS and $LINES first, which a shell exports once and a resize leaves stale. Not a terminal:
    those variables, else 80x24."""
    try:
        return os.get_terminal_size(out.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation (a StringIO) is both
        return shutil.get_terminal_size()


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
    notice_seconds: float = 8.0,
) -> None:
    """Redraw the dashboard on `out` (a terminal) until `stop` is set, then give the screen back. Each
    frame fits the terminal's size at that moment; faults and reconnects stay in the header for
    `notice_seconds`."""
    meter = RateMeter()
    notices = Notices(notice_seconds)
    out.write(_ENTER)
    try:
        while not stop.is_set():
            totals = {account.name: sum(account.events.values()) for account in gateway.accounts}
            now, now_ms = clock(), wall_ms()
            snapshot = snapshot_of(
                gateway,
                title=title,
                rates=meter.update(now, totals),
                now_ms=now_ms,
                log_lines=() if log_tail is None else tuple(log_tail.lines),
                footer=footer,
            )
            notices.observe(snapshot.accounts, now=now, wall_ms=now_ms, log=log_tail)
            snapshot = dataclasses.replace(snapshot, notices=notices.current(now))
            size = _terminal_size(out)
            # Every line of the terminal: the frame ends without a newline, so the screen never scrolls.
            frame = render(snapshot, width=size.columns, height=size.lines)
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
