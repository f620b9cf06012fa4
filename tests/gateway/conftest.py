"""Shared fixtures of the gateway tests: the real emulator, real client streams, a real gateway, and HTTP.

Nothing of our own is mocked. `lab` starts `userstream serve`'s app (`running_server`) with two accounts,
and yields a `Lab` that writes gateway configs for them (credentials named by environment variable, held
in a mapping handed to the gateway as its environment), starts gateways and waits until they stream,
ingests known events, and reads the HTTP API with aiohttp's client. Test modules cannot import each other
(pytest's importlib mode), so the helpers come as fixtures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from userstream.gateway import ConnectionState, Gateway, GatewayConfig, parse_config
from userstream.server import Account, ServerConfig, ServerHandle, running_server

ALICE = Account(
    name="alice",
    uid=24005174,
    bitmusa_api_key="alice-bitmusa-api-SECRET",
    bitmusa_auth_key="alice-bitmusa-auth-SECRET",
    coinlocally_api_key="alice-coinlocally-api-SECRET",
    coinlocally_token="alice-coinlocally-token-SECRET",
    coinlocally_secret_key="alice-coinlocally-secret-SECRET",
)
BOB = Account(
    name="bob",
    uid=24005175,
    bitmusa_api_key="bob-bitmusa-api-SECRET",
    bitmusa_auth_key="bob-bitmusa-auth-SECRET",
    coinlocally_api_key="bob-coinlocally-api-SECRET",
    coinlocally_token="bob-coinlocally-token-SECRET",
    coinlocally_secret_key="bob-coinlocally-secret-SECRET",
)
ACCOUNTS = {account.name: account for account in (ALICE, BOB)}
SECRETS = tuple(value for account in (ALICE, BOB) for value in account.credentials().values())
BASE_TIME = 1_700_703_548_000
WAIT = 10.0  # the bound on every wait for something that must happen; never reached when all is well
COINLOCALLY_PATH = "/spotws_user/userData/ws"

# Quick to recover, slow to declare anything dead, no rotation and no resync: exact flows stay exact.
CALM: dict[str, Any] = {
    "ping_interval": 1.0,
    "idle_timeout": 5.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "sub_timeout": 5.0,
    "close_timeout": 2.0,
    "request_timeout": 5.0,
    "rotate_after": 0,
    "resync": False,
}


def environment(accounts: Iterable[Account] = (ALICE, BOB)) -> dict[str, str]:
    """The variables a gateway config of `lab` names, with the accounts' credentials as values."""
    environ: dict[str, str] = {}
    for account in accounts:
        prefix = account.name.upper()
        environ[f"{prefix}_BITMUSA_API_KEY"] = account.bitmusa_api_key or ""
        environ[f"{prefix}_BITMUSA_AUTH_KEY"] = account.bitmusa_auth_key or ""
        environ[f"{prefix}_COINLOCALLY_TOKEN"] = account.coinlocally_token or ""
        environ[f"{prefix}_COINLOCALLY_API_KEY"] = account.coinlocally_api_key or ""
        environ[f"{prefix}_COINLOCALLY_SECRET_KEY"] = account.coinlocally_secret_key or ""
    return environ


def account_table(
    server: ServerHandle, account: str, exchange: str, *, signed: bool = False, **overrides: Any
) -> dict[str, Any]:
    """One [[accounts]] table: `account` of the emulator on `exchange`, named `<account>-<exchange>`.

    Coinlocally streams with the token, or with `signed` with the api key and its secret key (what a
    snapshot resync needs)."""
    prefix = account.upper()
    table: dict[str, Any] = {"name": f"{account}-{exchange}", "exchange": exchange}
    if exchange == "bitmusa":
        table.update(
            api_key_env=f"{prefix}_BITMUSA_API_KEY",
            auth_key_env=f"{prefix}_BITMUSA_AUTH_KEY",
            rest_url=server.base_url,
            ws_url=server.ws_url,
        )
    elif signed:
        table.update(
            api_key_env=f"{prefix}_COINLOCALLY_API_KEY",
            secret_key_env=f"{prefix}_COINLOCALLY_SECRET_KEY",
            ws_url=server.ws_url + COINLOCALLY_PATH,
            snapshot_rest_url=server.base_url,
        )
    else:
        table.update(token_env=f"{prefix}_COINLOCALLY_TOKEN", ws_url=server.ws_url + COINLOCALLY_PATH)
    table.update(overrides)
    return table


