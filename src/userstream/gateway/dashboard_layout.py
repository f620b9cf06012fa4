"""The dashboard's frame: what one frame shows, and how it is laid out to fit the terminal. Pure.

This module owns the frame's values (`AccountPanel`, `DashboardSnapshot`) and `render(snapshot, width,
height)`, a pure function of them (no clock, no terminal), so its exact text is tested. What it shows: per
account its connection state, events, events per second, reconnects and resyncs; each sink's health (ok,
retrying, DOWN or FAILED, for how long, and the error on a line of its own); the latest faults and
reconnects; every balance; the open orders; the most recent fills; the latest log lines. The frame is laid
out by priority to fit the terminal (docs/gateway.md, "The dashboard"): a short one gives up the log, then
fills and orders, the balances only last, and a cut section counts what it hides in its title.
dashboard.py fills these values from a running gateway and redraws.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from userstream.events import BalanceUpdate, Fill, OrderUpdate

__all__ = ["AccountPanel", "DashboardSnapshot", "render", "time_of_day"]


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
    fill_rows, fill_count = _fill_rows(snapshot.accounts, limit=height)
    fills = _fills(fill_rows, fill_count, width)
    trades = [orders, fills]
    # A wide terminal: the open orders whole, and beside them the fills in the columns that fit.
    pair = None
    if (room := width - len(_SEPARATOR) - _width_of(orders)) >= _NARROWEST_FILLS:
        pair = _side_by_side(orders, _fills(fill_rows, fill_count, room), width)
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


def _fill_rows(accounts: Sequence[AccountPanel], *, limit: int) -> tuple[list[tuple[str, ...]], int]:
    """The most recent fills, newest first, formatted once (at most `limit` of them), and how many there
    are: the table is then laid out for whichever width it gets."""
    fills = sorted(
        ((fill, account.name) for account in accounts for fill in account.recent_fills),
        key=lambda item: item[0].timestamp,
        reverse=True,
    )
    rows: list[tuple[str, ...]] = [
        (
            time_of_day(fill.timestamp),
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
    return rows, len(fills)


def _fills(rows: list[tuple[str, ...]], total: int, width: int) -> _Section:
    """The fills' section at `width` columns, `total` fills in all."""
    if not total:
        return _Section(["RECENT FILLS  none yet"], [], least=0)
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
        count = "" if shown >= total else f" ({shown} of {total}, newest)"
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


def time_of_day(timestamp_ms: int) -> str:
    """`HH:MM:SS.mmm` (UTC) of a time in epoch milliseconds."""
    when = datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    return f"{when:%H:%M:%S}.{timestamp_ms % 1000:03d}"
