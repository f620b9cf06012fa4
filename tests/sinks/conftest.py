"""Shared fixtures of the sink tests: event builders and a real redis-server on a free loopback port.

Test modules cannot import each other (pytest's importlib mode), so helpers come as fixtures. `redis_server`
starts `redis-server` in a temporary directory with persistence off, waits until it answers PING, and stops
it at the end; it FAILS (never skips) when redis-server is missing, because a skipped Redis test is a sink
nobody tested.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from userstream.events import BalanceUpdate, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.money import exact_sub

BASE_TIME = 1_700_703_548_000
WAIT = 10.0  # the bound on waiting for redis-server to come up or go down; never reached when all is well

BalanceFactory = Callable[..., BalanceUpdate]
OrderFactory = Callable[..., OrderUpdate]


@pytest.fixture
def balance() -> BalanceFactory:
    def make(
        asset: str = "USDT",
        free: str = "100.5",
        locked: str = "0",
        *,
        timestamp: int = BASE_TIME,
        account: str = "alice",
        exchange: Exchange = Exchange.BITMUSA,
    ) -> BalanceUpdate:
        return BalanceUpdate(
            exchange=exchange,
            account=account,
            timestamp=timestamp,
            asset=asset,
            free=Decimal(free),
            locked=Decimal(locked),
        )

    return make


@pytest.fixture
def order() -> OrderFactory:
    def make(
        order_id: str = "1001",
        status: OrderStatus | None = OrderStatus.OPEN,
        filled: str = "0",
        *,
        amount: str = "2",
        price: str = "0.5",
        timestamp: int = BASE_TIME,
        account: str = "alice",
        raw_status: str | None = None,
    ) -> OrderUpdate:
        return OrderUpdate(
            exchange=Exchange.COINLOCALLY,
            account=account,
            timestamp=timestamp,
            id=order_id,
            symbol="XRP/USDT",
            raw_symbol="XRPUSDT",
            side=Side.BUY,
            type=OrderType.LIMIT,
            raw_type="LIMIT",
            status=status,
            raw_status=raw_status if raw_status is not None else (status.value.upper() if status else "?"),
            price=Decimal(price),
            amount=Decimal(amount),
            filled=Decimal(filled),
            remaining=exact_sub(Decimal(amount), Decimal(filled)),
            cost=None,
            created_at=BASE_TIME - 1000,
        )

    return make


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, persistence off, that a test may stop and restart."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self.starts += 1
        log = (self.workdir / f"redis-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + WAIT
        while not self._answers_ping():
            if self.process.poll() is not None:
                output = (self.workdir / f"redis-{self.starts}.log").read_text(errors="replace")
                self.process = None
                pytest.fail(f"redis-server exited at start-up:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING on port {self.port} within {WAIT}s")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WAIT)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not on PATH: the redis sink is tested against a real server. "
            "Run scripts/ensure-redis.sh (make test does) to install it."
        )
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