class Lab:
    """A running emulator and what a gateway test needs around it."""

    alice = ALICE
    bob = BOB
    secrets = SECRETS
    base_time = BASE_TIME

    def __init__(self, server: ServerHandle, tmp_path: Path, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.http = http
        self.environ = environment()

    def document(
        self,
        accounts: Sequence[str] = ("alice", "bob"),
        exchanges: Sequence[str] = ("bitmusa", "coinlocally"),
        sinks: Sequence[dict[str, Any]] = (),
        *,
        resync: bool = False,
        **service: Any,
    ) -> dict[str, Any]:
        """A gateway config document (what tomllib would give) for those accounts on those exchanges.

        With `resync`, snapshots are taken at the start and after every unplanned reconnect (Coinlocally
        then streams with the api key, whose secret key signs the snapshot requests)."""
        return {
            "gateway": {"http_port": 0, **service},
            "defaults": {**CALM, "resync": resync},
            "accounts": [
                account_table(self.server, account, exchange, signed=resync)
                for account in accounts
                for exchange in exchanges
            ],
            "sinks": list(sinks),
        }

    def config(self, **kwargs: Any) -> GatewayConfig:
        return parse_config(self.document(**kwargs), source="test")

    @asynccontextmanager
    async def gateway(self, config: GatewayConfig | None = None) -> AsyncIterator[Gateway]:
        """A started gateway, once every account of it streams (the emulator holds its connections)."""
        gateway = Gateway(config or self.config(), environ=self.environ)
        async with gateway:
            await self.until_streaming(gateway)
            yield gateway

    async def until_streaming(self, gateway: Gateway) -> None:
        wanted: dict[str, int] = {}
        for runtime in gateway.accounts:
            owner = runtime.name.rsplit("-", 1)[0]
            wanted[owner] = wanted.get(owner, 0) + 1
        async with asyncio.timeout(WAIT):
            for owner, count in wanted.items():
                await self.server.wait_for_streams(owner, count)
        await self.until(lambda: all(a.connection is ConnectionState.LIVE for a in gateway.accounts))

    async def ingest(self, account: str, events: list[dict[str, Any]]) -> None:
        await self.server.ingest(account, events)

    @staticmethod
    async def until(condition: Callable[[], bool]) -> None:
        """Poll a condition on counters until it holds (bounded by WAIT)."""
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 - plain counters have no change signal to await
                await asyncio.sleep(0.01)

    async def get(self, gateway: Gateway, path: str) -> tuple[int, Any]:
        """GET `path` from the gateway's API: (status, decoded JSON)."""
        async with self.http.get(f"{gateway.http_url}{path}") as response:
            return response.status, await response.json()

    async def text(self, gateway: Gateway, path: str) -> tuple[int, str]:
        async with self.http.get(f"{gateway.http_url}{path}") as response:
            return response.status, await response.text()


def server_config(accounts: Sequence[Account] = (ALICE, BOB), **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "accounts": tuple(accounts),
        "port": 0,
        "admin_token": "test-admin-token-SECRET",
        "close_timeout": 2.0,
        # Tests reconnect far more often than a bot; the documented limits are the server tests' subject.
        "rate_limit_per_second": 10_000,
        "rate_limit_per_minute": 1_000_000,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


@pytest.fixture
def lab(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[Lab]]:
    """`async with lab() as env`: a running emulator (two accounts) and an HTTP client session."""

    @asynccontextmanager
    async def starter(**overrides: Any) -> AsyncIterator[Lab]:
        async with running_server(server_config(**overrides)) as handle, aiohttp.ClientSession() as http:
            yield Lab(handle, tmp_path, http)

    return starter


@pytest.fixture
def all_logs() -> Any:
    """Every log record of the process at DEBUG, formatted, for the secret checks."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record) + repr(getattr(record, "userstream_fields", "")))

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)
    root.setLevel(previous)
