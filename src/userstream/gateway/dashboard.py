"""A terminal dashboard of a running gateway: one `GatewaySnapshot` per frame, and the loop that redraws it.

This module owns reading a running gateway into a frame's values and redrawing: `snapshot_of(snapshot,
...)` turns one `GatewaySnapshot` (snapshot.py; the same values /healthz and /metrics answer from) into a
`DashboardSnapshot`; `RateMeter` turns event totals into rates; `Notices` holds each account's latest fault
or reconnect for `hold` seconds; `LogTail` keeps the latest log lines; `run_dashboard` takes one snapshot
per frame and redraws with plain ANSI escapes (alternate screen, cursor home, erase) about four times a
second at the terminal's current size, with no curses dependency. What a frame shows and how it is laid
out is dashboard_layout.py's (`render`, a pure function).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from userstream.gateway.dashboard_layout import AccountPanel, DashboardSnapshot, render, time_of_day
from userstream.gateway.snapshot import GatewaySnapshot, GatewaySource, SinkView

__all__ = ["LogTail", "Notices", "RateMeter", "run_dashboard", "snapshot_of"]

REDRAW_INTERVAL = 0.25  # seconds between frames: about four a second
_ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, normal screen back
_HOME = "\x1b[H"
_ERASE_LINE = "\x1b[K"
_ERASE_BELOW = "\x1b[J"


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
        self._held[subject] = (now, f"{time_of_day(wall_ms)[:8]} {text}")

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
    snapshot: GatewaySnapshot,
    *,
    title: str,
    rates: Mapping[str, float],
    now_ms: int,
    log_lines: Sequence[str] = (),
    footer: str = "Ctrl-C to stop",
    notices: Sequence[str] = (),
) -> DashboardSnapshot:
    """A running gateway, read once (`snapshot`), as one frame's worth of values."""
    panels = []
    for account in snapshot.accounts:
        picture = account.picture
        panels.append(
            AccountPanel(
                name=account.name,
                exchange=account.exchange.value,
                state=account.connection.value,
                events=account.total_events,
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
    sinks = tuple(_sink_line(sink) for sink in snapshot.sinks)
    sink_errors = tuple(
        f"{sink.name}: {sink.health.error}" for sink in snapshot.sinks if sink.health.error is not None
    )
    return DashboardSnapshot(
        title=title,
        now_ms=now_ms,
        accounts=tuple(panels),
        http_url=snapshot.http_url,
        sinks=sinks,
        sink_errors=sink_errors,
        log_lines=tuple(log_lines),
        footer=footer,
        notices=tuple(notices),
    )


def _sink_line(sink: SinkView) -> str:
    """`sqlite:events.db ok, 0 pending`, or how it fails: `redis:... DOWN for 12.0s (9 attempts), 4 pending`
    (the error goes on a line of its own)."""
    health = sink.health
    line = f"{sink.name} {health.state if health.up else health.state.upper()}"
    if health.failing_for is not None:
        line += f" for {health.failing_for:.1f}s ({health.attempts} attempts)"
    return f"{line}, {sink.pending} pending"


def _terminal_size(out: TextIO) -> os.terminal_size:
    """The size of the terminal `out` writes to, read from it (a resize shows at the next frame): not
    from $COLUMNS and $LINES first, which a shell exports once and a resize leaves stale. Not a terminal:
    those variables, else 80x24."""
    try:
        return os.get_terminal_size(out.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation (a StringIO) is both
        return shutil.get_terminal_size()


async def run_dashboard(
    gateway: GatewaySource,
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
    frame reads the gateway once (`gateway.snapshot()`) and fits the terminal's size at that moment;
    faults and reconnects stay in the header for `notice_seconds`."""
    meter = RateMeter()
    notices = Notices(notice_seconds)
    out.write(_ENTER)
    try:
        while not stop.is_set():
            view = gateway.snapshot()
            totals = {account.name: account.total_events for account in view.accounts}
            now, now_ms = clock(), wall_ms()
            snapshot = snapshot_of(
                view,
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
