"""Section 5: reconnect time, from a dropped connection to the first event on the new one, per exchange.

This module owns the measurement. `userstream serve` runs in its own process (serve_child.py); a userstream
stream runs in this process. Each run: the server aborts the account's connection at the TCP level (no
close frame: the abrupt kind of drop) and records the monotonic time just before; as soon as a new stream of
the account is live (Bitmusa: connected with the still-valid listenKey; Coinlocally: subscribed) it
publishes one event; the stream's consumer records the time that event reaches it. The time between the
two is the reconnect time as a user sees it.

Two settings: the backoff's random draw pinned to 0 (`rng=lambda: 0.0`), which measures the client's own
work (noticing the drop, reconnecting, handshake, sub); and the defaults (full jitter: a delay drawn
uniformly from [0, 1 s] before the first attempt), which is what a user sees, dominated by that draw.
`stable_after=0` makes every run a first attempt (the bench's connections live less than the default 60 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import serve_child
from common import Child, median
from fanout import order_event
from userstream import client
from userstream.events import Source


async def _stream_runs(serve: Child, exchange: str, runs: int, *, pinned: bool, first_id: int) -> list[float]:
    ready = serve.ready  # type: ignore[attr-defined]
    account = 0
    secrets = serve_child.credentials(account)
    options: dict[str, Any] = {"stable_after": 0.0, "account": serve_child.account_name(account)}
    if pinned:
        options["rng"] = lambda: 0.0
    if exchange == "bitmusa":
        stream = client.connect(
            "bitmusa",
            api_key=secrets["bitmusa_api_key"],
            auth_key=secrets["bitmusa_auth_key"],
            rest_url=ready["base_url"],
            ws_url=ready["ws_url"],
            **options,
        )
    else:
        stream = client.connect(
            "coinlocally",
            token=secrets["coinlocally_token"],
            ws_url=f"{ready['ws_url']}/spotws_user/userData/ws",
            **options,
        )
    arrivals: dict[str, int] = {}
    arrived = asyncio.Event()

    async def consume() -> None:
        async for event in stream:
            # Stream events only: a resync after the reconnect may correct older orders (source=snapshot).
            if event.source is Source.STREAM:
                arrivals[getattr(event, "id", "")] = time.monotonic_ns()
                arrived.set()

    times: list[float] = []
    async with stream:
        consumer = asyncio.create_task(consume())
        await serve.acall("wait_streams", serve_child.account_name(account), 1)
        for run in range(runs + 1):  # the first run warms up
            event = order_event(first_id + run)  # ids never repeat across calls: "L<sequence>"
            order_id = event["id"]
            arrived.clear()
            dropped_at = await serve.acall(
                "drop_and_publish", serve_child.account_name(account), event, exchange
            )
            async with asyncio.timeout(30):
                while order_id not in arrivals:
                    await arrived.wait()
                    arrived.clear()
            if run:
                times.append((arrivals[order_id] - dropped_at) / 1e6)
        consumer.cancel()
    return times


def run(runs: int) -> dict[str, Any]:
    from common import child  # noqa: PLC0415

    out: dict[str, Any] = {"runs": runs, "exchanges": {}}
    with child(serve_child.main, accounts=1) as serve:
        for number, exchange in enumerate(("bitmusa", "coinlocally")):
            first = 2000 * number
            pinned = asyncio.run(_stream_runs(serve, exchange, runs, pinned=True, first_id=first))
            jitter = asyncio.run(_stream_runs(serve, exchange, runs, pinned=False, first_id=first + 1000))
            out["exchanges"][exchange] = {
                "backoff_draw_0_ms": round(median(pinned), 2),
                "runs_backoff_draw_0_ms": [round(t, 2) for t in pinned],
                "default_backoff_ms": round(median(jitter), 1),
                "runs_default_backoff_ms": [round(t, 1) for t in jitter],
            }
    return out
