"""One picture per account, and one snapshot for every reader.

An account's picture is its stream's (`UserStream.picture`), with the fills the gateway derives folded in:
the gateway keeps no second `AccountState`. `Gateway.snapshot()` is an immutable copy of everything
/healthz, /accounts, /metrics and the dashboard show, and each of them shows the values of one.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from userstream.events import Exchange
from userstream.gateway import ConnectionState
from userstream.gateway.dashboard import snapshot_of
from userstream.gateway.metrics import render_metrics
from userstream.protocol.registry import spec

BASE_TIME = 1_700_703_548_000


def alice_events() -> list[dict[str, Any]]:
    """USDT is locked for a buy of 1 BTC at 13000; 0.4 of it fills (fee 0.0004 BTC): one fill."""
    order = {
        "kind": "order",
        "id": "A1",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "price": "13000",
        "amount": "1",
        "created_at": BASE_TIME,
    }
    return [
        {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "13000", "timestamp": BASE_TIME + 1},
        {**order, "status": "open", "filled": "0", "cost": "0", "timestamp": BASE_TIME + 2},
        {
            **order,
            "status": "open",
            "filled": "0.4",
            "cost": "5200",
            "last_fill_amount": "0.4",
            "last_fill_price": "13000",
            "fee": "0.0004",
            "timestamp": BASE_TIME + 3,
        },
        {"kind": "balance", "asset": "BTC", "free": "0.3996", "locked": "0", "timestamp": BASE_TIME + 3},
        {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "7800", "timestamp": BASE_TIME + 3},
    ]


async def test_each_accounts_picture_is_its_streams_with_the_gateways_fills_in_it(lab: Any) -> None:
    async with lab() as env, env.gateway(env.config(accounts=("alice",))) as gateway:
        await env.ingest("alice", alice_events())
        await env.until(lambda: all(sum(a.events.values()) == 6 for a in gateway.accounts))
        for runtime in gateway.accounts:
            stream = runtime.stream
            assert stream is not None
            assert runtime.state is stream.picture
            held = {asset: (b.free, b.locked) for asset, b in stream.balances().items()}
            assert held == {
                "BTC": (Decimal("0.3996"), Decimal(0)),
                "USDT": (Decimal("1000.5"), Decimal(7800)),
            }
            assert {order_id: order.filled for order_id, order in stream.open_orders().items()} == {
                "A1": Decimal("0.4")
            }
            picture = runtime.state.snapshot()
            assert [(fill.order_id, fill.amount) for fill in picture.recent_fills] == [("A1", Decimal("0.4"))]
            assert (picture.fill_count, runtime.events["fill"]) == (1, 1)


async def test_one_snapshot_is_what_healthz_metrics_and_the_dashboard_show(lab: Any) -> None:
    async with lab() as env:
        config = env.config(accounts=("alice",), exchanges=("bitmusa",))
        async with env.gateway(config) as gateway:
            await env.ingest("alice", alice_events())
            await env.until(lambda: sum(gateway.accounts[0].events.values()) == 6)
            snapshot = gateway.snapshot()
            with pytest.raises(dataclasses.FrozenInstanceError):
                snapshot.stopping = True  # type: ignore[misc]
            (account,) = snapshot.accounts
            assert (account.name, account.connection, account.healthy, dict(account.events)) == (
                "alice-bitmusa",
                ConnectionState.LIVE,
                True,
                {"balance": 3, "order": 2, "fill": 1},
            )
            assert account.picture == gateway.accounts[0].state.snapshot()
            assert (snapshot.healthy, snapshot.lost_events, snapshot.http_url) == (True, 0, gateway.http_url)

            lines = render_metrics(snapshot).splitlines()
            assert (
                'userstream_gateway_events_total{account="alice-bitmusa",exchange="bitmusa",kind="fill"} 1'
                in lines
            )
            assert "userstream_gateway_healthy 1" in lines

            frame = snapshot_of(snapshot, title="t", rates={}, now_ms=0)
            assert [(panel.name, panel.state, panel.events) for panel in frame.accounts] == [
                ("alice-bitmusa", "live", 6)
            ]
            assert [balance.asset for balance in frame.accounts[0].balances] == ["BTC", "USDT"]
            assert frame.http_url == gateway.http_url

            status, health = await env.get(gateway, "/healthz")
            assert (status, health["status"], health["accounts"]["alice-bitmusa"]["state"]) == (
                200,
                "ok",
                "live",
            )
            status, summary = await env.get(gateway, "/accounts/alice-bitmusa")
            assert (status, summary["events"], summary["fills"], summary["balances"]) == (
                200,
                {"balance": 3, "order": 2, "fill": 1},
                1,
                2,
            )


def test_the_registry_says_when_a_connection_is_live_and_who_signs_snapshots() -> None:
    """What the gateway reads instead of branching on the exchange: Bitmusa is live at the handshake and
    snapshots with the stream's own credentials; Coinlocally is live at "sub success" and signs them."""
    assert [
        (e.value, spec(e).client.live_on_connect, spec(e).snapshot_needs_secret_key) for e in Exchange
    ] == [
        ("bitmusa", True, False),
        ("coinlocally", False, True),
    ]
