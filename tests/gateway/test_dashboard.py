"""The dashboard: a pure render of a snapshot (exact text), the rate meter, and the log tail."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

from userstream.events import BalanceUpdate, Exchange, Fill, OrderStatus, OrderType, OrderUpdate, Side
from userstream.gateway.dashboard import LogTail, Notices, RateMeter
from userstream.gateway.dashboard_layout import AccountPanel, DashboardSnapshot, render

T = 1_700_703_548_000  # 2023-11-23 01:39:08 UTC


def balance(asset: str, free: str, locked: str) -> BalanceUpdate:
    return BalanceUpdate(
        exchange=Exchange.BITMUSA,
        account="demo-bitmusa",
        timestamp=T,
        asset=asset,
        free=Decimal(free),
        locked=Decimal(locked),
    )


def order(order_id: str, price: str | None, amount: str, filled: str) -> OrderUpdate:
    return OrderUpdate(
        exchange=Exchange.BITMUSA,
        account="demo-bitmusa",
        timestamp=T,
        id=order_id,
        symbol="ETH/USDT",
        raw_symbol="ETH/USDT",
        side=Side.SELL,
        type=OrderType.LIMIT,
        raw_type="LIMIT_PRICE",
        status=OrderStatus.OPEN,
        raw_status="TRADING",
        price=None if price is None else Decimal(price),
        amount=Decimal(amount),
        filled=Decimal(filled),
        remaining=Decimal(amount) - Decimal(filled),
        cost=Decimal(0),
        created_at=T,
    )


def fill(at: int, amount: str, fee: str | None, *, derived: bool) -> Fill:
    return Fill(
        exchange=Exchange.COINLOCALLY if fee else Exchange.BITMUSA,
        account="demo-bitmusa",
        timestamp=T + at,
        order_id="1000008",
        symbol="ETH/USDT",
        side=Side.SELL,
        amount=Decimal(amount),
        price=Decimal("3472.48"),
        cost=None,
        fee=None if fee is None else Decimal(fee),
        order_filled=Decimal(amount),
        derived=derived,
    )


SNAPSHOT = DashboardSnapshot(
    title="userstream demo",
    now_ms=T,
    http_url="http://127.0.0.1:8080",
    sinks=("sqlite:events.db ok, 0 pending",),
    accounts=(
        AccountPanel(
            name="demo-bitmusa",
            exchange="bitmusa",
            state="live",
            events=120,
            events_per_second=10.25,
            reconnects=1,
            resyncs=2,
            seconds_since_last_event=0.04,
            balances=(balance("BTC", "0.9126", "0.0431"), balance("USDT", "107582.59299787", "0.000000")),
            open_orders=(order("1000008", "3472.48", "0.756", "0.716"), order("1000009", None, "2", "0")),
            recent_fills=(fill(500, "0.056", None, derived=True), fill(1500, "0.1", "0.0001", derived=False)),
        ),
        AccountPanel(
            name="demo-coinlocally",
            exchange="coinlocally",
            state="failed",
            events=0,
            events_per_second=0.0,
            reconnects=0,
            resyncs=0,
            seconds_since_last_event=None,
            error="Coinlocally refused the 'token' header (HTTP 401)",
        ),
    ),
    log_lines=("01:39:07 info    bitmusa/demo-bitmusa connected connection=2",),
)

# The layout changed with issue 15 (sections by priority, tables as wide as their cells, balances one row per
# asset with a `free / locked` column per account, the open orders and fills newest first).
FRAME = """\
userstream demo  2023-11-23 01:39:08 UTC  10.2 events/s
HTTP http://127.0.0.1:8080  sink sqlite:events.db ok, 0 pending

ACCOUNT           EXCHANGE     STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT
demo-bitmusa      bitmusa      live            120  10.2          1       2    0.0s ago
demo-coinlocally  coinlocally  failed            0   0.0          0       0           -
  demo-coinlocally: Coinlocally refused the 'token' header (HTTP 401)

BALANCES  demo-bitmusa free / locked
BTC                0.9126 / 0.0431
USDT      107582.59299787 / 0.000000

