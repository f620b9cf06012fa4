"""The emulator's REST snapshot endpoints, held to their contract with aiohttp as the client: exact bodies
after known events, Bitmusa's listenKey authentication, Coinlocally's signature and timestamp window, errors
in their documented shapes, rate limits, the accounts file's secret key, and a truth that follows the
simulator."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from userstream.errors import ConfigurationError
from userstream.server import Account, ServerConfig, demo_account, load_accounts

Kit = Any  # the `kit` fixture of conftest.py
Start = Callable[..., AbstractAsyncContextManager[Any]]

ALICE = Account(
    name="alice",
    uid=1,
    bitmusa_api_key="alice-bitmusa-api",
    bitmusa_auth_key="alice-bitmusa-auth",
    coinlocally_api_key="alice-coinlocally-api",
    coinlocally_secret_key="alice-coinlocally-SECRET",
)
BOB = Account(name="bob", uid=2, bitmusa_api_key="bob-bitmusa-api", bitmusa_auth_key="bob-bitmusa-auth")
CAROL = Account(name="carol", uid=3, coinlocally_api_key="carol-api-without-secret")
ACCOUNTS = (ALICE, BOB, CAROL)
SECRET = "alice-coinlocally-SECRET"

OUTSIDE_WINDOW = (
    b'{"code":-1021,"msg":"timestamp for this request is more than 30000 ms away from the server\'s time"}'
)
BITMUSA_HEADERS = {"Authorization": "Bearer alice-bitmusa-auth", "x-api-key": "alice-bitmusa-api"}
T0 = 1_745_389_500_000


def balance(asset: str, free: str, locked: str, t: int) -> dict[str, Any]:
    return {"kind": "balance", "asset": asset, "free": free, "locked": locked, "timestamp": T0 + t}


def order(order_id: str, symbol: str, status: str, filled: str, t: int, **more: Any) -> dict[str, Any]:
    return {
        "kind": "order",
        "id": order_id,
        "symbol": symbol,
        "side": "buy",
        "type": "limit",
        "status": status,
        "price": "13000.50",
        "amount": "2",
        "filled": filled,
        "cost": "0" if filled == "0" else str(Decimal("13000.50") * Decimal(filled)),
        "created_at": T0,
        "timestamp": T0 + t,
        **more,
    }


# The history every test starts from: balances moved twice, C3 filled and gone, C1 partly filled.
EVENTS = [
    balance("USDT", "100000", "0", 1),
    balance("BTC", "1.00000000", "0", 1),
    order("C1", "BTC/USDT", "open", "0", 2),
    order("C2", "ETH/USDT", "open", "0", 3, side="sell", price="3500", raw_type="LIMIT_PRICE"),
    order("C3", "BTC/USDT", "open", "0", 4),
    balance("USDT", "47998.00", "52002.00", 5),
    order("C1", "BTC/USDT", "open", "0.5", 6),
    order("C3", "BTC/USDT", "closed", "2", 7),
    balance("ETH", "9", "1", 8),
]


async def get(kit: Kit, path: str, headers: dict[str, str]) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    async with kit.http.get(kit.server.base_url + path, headers=headers) as reply:
        return reply.status, await reply.read(), reply.headers


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(
    path: str, *, timestamp: int | None = None, api_key: str = "alice-coinlocally-api"
) -> dict[str, str]:
    """The exchange's rule, computed here independently of the project's own signing code."""
    ts = now_ms() if timestamp is None else timestamp
    signature = hmac.new(SECRET.encode(), f"{ts}GET{path}".encode(), hashlib.sha256).hexdigest()
    return {"X-CH-APIKEY": api_key, "X-CH-TS": str(ts), "X-CH-SIGN": signature}


@asynccontextmanager
async def fed(start: Start, **overrides: Any) -> AsyncIterator[Kit]:
    """A server to which EVENTS were ingested for alice."""
    async with start(accounts=ACCOUNTS, **overrides) as kit:
        status, body = await kit.ingest("alice", EVENTS)
        assert (status, body) == (200, {"accepted": len(EVENTS)})
        yield kit


# --- Bitmusa ----------------------------------------------------------------------------------------------


async def test_the_bitmusa_wallet_is_every_balance_the_events_imply(start: Start) -> None:
    async with fed(start) as kit:
        status, body, headers = await get(kit, "/spot/wallet", BITMUSA_HEADERS)
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body == (
        b'{"data":[{"asset":"BTC","free":"1.00000000","locked":"0"},'
        b'{"asset":"ETH","free":"9","locked":"1"},'
        b'{"asset":"USDT","free":"47998.00","locked":"52002.00"}],"code":0,"message":"success"}'
    )


async def test_the_bitmusa_history_lists_the_open_orders_of_one_symbol(start: Start) -> None:
    async with fed(start) as kit:
        path = "/spot/order/history?status=TRADING&symbol="
        btc = await get(kit, path + "BTC%2FUSDT", BITMUSA_HEADERS)
        eth = await get(kit, path + "ETH/USDT", BITMUSA_HEADERS)
        none = await get(kit, path + "XRP%2FUSDT", BITMUSA_HEADERS)
    assert btc[:2] == (
        200,
        b'{"data":[{"orderId":"C1","symbol":"BTC/USDT","direction":"BUY","type":"LIMIT_PRICE",'
        b'"price":13000.50,"amount":2,"tradedAmount":0.5,"value":6500.250,"status":"TRADING",'
        b'"createdTime":1745389500000,"canceledTime":null,"completedTime":null}],"code":0,"message":"success"}',
    )
    assert eth[:2] == (
        200,
        b'{"data":[{"orderId":"C2","symbol":"ETH/USDT","direction":"SELL","type":"LIMIT_PRICE",'
        b'"price":3500,"amount":2,"tradedAmount":0,"value":0,"status":"TRADING",'
        b'"createdTime":1745389500000,"canceledTime":null,"completedTime":null}],"code":0,"message":"success"}',
    )
    assert none[:2] == (200, b'{"data":[],"code":0,"message":"success"}')


async def test_an_account_without_events_has_an_empty_snapshot(start: Start) -> None:
    async with start(accounts=ACCOUNTS) as kit:
        wallet = await get(kit, "/spot/wallet", BITMUSA_HEADERS)
        orders = await get(kit, "/spot/order/history?status=TRADING&symbol=BTC%2FUSDT", BITMUSA_HEADERS)
    assert wallet[:2] == orders[:2] == (200, b'{"data":[],"code":0,"message":"success"}')


async def test_each_account_sees_only_its_own_state(start: Start) -> None:
    async with fed(start) as kit:
        status, body, _ = await get(
            kit, "/spot/wallet", {"Authorization": "Bearer bob-bitmusa-auth", "x-api-key": "bob-bitmusa-api"}
        )
    assert (status, body) == (200, b'{"data":[],"code":0,"message":"success"}')


@pytest.mark.parametrize(
    ("path", "headers", "status", "body"),
    [
        (
            "/spot/wallet",
            {},
            401,
            b'{"code":401001,"message":"missing credentials: send \'Authorization: Bearer <auth key>\' and '
            b"'x-api-key'\"}",
        ),
        (
            "/spot/wallet",
            {"Authorization": "Bearer wrong", "x-api-key": "alice-bitmusa-api"},
            401,
            b'{"code":401001,"message":"invalid api key or auth key"}',
        ),
        (
            "/spot/order/history?status=TRADING",
            BITMUSA_HEADERS,
            400,
            b'{"code":400001,"message":"symbol is required"}',
        ),
        (
            "/spot/order/history?symbol=BTC%2FUSDT&status=COMPLETED",
            BITMUSA_HEADERS,
            400,
            b'{"code":400001,"message":"status must be TRADING: this emulator keeps open orders only"}',
        ),
    ],
)
async def test_bitmusa_refusals_in_the_documented_shape(
    start: Start, path: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    async with start(accounts=ACCOUNTS) as kit:
        got = await get(kit, path, headers)
    assert got[:2] == (status, body)
    assert got[2]["Content-Type"] == "application/json"


async def test_bitmusa_snapshots_share_the_listen_key_routes_rate_limit(start: Start) -> None:
    async with start(accounts=ACCOUNTS, rate_limit_per_second=3) as kit:
        status, _, _ = await kit.rest("POST", BITMUSA_HEADERS)
        assert status == 200
        statuses = [(await get(kit, "/spot/wallet", BITMUSA_HEADERS))[0] for _ in range(3)]
        _, body, headers = await get(kit, "/spot/wallet", BITMUSA_HEADERS)
    assert statuses == [200, 200, 429]
    assert body == (
        b'{"code":429001,"message":"too many requests: at most 3 per second and 200 per minute per account"}'
    )
    assert headers["Retry-After"] == "1"


# --- Coinlocally ------------------------------------------------------------------------------------------


async def test_the_coinlocally_account_is_every_balance_the_events_imply(start: Start) -> None:
    async with fed(start) as kit:
        status, body, headers = await get(kit, "/sapi/v1/account", signed("/sapi/v1/account"))
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert body == (
        b'{"balances":[{"asset":"BTC","free":"1.00000000","locked":"0"},'
        b'{"asset":"ETH","free":"9","locked":"1"},'
        b'{"asset":"USDT","free":"47998.00","locked":"52002.00"}]}'
    )


async def test_the_coinlocally_open_orders_of_one_symbol(start: Start) -> None:
    async with fed(start) as kit:
        path = "/sapi/v1/openOrders?symbol=BTCUSDT&limit=1000"
        btc = await get(kit, path, signed(path))
        lower = "/sapi/v1/openOrders?symbol=ethusdt"
        eth = await get(kit, lower, signed(lower))
    assert btc[:2] == (
        200,
        b'[{"orderId":"C1","orderIdString":"C1","symbol":"BTCUSDT","price":"13000.50","origQty":"2",'
        b'"executedQty":"0.5","cummulativeQuoteQty":"6500.250","status":"PART_FILLED","type":"LIMIT",'
        b'"side":"BUY","time":1745389500000}]',
    )
    assert eth[:2] == (
        200,
        b'[{"orderId":"C2","orderIdString":"C2","symbol":"ETHUSDT","price":"3500","origQty":"2",'
        b'"executedQty":"0","cummulativeQuoteQty":"0","status":"NEW","type":"LIMIT","side":"SELL",'
        b'"time":1745389500000}]',
    )


async def test_the_coinlocally_limit_cuts_the_list_by_id(start: Start) -> None:
    async with start(accounts=ACCOUNTS) as kit:
        await kit.ingest("alice", [order(f"C{n}", "BTC/USDT", "open", "0", n) for n in (3, 1, 2)])
        path = "/sapi/v1/openOrders?symbol=BTCUSDT&limit=2"
        status, body, _ = await get(kit, path, signed(path))
    assert status == 200
    assert [entry.split(b'"')[0] for entry in body.split(b'"orderIdString":"')[1:]] == [b"C1", b"C2"]


@pytest.mark.parametrize(
    ("make_headers", "status", "body"),
    [
        (
            lambda path: {},
            401,
            b'{"code":-2015,"msg":"missing credentials: send X-CH-APIKEY, X-CH-TS and X-CH-SIGN"}',
        ),
        (
            lambda path: signed(path, api_key="nobody"),
            401,
            b'{"code":-2015,"msg":"invalid api key"}',
        ),
        (
            lambda path: signed(path, api_key="carol-api-without-secret"),
            401,
            b'{"code":-2015,"msg":"this api key has no secret key: signed requests are refused"}',
        ),
        (
            lambda path: {**signed(path), "X-CH-SIGN": "0" * 64},
            401,
            b'{"code":-1022,"msg":"signature for this request is not valid"}',
        ),
        (
            # signed for another query than the one sent: a tampered symbol fails the signature
            lambda path: signed(path.replace("BTCUSDT", "ETHUSDT")),
            401,
            b'{"code":-1022,"msg":"signature for this request is not valid"}',
        ),
        (
            lambda path: signed(path, timestamp=now_ms() - 31_000),
            400,
            OUTSIDE_WINDOW,
        ),
        (
            lambda path: signed(path, timestamp=now_ms() + 31_000),
            400,
            OUTSIDE_WINDOW,
        ),
        (
            lambda path: {**signed(path), "X-CH-TS": "yesterday"},
            400,
            b'{"code":-1102,"msg":"X-CH-TS must be the request time in milliseconds since the epoch"}',
        ),
    ],
)
async def test_coinlocally_refusals_in_the_documented_shape(
    start: Start, make_headers: Callable[[str], dict[str, str]], status: int, body: bytes
) -> None:
    path = "/sapi/v1/openOrders?symbol=BTCUSDT"
    async with start(accounts=ACCOUNTS) as kit:
        got = await get(kit, path, make_headers(path))
    assert got[:2] == (status, body)
    assert got[2]["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/sapi/v1/openOrders",
            b'{"code":-1102,"msg":"mandatory parameter \'symbol\' was not sent or was empty"}',
        ),
        (
            "/sapi/v1/openOrders?symbol=BTCUSDT&limit=5000",
            b'{"code":-1102,"msg":"parameter \'limit\' must be an integer in 1..1000"}',
        ),
    ],
)
async def test_coinlocally_bad_parameters(start: Start, path: str, body: bytes) -> None:
    async with start(accounts=ACCOUNTS) as kit:
        got = await get(kit, path, signed(path))
    assert got[:2] == (400, body)


async def test_a_timestamp_within_the_window_either_way_is_accepted(start: Start) -> None:
    async with start(accounts=ACCOUNTS) as kit:
        early = await get(kit, "/sapi/v1/account", signed("/sapi/v1/account", timestamp=now_ms() - 20_000))
        late = await get(kit, "/sapi/v1/account", signed("/sapi/v1/account", timestamp=now_ms() + 20_000))
    assert (early[0], late[0]) == (200, 200)


async def test_coinlocally_requests_are_rate_limited_apart_from_bitmusa(start: Start) -> None:
    async with start(accounts=ACCOUNTS, rate_limit_per_second=2) as kit:
        for _ in range(2):
            assert (await get(kit, "/spot/wallet", BITMUSA_HEADERS))[0] == 200
        statuses = [(await get(kit, "/sapi/v1/account", signed("/sapi/v1/account")))[0] for _ in range(3)]
        _, body, headers = await get(kit, "/sapi/v1/account", signed("/sapi/v1/account"))
    assert statuses == [200, 200, 429]
    assert (
        body
        == b'{"code":-1003,"msg":"too many requests: at most 2 per second and 200 per minute per account"}'
    )
    assert headers["Retry-After"] == "1"


async def test_no_refusal_logs_a_credential_or_a_signature(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {**signed("/sapi/v1/account"), "X-CH-SIGN": "f" * 64}
    async with start(accounts=ACCOUNTS) as kit:
        assert (await get(kit, "/sapi/v1/account", headers))[0] == 401
        assert (await get(kit, "/sapi/v1/account", signed("/x")))[0] == 401
    refusals = [record for record in caplog.records if record.getMessage() == "snapshot request refused"]
    assert len(refusals) == 2
    logged = caplog.text + repr([record.__dict__ for record in caplog.records])
    for secret in (SECRET, "alice-coinlocally-api", "f" * 64, signed("/x")["X-CH-SIGN"]):
        assert secret not in logged


# --- the truth follows every publish ------------------------------------------------------------------------


async def test_the_truth_is_the_simulated_ledger(start: Start) -> None:
    async with start(accounts=ACCOUNTS, simulate_rate=2000, seed=7) as kit:
        handle = kit.server
        async with asyncio.timeout(10):
            while handle.server.simulator.events_published < 300:  # noqa: ASYNC110 - a counter, no signal
                await asyncio.sleep(0.01)
        handle.pause_simulation()
        for name in ("alice", "bob"):
            ledger = handle.ledger(name)
            truth = handle.server.truth.snapshot(name)
            balances = {asset: (b.free, b.locked) for asset, b in truth.balances.items()}
            assert balances == ledger.balances
            assert dict(truth.open_orders) == ledger.open_orders
        status, body, _ = await get(kit, "/spot/wallet", BITMUSA_HEADERS)
    assert status == 200
    assert body.count(b'"asset"') == len(handle.ledger("alice").balances)


# --- the accounts file ------------------------------------------------------------------------------------


def test_the_secret_key_is_read_from_the_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[accounts]]\nname = "alice"\nuid = 1\n'
        'coinlocally_api_key = "k"\ncoinlocally_secret_key = "s3cret"\n'
    )
    (alice,) = load_accounts(path)
    assert (alice.coinlocally_api_key, alice.coinlocally_secret_key) == ("k", "s3cret")
    assert "s3cret" not in repr(alice)


def test_a_secret_key_without_its_api_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[accounts]]\nname = "alice"\nuid = 1\ncoinlocally_token = "t"\ncoinlocally_secret_key = "s"\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        load_accounts(path)
    assert str(caught.value) == (
        f"{path}: account 'alice': key 'coinlocally_api_key' is missing "
        "(coinlocally_secret_key signs its requests)"
    )
    with pytest.raises(ConfigurationError, match="coinlocally_secret_key signs its requests"):
        ServerConfig(accounts=(Account(name="x", uid=1, coinlocally_token="t", coinlocally_secret_key="s"),))


def test_secret_keys_may_repeat_across_accounts(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[[accounts]]\nname = "a"\nuid = 1\ncoinlocally_api_key = "k1"\ncoinlocally_secret_key = "same"\n'
        '[[accounts]]\nname = "b"\nuid = 2\ncoinlocally_api_key = "k2"\ncoinlocally_secret_key = "same"\n'
    )
    assert [account.name for account in load_accounts(path)] == ["a", "b"]


def test_the_demo_account_and_the_example_file_carry_a_secret_key() -> None:
    demo = demo_account()
    assert demo.coinlocally_secret_key is not None
    assert len(demo.coinlocally_secret_key) == 43
    assert demo.credentials()["coinlocally_secret_key"] == demo.coinlocally_secret_key
    example = Path(__file__).parents[2] / "examples" / "accounts.toml"
    alice = load_accounts(example)[0]
    assert alice.coinlocally_secret_key == "alice-coinlocally-secret-key-example"
