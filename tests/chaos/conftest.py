"""Shared pieces of the chaos tests: accounts on both exchanges, a gateway config for them, the pictures.

Nothing of ours is mocked: `userstream serve`'s app runs in-process (`running_server`) with a simulated
market, and the gateway (in-process, or `userstream gateway` as a subprocess) streams every account on both
exchanges into a SQLite sink. Test modules cannot import each other (pytest's importlib mode), so the
helpers come as the `chaos` fixture. `USERSTREAM_CHAOS_SECONDS` and `USERSTREAM_CHAOS_SEED` set the length
and the seed of a run (`make soak SECONDS=600`); the seed is random unless given, and always printed.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from support.processes import to_toml
from userstream.server import Account, ServerConfig, ServerHandle
from userstream.server.simulator import INSTRUMENTS, Ledger
from userstream.state import AccountSnapshot

OWNERS = ("alice", "bob", "carol")
EXCHANGES = ("bitmusa", "coinlocally")
SYMBOLS = [instrument.symbol for instrument in INSTRUMENTS]

# What a bot would use, shortened so that a minute holds many keepalives, heartbeats and rotations.
TIMINGS: dict[str, Any] = {
    "ping_interval": 0.25,
    "idle_timeout": 1.0,
    "rotate_after": 2.0,
    "overlap_timeout": 1.0,  # must exceed the longest frame delay a fault injects (see docs/reliability.md)
    "backoff_base": 0.05,
    "backoff_cap": 0.5,
    "stable_after": 1.0,
    "sub_timeout": 2.0,
    "close_timeout": 1.0,
    "request_timeout": 2.0,
    "keepalive_interval": 1.0,
}

Picture = tuple[dict[str, tuple[Decimal, Decimal]], dict[str, tuple[Any, ...]]]


def make_account(name: str, uid: int) -> Account:
    return Account(
        name=name,
        uid=uid,
        bitmusa_api_key=f"{name}-bitmusa-api-SECRET",
        bitmusa_auth_key=f"{name}-bitmusa-auth-SECRET",
        coinlocally_api_key=f"{name}-coinlocally-api-SECRET",
        coinlocally_secret_key=f"{name}-coinlocally-secret-SECRET",
    )


ACCOUNTS = tuple(make_account(name, 24005174 + index) for index, name in enumerate(OWNERS))


def environment() -> dict[str, str]:
    environ: dict[str, str] = {}
    for account in ACCOUNTS:
        prefix = account.name.upper()
        environ[f"{prefix}_BITMUSA_API_KEY"] = account.bitmusa_api_key or ""
        environ[f"{prefix}_BITMUSA_AUTH_KEY"] = account.bitmusa_auth_key or ""
        environ[f"{prefix}_COINLOCALLY_API_KEY"] = account.coinlocally_api_key or ""
        environ[f"{prefix}_COINLOCALLY_SECRET_KEY"] = account.coinlocally_secret_key or ""
    return environ


def server_config(seed: int, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "port": 0,
        "admin_token": "chaos-admin-token-SECRET",
        "simulate_rate": 150.0,
        "seed": seed,
        "listen_key_ttl": 4.0,
        "heartbeat_timeout": 1.5,
        "close_timeout": 1.0,
        "ledger": True,  # the runs are judged against serve's ledger of what was sent
        "ledger_events": 10_000_000,
        # A chaos run reconnects and resyncs far more than a bot; the documented limits are not its subject.
        "rate_limit_per_second": 100_000,
        "rate_limit_per_minute": 10_000_000,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


def gateway_document(server: ServerHandle, database: Path, **defaults: Any) -> dict[str, Any]:
    """A gateway config: every account on both exchanges (Coinlocally with the api key and its secret key,
    so that it can resync), resync on, the chaos timings, one SQLite sink."""
    accounts: list[dict[str, Any]] = []
    for owner in OWNERS:
        prefix = owner.upper()
        accounts.append(
            {
                "name": f"{owner}-bitmusa",
                "exchange": "bitmusa",
                "api_key_env": f"{prefix}_BITMUSA_API_KEY",
                "auth_key_env": f"{prefix}_BITMUSA_AUTH_KEY",
                "rest_url": server.base_url,
                "ws_url": server.ws_url,
            }
        )
        accounts.append(
            {
                "name": f"{owner}-coinlocally",
                "exchange": "coinlocally",
                "api_key_env": f"{prefix}_COINLOCALLY_API_KEY",
                "secret_key_env": f"{prefix}_COINLOCALLY_SECRET_KEY",
                "ws_url": server.ws_url + "/spotws_user/userData/ws",
                "snapshot_rest_url": server.base_url,
            }
        )
    return {
        "gateway": {"http_port": 0},
        "defaults": {**TIMINGS, "resync": True, "snapshot_symbols": SYMBOLS, **defaults},
        "accounts": accounts,
        "sinks": [{"type": "sqlite", "path": str(database)}],
    }


def owner_of(stream: str) -> str:
    """`alice-bitmusa` -> `alice`: the emulator's account behind a gateway account."""
    return stream.rsplit("-", 1)[0]


