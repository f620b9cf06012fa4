"""Shared fixtures of the client tests: the real emulator (`running_server`) and what a test needs around it.

The client under test talks to `userstream serve`'s app on 127.0.0.1 with shortened timings; nothing of our
own is mocked. Test modules cannot import each other (pytest's importlib mode), so the helpers come as
fixtures: `lab` starts a server (`async with lab(listen_key_ttl=0.5) as env:`) and yields an `Env` that
knows the server's URLs, the accounts' credentials, how to build the events it ingests and the events the
client must deliver for them, and what the server saw (its access log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from userstream.client import State, StatusEvent, UserStream
from userstream.events import BalanceUpdate, Event, Exchange, OrderStatus, OrderType, OrderUpdate, Side
from userstream.server import Account, ServerConfig, ServerHandle, running_server
from userstream.server.variants import VARIANTS

ALICE = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_token="alice-coinlocally-token-SECRET",
)
BOB = Account(
    name="bob",
    uid=24005175,
    bitmusa_api_key="bob-bitmusa-api-SECRET",
    bitmusa_auth_key="bob-bitmusa-auth-SECRET",
    coinlocally_api_key="bob-coinlocally-api-SECRET",
    coinlocally_token="bob-coinlocally-token-SECRET",
)
SECRETS = tuple(value for account in (ALICE, BOB) for value in account.credentials().values())
ADMIN_TOKEN = "test-admin-token-SECRET"
COINLOCALLY_PATH = "/spotws_user/userData/ws"
LISTEN_KEY_PATH = "/spot/userDataStream"
WAIT = 10.0  # the bound on every wait for something that must happen; never reached when all is well
BASE_TIME = 1_700_703_548_000

# Timings for tests that are not about timing: quick to recover, slow to declare anything dead, so a
# loaded CI machine cannot cause a spurious reconnect in the middle of an exact-delivery assertion.
CALM: dict[str, Any] = {
    "ping_interval": 1.0,
    "idle_timeout": 5.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "sub_timeout": 5.0,
    "close_timeout": 2.0,
    "request_timeout": 5.0,
    "rotate_after": None,
    # Resync after a reconnect adds snapshot events and statuses; tests/client/test_resync.py turns it on.
    "resync": False,
}


def server_config(**overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "accounts": (ALICE, BOB),
        "port": 0,
        "admin_token": ADMIN_TOKEN,
        "close_timeout": 2.0,
        # Tests reconnect far more often than a bot; the documented limits are the server tests' subject.
        "rate_limit_per_second": 10_000,
        "rate_limit_per_minute": 1_000_000,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


class Recorder:
    """An `on_status` callback that keeps every status event and lets a test wait for one."""

    def __init__(self) -> None:
        self.statuses: list[StatusEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, status: StatusEvent) -> None:
        self.statuses.append(status)
        self._changed.set()

    def states(self) -> list[str]:
        return [status.state.value for status in self.statuses]

    def of(self, state: State) -> list[StatusEvent]:
        return [status for status in self.statuses if status.state is state]

    async def wait_for(self, state: State, count: int = 1) -> StatusEvent:
        """The `count`-th status event in `state` (waiting for it, bounded by WAIT)."""
        async with asyncio.timeout(WAIT):
            while len(self.of(state)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(state)[count - 1]


class AccessLog(logging.Handler):
    """The server's access log, as (method, path, status) per request: what the server really saw."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.requests: list[tuple[str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "userstream_fields", None)
        if isinstance(fields, dict) and "method" in fields:
            self.requests.append((fields["method"], fields["path"], fields["status"]))

    def count(self, method: str, path_prefix: str, status: int | None = None) -> int:
        return sum(
            1
            for m, path, code in self.requests
            if m == method and path.startswith(path_prefix) and (status is None or code == status)
        )