OPEN ORDERS (2)
ACCOUNT       ID       SYMBOL    SIDE    PRICE  AMOUNT  FILLED  STATUS
demo-bitmusa  1000009  ETH/USDT  sell   market       2       0  TRADING
demo-bitmusa  1000008  ETH/USDT  sell  3472.48   0.756   0.716  TRADING

RECENT FILLS
TIME          ACCOUNT       SYMBOL    SIDE  AMOUNT    PRICE     FEE
01:39:09.500  demo-bitmusa  ETH/USDT  sell     0.1  3472.48  0.0001
01:39:08.500  demo-bitmusa  ETH/USDT  sell   0.056  3472.48       -  derived

LOG
  01:39:07 info    bitmusa/demo-bitmusa connected connection=2

Ctrl-C to stop"""


def test_render_is_the_exact_frame_of_a_snapshot() -> None:
    assert render(SNAPSHOT, width=100, height=40) == FRAME


def test_render_fits_a_small_terminal() -> None:
    frame = render(SNAPSHOT, width=40, height=12).splitlines()
    assert frame == [
        "userstream demo  01:39:08 UTC  10.2 ev/s",  # the title gives way to the clock and the rate
        "HTTP http://127.0.0.1:8080",
        "sink sqlite:events.db ok, 0 pending",
        "ACCOUNT           EXCHANGE     STATE   \u2026",  # cut lines say so: no half number passes for whole
        "demo-bitmusa      bitmusa      live    \u2026",
        "demo-coinlocally  coinlocally  failed  \u2026",
        # An error wraps rather than being cut: it is why the account is down.
        "  demo-coinlocally: Coinlocally refused",
        "    the 'token' header (HTTP 401)",
        "BALANCES  demo-bitmusa free / locked",
        "BTC                0.9126 / 0.0431",
        "USDT      107582.59299787 / 0.000000",
        # No room for an order (its title, column names and a row): the footer still fits.
        "Ctrl-C to stop",
    ]


def test_many_orders_and_fills_are_cut_with_a_count_in_their_titles() -> None:
    panel = SNAPSHOT.accounts[0]
    busy = dataclasses.replace(
        panel,
        balances=(),
        open_orders=tuple(order(str(n), "1", "1", "0") for n in range(10)),
        recent_fills=tuple(fill(n, "1", None, derived=True) for n in range(10)),
    )
    snapshot = DashboardSnapshot(title="t", now_ms=T, accounts=(busy,))
    assert render(snapshot, width=100, height=20).splitlines() == [
        "t  2023-11-23 01:39:08 UTC  10.2 events/s",
        "ACCOUNT       EXCHANGE  STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa  bitmusa   live            120  10.2          1       2    0.0s ago",
        "BALANCES  none yet",
        # Three orders and the latest fill first, then a row each in turn: no row is spent on "... more".
        "OPEN ORDERS (7 of 10, newest)",
        "ACCOUNT       ID  SYMBOL    SIDE  PRICE  AMOUNT  FILLED  STATUS",
        "demo-bitmusa  9   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  8   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  7   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  6   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  5   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  4   ETH/USDT  sell      1       1       0  TRADING",
        "demo-bitmusa  3   ETH/USDT  sell      1       1       0  TRADING",
        "RECENT FILLS (4 of 10, newest)",
        "TIME          ACCOUNT       SYMBOL    SIDE  AMOUNT    PRICE  FEE",
        "01:39:08.009  demo-bitmusa  ETH/USDT  sell       1  3472.48    -  derived",
        "01:39:08.008  demo-bitmusa  ETH/USDT  sell       1  3472.48    -  derived",
        "01:39:08.007  demo-bitmusa  ETH/USDT  sell       1  3472.48    -  derived",
        "01:39:08.006  demo-bitmusa  ETH/USDT  sell       1  3472.48    -  derived",
        "Ctrl-C to stop",
    ]


def test_rate_meter_over_a_sliding_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.update(10.0, {"a": 100, "b": 0}) == {"a": 0.0, "b": 0.0}
    assert meter.update(11.0, {"a": 110, "b": 5}) == {"a": 10.0, "b": 5.0}
    assert meter.update(12.0, {"a": 130, "b": 5}) == {"a": 15.0, "b": 2.5}
    # The sample at 10.0 leaves the window once a newer one is 2 s old.
    assert meter.update(13.0, {"a": 160, "b": 5}) == {"a": 25.0, "b": 0.0}


def test_log_tail_keeps_the_last_lines() -> None:
    tail = LogTail(size=2)
    logger = logging.getLogger("test.dashboard.tail")
    logger.addHandler(tail)
    logger.setLevel(logging.INFO)
    try:
        for n in range(3):
            logger.warning("message %d", n)
    finally:
        logger.removeHandler(tail)
    assert [line.split(" ", 1)[1] for line in tail.lines] == ["warning message 1", "warning message 2"]


def test_a_sink_that_cannot_write_is_shown_down_with_its_error_on_a_line_of_its_own() -> None:
    error = "TransportError: redis:redis://***@cache:6379/0: Error 111 connecting to cache:6379. Refused."
    down = DashboardSnapshot(
        title="userstream demo",
        now_ms=T,
        sinks=(
            "sqlite:events.db ok, 0 pending",
            "redis:redis://***@cache:6379/0 DOWN for 4.6s (8 attempts), 41 pending",
        ),
        sink_errors=(f"redis:redis://***@cache:6379/0: {error}",),
        accounts=SNAPSHOT.accounts[:1],
    )
    assert render(down, width=200, height=40).splitlines()[:6] == [
        "userstream demo  2023-11-23 01:39:08 UTC  10.2 events/s",
        "sink sqlite:events.db ok, 0 pending  "
        "sink redis:redis://***@cache:6379/0 DOWN for 4.6s (8 attempts), 41 pending",
        "",
        "ACCOUNT       EXCHANGE  STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa  bitmusa   live            120  10.2          1       2    0.0s ago",
        f"  sink redis:redis://***@cache:6379/0: {error}",
    ]


def busy_panel(name: str, exchange: str, state: str) -> AccountPanel:
    """An account as busy as the demo's: four balances, six open orders, twenty recent fills."""
    return AccountPanel(
        name=name,
        exchange=exchange,
        state=state,
        events=4210,
        events_per_second=21.4,
        reconnects=3,
        resyncs=4,
        seconds_since_last_event=0.1,
        balances=(
            balance("BTC", "0.9126", "0.0431"),
            balance("ETH", "8.62697300", "0.096"),
            balance("USDT", "107582.59299787", "766.040800"),
            balance("XRP", "8850.33800000", "1379"),
        ),
        open_orders=tuple(order(str(1000010 + n), "3472.48", "0.756", "0.716") for n in range(6)),
        recent_fills=tuple(fill(100 * n, "0.056", "0.0001", derived=False) for n in range(20)),
    )


