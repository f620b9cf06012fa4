"""The dashboard: a pure render of a snapshot (exact text), the rate meter, and the log tail."""

from __future__ import annotations

import logging
from decimal import Decimal

from userstream.events import BalanceUpdate, Exchange, Fill, OrderStatus, OrderType, OrderUpdate, Side
from userstream.gateway.dashboard import AccountPanel, DashboardSnapshot, LogTail, RateMeter, render

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

FRAME = """\
userstream demo  2023-11-23 01:39:08 UTC  10.2 events/s
HTTP http://127.0.0.1:8080  sink sqlite:events.db ok, 0 pending

ACCOUNT           EXCHANGE     STATE           EVENTS    EV/S  RECONNECTS  RESYNCS  LAST EVENT
demo-bitmusa      bitmusa      live               120    10.2           1        2  0.0s ago
demo-coinlocally  coinlocally  failed               0     0.0           0        0  -
  demo-coinlocally: Coinlocally refused the 'token' header (HTTP 401)

BALANCES          ASSET                     FREE                LOCKED                 TOTAL
demo-bitmusa      BTC                     0.9126                0.0431                0.9557
                  USDT           107582.59299787              0.000000       107582.59299787

OPEN ORDERS (2)   ID          SYMBOL     SIDE          PRICE      AMOUNT      FILLED  STATUS
demo-bitmusa      1000008     ETH/USDT   sell        3472.48       0.756       0.716  TRADING
demo-bitmusa      1000009     ETH/USDT   sell         market           2           0  TRADING

RECENT FILLS  ACCOUNT           SYMBOL     SIDE       AMOUNT   PRICE
01:39:09.500  demo-bitmusa      ETH/USDT   sell          0.1 @ 3472.48       fee 0.0001
01:39:08.500  demo-bitmusa      ETH/USDT   sell        0.056 @ 3472.48         (derived)

LOG
  01:39:07 info    bitmusa/demo-bitmusa connected connection=2

Ctrl-C to stop"""


def test_render_is_the_exact_frame_of_a_snapshot() -> None:
    assert render(SNAPSHOT, width=100, height=40) == FRAME


def test_render_fits_a_small_terminal() -> None:
    frame = render(SNAPSHOT, width=40, height=12).splitlines()
    assert frame == [
        "userstream demo  2023-11-23 01:39:08 UT\u2026",
        "HTTP http://127.0.0.1:8080  sink sqlite\u2026",
        "",
        "ACCOUNT           EXCHANGE     STATE   \u2026",
        "demo-bitmusa      bitmusa      live    \u2026",
        "demo-coinlocally  coinlocally  failed  \u2026",
        "  demo-coinlocally: Coinlocally refused\u2026",
        "",
        "BALANCES          ASSET                \u2026",
        "demo-bitmusa      BTC                  \u2026",
        "                  USDT           107582\u2026",  # cut lines say so: no half number passes for whole
        "Ctrl-C to stop",
    ]


def test_many_orders_and_fills_are_cut_with_a_count() -> None:
    panel = SNAPSHOT.accounts[0]
    busy = AccountPanel(
        name=panel.name,
        exchange=panel.exchange,
        state=panel.state,
        events=panel.events,
        events_per_second=panel.events_per_second,
        reconnects=panel.reconnects,
        resyncs=panel.resyncs,
        seconds_since_last_event=panel.seconds_since_last_event,
        open_orders=tuple(order(str(n), "1", "1", "0") for n in range(10)),
        recent_fills=tuple(fill(n, "1", None, derived=True) for n in range(10)),
    )
    snapshot = DashboardSnapshot(title="t", now_ms=T, accounts=(busy,))
    lines = render(snapshot, width=100, height=20).splitlines()
    assert len(lines) == 20
    assert [line for line in lines if "more" in line] == [
        "  ... and 7 more",
        "  ... and 7 more",
    ]  # 3 rows each
    assert lines[-1] == "Ctrl-C to stop"


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
        "ACCOUNT           EXCHANGE     STATE           EVENTS    EV/S  RECONNECTS  RESYNCS  LAST EVENT",
        "demo-bitmusa      bitmusa      live               120    10.2           1        2  0.0s ago",
        f"  sink redis:redis://***@cache:6379/0: {error}",
    ]