def truth_picture(ledger: Ledger) -> Picture:
    """The simulator's true state: balances (free, locked) by asset, open orders by id."""
    orders = {order_id: _order_values(order) for order_id, order in ledger.open_orders.items()}
    return dict(ledger.balances), orders


def state_picture(snapshot: AccountSnapshot) -> Picture:
    """An `AccountState`'s picture in the terms of `truth_picture` (exact decimal values)."""
    balances = {asset: (balance.free, balance.locked) for asset, balance in snapshot.balances.items()}
    orders = {order_id: _order_values(order) for order_id, order in snapshot.open_orders.items()}
    return balances, orders


def _order_values(order: Any) -> tuple[Any, ...]:
    status = None if order.status is None else order.status.value
    return (order.symbol, order.side.value, status, order.price, order.amount, order.filled, order.remaining)


def table_picture(rows_balances: list[tuple[str, str, str]], rows_orders: list[tuple[Any, ...]]) -> Picture:
    """The SQLite sink's `balances` and `orders` rows of one account in the terms of `truth_picture`."""
    balances = {asset: (Decimal(free), Decimal(locked)) for asset, free, locked in rows_balances}
    orders = {
        order_id: (symbol, side, status, Decimal(price), Decimal(amount), Decimal(filled), Decimal(remaining))
        for order_id, symbol, side, status, price, amount, filled, remaining in rows_orders
    }
    return balances, orders


async def until(condition: Callable[[], bool], within: float) -> None:
    """Poll `condition` until it holds; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - counters and pictures have no change signal to await
            await asyncio.sleep(0.02)


class Chaos:
    """The chaos fixture: the run's parameters and the helpers above."""

    owners = OWNERS
    exchanges = EXCHANGES
    accounts = ACCOUNTS
    secrets = tuple(value for account in ACCOUNTS for value in account.credentials().values())
    server_config = staticmethod(server_config)
    gateway_document = staticmethod(gateway_document)
    environment = staticmethod(environment)
    owner_of = staticmethod(owner_of)
    truth_picture = staticmethod(truth_picture)
    state_picture = staticmethod(state_picture)
    table_picture = staticmethod(table_picture)
    to_toml = staticmethod(to_toml)
    until = staticmethod(until)

    def __init__(self, seconds: float, seed: int) -> None:
        self.seconds = seconds
        self.seed = seed


@pytest.fixture
def chaos() -> Chaos:
    seconds = float(os.environ.get("USERSTREAM_CHAOS_SECONDS", "35"))
    given = os.environ.get("USERSTREAM_CHAOS_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**31)
    print(f"chaos seed {seed}; replay with USERSTREAM_CHAOS_SEED={seed} USERSTREAM_CHAOS_SECONDS={seconds:g}")
    return Chaos(seconds, seed)