BUSY = DashboardSnapshot(
    title="userstream demo: serve --simulate 20 on http://127.0.0.1:40000",
    now_ms=T,
    http_url="http://127.0.0.1:8080",
    accounts=(
        busy_panel("demo-bitmusa", "bitmusa", "live"),
        busy_panel("demo-coinlocally", "coinlocally", "reconnecting"),
    ),
    log_lines=tuple(f"01:39:0{n} info    bitmusa/demo-bitmusa connected connection={n}" for n in range(5)),
    notices=("01:39:06 demo-bitmusa live again after 0.3s (reconnect 3, resync 4)",),
    footer="Ctrl-C to stop. Try: curl http://127.0.0.1:8080/metrics",
)


def test_a_standard_terminal_shows_state_balances_orders_the_latest_fill_and_the_log() -> None:
    assert render(BUSY, width=80, height=24).splitlines() == [
        # The title gives way to the clock and the rate.
        "userstream demo: serve --simulate 20 on http://127.0.0\u2026  01:39:08 UTC  42.8 ev/s",
        "HTTP http://127.0.0.1:8080",
        "! 01:39:06 demo-bitmusa live again after 0.3s (reconnect 3, resync 4)",
        "ACCOUNT           EXCHANGE     STATE         EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa      bitmusa      live          21.4          3       4    0.1s ago",
        "demo-coinlocally  coinlocally  reconnecting  21.4          3       4    0.1s ago",
        "BALANCES  demo-bitmusa free / locked    demo-coinlocally free / locked",
        "BTC                0.9126 / 0.0431               0.9126 / 0.0431",
        "ETH            8.62697300 / 0.096            8.62697300 / 0.096",
        "USDT      107582.59299787 / 766.040800  107582.59299787 / 766.040800",
        "XRP         8850.33800000 / 1379          8850.33800000 / 1379",
        "OPEN ORDERS (4 of 12, newest)",
        "ACCOUNT           ID       SYMBOL    SIDE    PRICE  AMOUNT  FILLED  STATUS",
        "demo-bitmusa      1000015  ETH/USDT  sell  3472.48   0.756   0.716  TRADING",
        "demo-coinlocally  1000015  ETH/USDT  sell  3472.48   0.756   0.716  TRADING",
        "demo-bitmusa      1000014  ETH/USDT  sell  3472.48   0.756   0.716  TRADING",
        "demo-coinlocally  1000014  ETH/USDT  sell  3472.48   0.756   0.716  TRADING",
        "RECENT FILLS (2 of 40, newest)",
        "TIME          ACCOUNT           SYMBOL    SIDE  AMOUNT    PRICE     FEE",
        "01:39:09.900  demo-bitmusa      ETH/USDT  sell   0.056  3472.48  0.0001",
        "01:39:09.900  demo-coinlocally  ETH/USDT  sell   0.056  3472.48  0.0001",
        "LOG",
        "  01:39:04 info    bitmusa/demo-bitmusa connected connection=4",
        "Ctrl-C to stop. Try: curl http://127.0.0.1:8080/metrics",
    ]