class Env:
    """A running server and what a client test needs around it."""

    alice = ALICE
    bob = BOB
    secrets = SECRETS

    def __init__(self, server: ServerHandle, access: AccessLog) -> None:
        self.server = server
        self.access = access

    # --- client arguments -------------------------------------------------------------------------

    def options(self, exchange: str, account: Account = ALICE, **overrides: Any) -> dict[str, Any]:
        """`connect()` keyword arguments for `account` on this server, CALM timings, `overrides` on top."""
        settings: dict[str, Any] = {"account": account.name, **CALM}
        if exchange == "bitmusa":
            settings.update(
                api_key=account.bitmusa_api_key,
                auth_key=account.bitmusa_auth_key,
                rest_url=self.server.base_url,
                ws_url=self.server.ws_url,
            )
        else:
            settings.update(token=account.coinlocally_token, ws_url=self.coinlocally_url)
        settings.update(overrides)
        return settings

    @property
    def coinlocally_url(self) -> str:
        return self.server.ws_url + COINLOCALLY_PATH

    async def until_streaming(self, count: int = 1, account: Account = ALICE) -> None:
        """Until `count` of the account's connections receive events on the server."""
        async with asyncio.timeout(WAIT):
            await self.server.wait_for_streams(account.name, count)

    # --- events -------------------------------------------------------------------------------------

    @staticmethod
    def balance(n: int, asset: str = "USDT") -> dict[str, Any]:
        """The n-th event of a numbered sequence, in the ingest form."""
        return {
            "kind": "balance",
            "asset": asset,
            "free": f"{n}.5",
            "locked": "0.25",
            "timestamp": BASE_TIME + n,
        }

    @staticmethod
    def order(n: int) -> dict[str, Any]:
        return {
            "kind": "order",
            "id": f"C{n}",
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "status": "open",
            "price": "13000",
            "amount": "1",
            "filled": "0",
            "cost": "0",
            "created_at": BASE_TIME,
            "timestamp": BASE_TIME + n,
        }

    @staticmethod
    def expected_balance(n: int, exchange: str, account: str = "alice", asset: str = "USDT") -> BalanceUpdate:
        return BalanceUpdate(
            exchange=Exchange(exchange),
            account=account,
            timestamp=BASE_TIME + n,
            asset=asset,
            free=Decimal(f"{n}.5"),
            locked=Decimal("0.25"),
        )

    @staticmethod
    def expected_order(n: int, exchange: str, account: str = "alice") -> OrderUpdate:
        coinlocally = exchange == "coinlocally"
        return OrderUpdate(
            exchange=Exchange(exchange),
            account=account,
            timestamp=BASE_TIME + n,
            id=f"C{n}",
            symbol="BTC/USDT",
            raw_symbol="BTCUSDT" if coinlocally else "BTC/USDT",
            side=Side.BUY,
            type=OrderType.LIMIT,
            raw_type="LIMIT" if coinlocally else "LIMIT_PRICE",
            status=OrderStatus.OPEN,
            raw_status="NEW" if coinlocally else "TRADING",
            price=Decimal("13000"),
            amount=Decimal("1"),
            filled=Decimal("0"),
            remaining=Decimal("1"),
            cost=Decimal("0"),
            last_fill_amount=Decimal("0") if coinlocally else None,
            last_fill_price=Decimal("0") if coinlocally else None,
            fee=Decimal("0") if coinlocally else None,
            created_at=BASE_TIME,
        )

    async def ingest(self, events: list[dict[str, Any]], account: Account = ALICE) -> None:
        await self.server.ingest(account.name, events)

    # --- reading ------------------------------------------------------------------------------------

    @staticmethod
    async def take(stream: UserStream, count: int) -> list[Event]:
        """Exactly the next `count` events (bounded by WAIT)."""
        async with asyncio.timeout(WAIT):
            return [await anext(stream) for _ in range(count)]

    @staticmethod
    async def until(condition: Callable[[], bool]) -> None:
        """Poll a condition on the client's counters until it holds (bounded by WAIT)."""
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 - plain counters have no change signal to await
                await asyncio.sleep(0.01)


@pytest.fixture
def access_log() -> AsyncIterator[AccessLog] | Any:
    handler = AccessLog()
    logger = logging.getLogger("aiohttp.access")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def lab(access_log: AccessLog) -> Callable[..., AbstractAsyncContextManager[Env]]:
    """`async with lab(listen_key_ttl=0.5) as env`: a server with some settings changed."""

    @asynccontextmanager
    async def starter(**overrides: Any) -> AsyncIterator[Env]:
        async with running_server(server_config(**overrides)) as handle:
            yield Env(handle, access_log)

    return starter


#: Test-friendly values for the variants that take one (a server ping every 0.2 s is seen within a test).
_VARIANT_SPECS = {"coinlocally-server-ping": "coinlocally-server-ping=0.2"}

#: Every variant set the client's key scenarios run against: ours (no variant), then each variant alone.
VARIANT_SETS: tuple[tuple[str, ...], ...] = ((), *((_VARIANT_SPECS.get(name, name),) for name in VARIANTS))


def variant_exchanges(variant_set: tuple[str, ...]) -> tuple[str, ...]:
    """The exchanges a variant set concerns: both for ours and the numbers variants."""
    concerned = {VARIANTS[spec.partition("=")[0]].exchange for spec in variant_set}
    if not concerned or None in concerned:
        return ("bitmusa", "coinlocally")
    return tuple(sorted(exchange.value for exchange in concerned if exchange is not None))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "variant_scenario(name, exchanges=...): run the test against serve in every variant set (ours and "
        "each variant alone) on each exchange the set concerns, with `variant_lab` and `exchange`",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a `variant_scenario` test with (variant set, exchange). The module's `KNOWN_GAPS`
    ({(scenario, variant name or "ours", exchange): reason}) marks the combinations the client does not
    handle yet as xfail(strict=True): they must fail, so a fix is noticed and the mark removed."""
    marker = metafunc.definition.get_closest_marker("variant_scenario")
    if marker is None:
        return
    scenario: str = marker.args[0]
    allowed: tuple[str, ...] = marker.kwargs.get("exchanges", ("bitmusa", "coinlocally"))
    gaps: dict[tuple[str, str, str], str] = getattr(metafunc.module, "KNOWN_GAPS", {})
    params = []
    for variant_set in VARIANT_SETS:
        label = "+".join(variant_set) or "ours"
        for exchange in variant_exchanges(variant_set):
            if exchange not in allowed:
                continue
            reason = gaps.get((scenario, label.partition("=")[0], exchange))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(variant_set, exchange, id=f"{label}-{exchange}", marks=marks))
    metafunc.parametrize(("variant_lab", "exchange"), params, indirect=["variant_lab"])


@pytest.fixture
def variant_lab(
    request: pytest.FixtureRequest, lab: Callable[..., AbstractAsyncContextManager[Env]]
) -> Callable[..., AbstractAsyncContextManager[Env]]:
    """`async with variant_lab(**overrides) as env`: `lab` running serve with a variant set. Parametrize it
    indirectly with the set (a tuple of `NAME[=VALUE]`; none: ours), e.g.
    `@pytest.mark.parametrize("variant_lab", [(), ("numbers-as-strings",)], indirect=True)`."""
    variant_set: tuple[str, ...] = getattr(request, "param", ())

    def starter(**overrides: Any) -> AbstractAsyncContextManager[Env]:
        return lab(variants=variant_set, **overrides)

    return starter


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
