"""Shared fixtures of the operations tests: the real emulator on loopback and the commands as users run them.

`lab` starts `userstream serve`'s app (`running_server`) with one account; its `Lab` knows the flags and
environment each command needs, runs `python -m userstream ...` as a subprocess, and builds the events it
ingests together with the events a client must make of them on each exchange. Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from support.processes import finish, userstream
from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.server import Account, ServerConfig, ServerHandle, running_server

ALICE = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_token="alice-coinlocally-token-SECRET",
)
WRONG = "wrong-SECRET"
SECRETS = (*ALICE.credentials().values(), WRONG)
WAIT = 20.0  # the bound on every wait; never reached when all is well
BASE_TIME = 1_700_703_548_000
COINLOCALLY_PATH = "/spotws_user/userData/ws"


class Lab:
    """A running server, and how the operations commands reach it."""

    alice = ALICE
    secrets = SECRETS

    def __init__(self, server: ServerHandle) -> None:
        self.server = server

    def endpoints(self, exchange: str) -> list[str]:
        if exchange == "bitmusa":
            return ["--rest-url", self.server.base_url, "--ws-url", self.server.ws_url]
        return ["--ws-url", self.coinlocally_url]

    @property
    def coinlocally_url(self) -> str:
        return self.server.ws_url + COINLOCALLY_PATH

    @staticmethod
    def environment(exchange: str, **overrides: str) -> dict[str, str]:
        """The test's environment without USERSTREAM_* variables, plus the account's credentials."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
        if exchange == "bitmusa":
            env["USERSTREAM_BITMUSA_API_KEY"] = ALICE.bitmusa_api_key or ""
            env["USERSTREAM_BITMUSA_AUTH_KEY"] = ALICE.bitmusa_auth_key or ""
        else:
            env["USERSTREAM_COINLOCALLY_TOKEN"] = ALICE.coinlocally_token or ""
        env.update(overrides)
        return env

    @staticmethod
    async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        return await userstream(*args, env=env, stdin=asyncio.subprocess.DEVNULL)

    @staticmethod
    async def finish(process: asyncio.subprocess.Process) -> tuple[int, bytes, bytes]:
        stdout, stderr = await finish(process, WAIT)
        assert process.returncode is not None
        return process.returncode, stdout, stderr

    async def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
        process = await self.start(*args, env=env if env is not None else self.environment("coinlocally"))
        return await self.finish(process)

    async def until_streaming(self, exchange: str) -> None:
        async with asyncio.timeout(WAIT):
            await self.server.wait_for_streams(ALICE.name, 1, Exchange(exchange))

    @staticmethod
    async def until_lines(path: Path, count: int) -> list[bytes]:
        """The file's lines once it has `count` complete ones (polled: a file has no change signal)."""
        async with asyncio.timeout(WAIT):
            while True:
                data = await asyncio.to_thread(_contents, path)
                lines = data.split(b"\n")[:-1]
                if len(lines) >= count:
                    return lines
                await asyncio.sleep(0.01)

    def assert_no_secret(self, *blobs: bytes) -> None:
        key = self.server.active_listen_key(ALICE.name)
        for blob in blobs:
            for secret in (*SECRETS, *([key] if key else [])):
                assert secret.encode() not in blob

    # --- the known sequence -------------------------------------------------------------------------

    @staticmethod
    def sequence() -> list[dict[str, Any]]:
        """What the tests ingest: two balances of one moment, then an order opened, part filled, filled."""
        order = {
            "kind": "order",
            "id": "C1",
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "price": "13000",
            "amount": "1",
            "created_at": BASE_TIME,
        }
        return [
            {"kind": "balance", "asset": "USDT", "free": "1000.5", "locked": "0.25", "timestamp": BASE_TIME},
            {"kind": "balance", "asset": "BTC", "free": "1", "locked": "0", "timestamp": BASE_TIME},
            {**order, "status": "open", "filled": "0", "cost": "0", "timestamp": BASE_TIME + 1},
            {**order, "status": "open", "filled": "0.4", "cost": "5200", "timestamp": BASE_TIME + 2},
            {**order, "status": "closed", "filled": "1", "cost": "13000", "timestamp": BASE_TIME + 3},
        ]

    @staticmethod
    def expected(exchange: str) -> list[Event]:
        """The events a client makes of `sequence()` on `exchange`."""
        coinlocally = exchange == "coinlocally"
        where = {"exchange": Exchange(exchange), "account": ALICE.name}
        zero = Decimal("0") if coinlocally else None

        def order(n: int, status: OrderStatus, raw: tuple[str, str], filled: str, cost: str) -> OrderUpdate:
            return OrderUpdate(
                **where,
                timestamp=BASE_TIME + n,
                id="C1",
                symbol="BTC/USDT",
                raw_symbol="BTCUSDT" if coinlocally else "BTC/USDT",
                side=Side.BUY,
                type=OrderType.LIMIT,
                raw_type="LIMIT" if coinlocally else "LIMIT_PRICE",
                status=status,
                raw_status=raw[1] if coinlocally else raw[0],
                price=Decimal("13000"),
                amount=Decimal("1"),
                filled=Decimal(filled),
                remaining=Decimal("1") - Decimal(filled),
                cost=Decimal(cost),
                last_fill_amount=zero,
                last_fill_price=zero,
                fee=zero,
                created_at=BASE_TIME,
            )

        return [
            BalanceUpdate(
                **where, timestamp=BASE_TIME, asset="USDT", free=Decimal("1000.5"), locked=Decimal("0.25")
            ),
            BalanceUpdate(**where, timestamp=BASE_TIME, asset="BTC", free=Decimal("1"), locked=Decimal("0")),
            order(1, OrderStatus.OPEN, ("TRADING", "NEW"), "0", "0"),
            order(2, OrderStatus.OPEN, ("TRADING", "PART_FILLED"), "0.4", "5200"),
            order(3, OrderStatus.CLOSED, ("COMPLETED", "FILLED"), "1", "13000"),
        ]


def _contents(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def server_config(**overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "accounts": (ALICE,),
        "port": 0,
        "admin_token": "test-admin-token-SECRET",
        "close_timeout": 2.0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with running_server(server_config()) as server:
        yield Lab(server)