def test_a_large_terminal_shows_more_of_each_section() -> None:
    frame = render(BUSY, width=160, height=50).splitlines()
    assert len(frame) == 50
    assert frame[0] == f"{BUSY.title}  2023-11-23 01:39:08 UTC  42.8 events/s"  # the title whole
    assert frame[2:7] == [  # a tall terminal: blank lines between the sections; the events column is back
        "! 01:39:06 demo-bitmusa live again after 0.3s (reconnect 3, resync 4)",
        "",
        "ACCOUNT           EXCHANGE     STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa      bitmusa      live           4210  21.4          3       4    0.1s ago",
        "demo-coinlocally  coinlocally  reconnecting   4210  21.4          3       4    0.1s ago",
    ]
    # Wide enough for the open orders and the fills side by side: every order, and 25 fills.
    bar = "\u2502"
    assert frame[13:17] == [
        "",
        f"OPEN ORDERS (12){' ' * 60}{bar} RECENT FILLS (25 of 40, newest)",
        f"ACCOUNT           ID       SYMBOL    SIDE    PRICE  AMOUNT  FILLED  STATUS  {bar} "
        "TIME          ACCOUNT           SYMBOL    SIDE  AMOUNT    PRICE     FEE",
        f"demo-bitmusa      1000015  ETH/USDT  sell  3472.48   0.756   0.716  TRADING {bar} "
        "01:39:09.900  demo-bitmusa      ETH/USDT  sell   0.056  3472.48  0.0001",
    ]
    assert (
        frame[40]
        == f"{' ' * 76}{bar} 01:39:08.700  demo-bitmusa      ETH/USDT  sell   0.056  3472.48  0.0001"
    )
    assert frame[-9:] == [
        "",
        "LOG",
        *(f"  01:39:0{n} info    bitmusa/demo-bitmusa connected connection={n}" for n in range(5)),
        "",
        "Ctrl-C to stop. Try: curl http://127.0.0.1:8080/metrics",
    ]


def test_every_size_keeps_lines_within_the_width_and_the_frame_within_the_height() -> None:
    for width in (20, 40, 60, 79, 80, 81, 100, 120, 160, 240):
        for height in (5, 10, 12, 16, 20, 24, 30, 40, 50, 80):
            frame = render(BUSY, width=width, height=height).splitlines()
            assert len(frame) <= max(height, 10), (width, height)
            assert all(len(line) <= width for line in frame), (width, height)
            assert not any("more" in line for line in frame), (width, height)
            if width >= 80 and height >= 24:
                text = "\n".join(frame)
                assert "demo-coinlocally  coinlocally  reconnecting" in text, (width, height)
                assert "USDT      107582.59299787 / 766.040800  107582.59299787 / 766.040800" in text
                assert "demo-bitmusa      1000015  ETH/USDT  sell  3472.48" in text, (width, height)
                assert "01:39:09.900  demo-bitmusa      ETH/USDT  sell   0.056  3472.48" in text
                assert frame[2].startswith("! 01:39:06 demo-bitmusa live again after 0.3s")


def test_balances_of_many_accounts_fall_back_to_a_row_per_account_and_asset() -> None:
    many = dataclasses.replace(
        BUSY, accounts=tuple(busy_panel(f"account-{n}", "bitmusa", "live") for n in range(3)), notices=()
    )
    frame = render(many, width=80, height=60).splitlines()
    start = frame.index("BALANCES   ASSET             FREE      LOCKED            TOTAL")
    assert frame[start : start + 6] == [
        "BALANCES   ASSET             FREE      LOCKED            TOTAL",
        "account-0  BTC             0.9126      0.0431           0.9557",
        "           ETH         8.62697300       0.096       8.72297300",
        "           USDT   107582.59299787  766.040800  108348.63379787",
        "           XRP      8850.33800000        1379   10229.33800000",
        "account-1  BTC             0.9126      0.0431           0.9557",
    ]
    assert "BALANCES   ASSET             FREE      LOCKED" in render(many, width=60, height=60).splitlines()


def test_notices_hold_the_latest_fault_and_reconnect_of_each_account_for_a_while() -> None:
    def seen(
        state: str, reconnects: int = 0, resyncs: int = 0, error: str | None = None
    ) -> list[AccountPanel]:
        panel = SNAPSHOT.accounts[0]
        return [dataclasses.replace(panel, state=state, reconnects=reconnects, resyncs=resyncs, error=error)]

    notices = Notices(hold=5.0)
    notices.observe(seen("starting"), now=100.0, wall_ms=T)
    notices.observe(seen("live"), now=100.25, wall_ms=T + 250)
    assert notices.current(100.25) == ()  # the first connection is no news
    notices.observe(seen("reconnecting", reconnects=1), now=101.0, wall_ms=T + 1000)
    assert notices.current(101.0) == ("01:39:09 demo-bitmusa reconnecting",)
    notices.observe(seen("live", reconnects=1, resyncs=3), now=101.5, wall_ms=T + 1500)
    assert notices.current(101.5) == ("01:39:09 demo-bitmusa live again after 0.5s (reconnect 1, resync 3)",)
    # A reconnect quicker than a frame: both frames see `live`, the count went up.
    notices.observe(seen("live", reconnects=2, resyncs=4), now=103.0, wall_ms=T + 3000)
    held = ("01:39:11 demo-bitmusa live again (reconnect 2, resync 4)",)
    assert notices.current(107.5) == held
    assert notices.current(108.0) == held  # held for `hold` seconds...
    assert notices.current(108.01) == ()  # ...and no longer
    notices.observe(seen("live", reconnects=2, resyncs=4), now=109.0, wall_ms=T + 9000)
    assert notices.current(109.0) == ()  # nothing happened
    notices.observe(
        seen("failed", reconnects=2, error="Bitmusa refused the api key"), now=110.0, wall_ms=T + 10000
    )
    assert notices.current(110.0) == ("01:39:18 demo-bitmusa failed: Bitmusa refused the api key",)


def test_notices_hold_the_latest_warning_of_the_log_beside_the_accounts_newest_first() -> None:
    tail = LogTail(size=2)
    logger = logging.getLogger("test.dashboard.notices")
    logger.addHandler(tail)
    logger.setLevel(logging.INFO)
    notices = Notices(hold=5.0)
    try:
        notices.observe(SNAPSHOT.accounts, now=100.0, wall_ms=T, log=tail)
        logger.warning("fault: cut %d connections of %s", 2, "demo")
        logger.info("a routine line")  # info is no fault: it only goes to the log
        notices.observe(SNAPSHOT.accounts, now=100.5, wall_ms=T + 500, log=tail)
        changed = [dataclasses.replace(SNAPSHOT.accounts[0], state="reconnecting"), SNAPSHOT.accounts[1]]
        notices.observe(changed, now=101.0, wall_ms=T + 1000, log=tail)
        logger.info("another routine line")
        logger.info("and one more, so the warning has left the 2-line log")
        notices.observe(changed, now=102.0, wall_ms=T + 2000, log=tail)
    finally:
        logger.removeHandler(tail)
    assert tail.warnings == 1
    assert [line.split(" ", 1)[1] for line in tail.lines] == [
        "info    another routine line",
        "info    and one more, so the warning has left the 2-line log",
    ]
    held = notices.current(102.0)
    assert held[0] == "01:39:09 demo-bitmusa reconnecting"
    assert held[1].split(" ", 1)[1] == "warning fault: cut 2 connections of demo"
    assert len(held) == 2
    assert notices.current(105.6) == ("01:39:09 demo-bitmusa reconnecting",)  # the warning's 5 s are over


def test_a_very_short_terminal_cuts_the_balances_last_and_says_how_many_rows_it_shows() -> None:
    frame = render(BUSY, width=100, height=10).splitlines()
    assert frame[3:] == [
        "ACCOUNT           EXCHANGE     STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa      bitmusa      live           4210  21.4          3       4    0.1s ago",
        "demo-coinlocally  coinlocally  reconnecting   4210  21.4          3       4    0.1s ago",
        "BALANCES  demo-bitmusa free / locked    demo-coinlocally free / locked  (3 of 4 rows)",
        "BTC                0.9126 / 0.0431               0.9126 / 0.0431",
        "ETH            8.62697300 / 0.096            8.62697300 / 0.096",
        "USDT      107582.59299787 / 766.040800  107582.59299787 / 766.040800",
    ]


def test_more_accounts_than_lines_are_cut_with_a_count_in_the_table_head() -> None:
    crowd = dataclasses.replace(
        BUSY, notices=(), accounts=tuple(busy_panel(f"account-{n:02d}", "bitmusa", "live") for n in range(30))
    )
    frame = render(crowd, width=100, height=24).splitlines()
    assert len(frame) == 24
    assert frame[2] == (
        "ACCOUNT     EXCHANGE  STATE        EVENTS  EV/S RECONNECTS RESYNCS  LAST EVENT  (21 of 30 rows)"
    )
    assert frame[3].startswith("account-00  ")
    assert frame[-1].startswith("account-20  ")


def test_a_sink_that_is_down_keeps_its_line_and_its_whole_error_at_80x24() -> None:
    error = "TransportError: redis:redis://***@cache:6379/0: Error 111 connecting to cache:6379. Refused."
    down = dataclasses.replace(
        BUSY,
        sinks=(
            "sqlite:events.db ok, 0 pending",
            "redis:redis://***@cache:6379/0 DOWN for 4.6s (8 attempts), 41 pending",
        ),
        sink_errors=(f"redis:redis://***@cache:6379/0: {error}",),
    )
    frame = render(down, width=80, height=24).splitlines()
    assert frame[1:10] == [
        "HTTP http://127.0.0.1:8080",  # too long for one line together: a line each
        "sink sqlite:events.db ok, 0 pending",
        "sink redis:redis://***@cache:6379/0 DOWN for 4.6s (8 attempts), 41 pending",
        "! 01:39:06 demo-bitmusa live again after 0.3s (reconnect 3, resync 4)",
        "ACCOUNT           EXCHANGE     STATE         EV/S RECONNECTS RESYNCS  LAST EVENT",
        "demo-bitmusa      bitmusa      live          21.4          3       4    0.1s ago",
        "demo-coinlocally  coinlocally  reconnecting  21.4          3       4    0.1s ago",
        "  sink redis:redis://***@cache:6379/0: TransportError:",
        "    redis:redis://***@cache:6379/0: Error 111 connecting to cache:6379. Refused.",
    ]
    # What gives way is the footer and an order row: still every balance, orders and the latest fill.
    assert frame[10:15] == render(BUSY, width=80, height=24).splitlines()[6:11]
    assert "OPEN ORDERS (3 of 12, newest)" in frame
    assert "RECENT FILLS (1 of 40, newest)" in frame
    assert len(frame) == 24
