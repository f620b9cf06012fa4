"""Shared fixtures of the server tests: two accounts, a running server, and third-party clients to talk to it.

The clients are the `websockets` library and aiohttp's HTTP client, never this project's own client: the
server is held to the documents, not to our reading of them. Test modules cannot import each other (pytest's
importlib mode), so the helpers come as fixtures: `kit` (a `Kit` bound to a running server and an HTTP
session) and `start` (a factory of kits for servers with shortened timings).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from userstream.server import Account, ServerConfig, ServerHandle, running_server

ALICE = Account(
    name="alice",
    uid=24005174,  # the document's SYSTEM notice uid
    bitmusa_api_key="alice-bitmusa-api",
    bitmusa_auth_key="alice-bitmusa-auth",
    coinlocally_api_key="alice-coinlocally-api",
    coinlocally_token="alice-coinlocally-token",
)
BOB = Account(
    name="bob",
    uid=24005175,
    bitmusa_api_key="bob-bitmusa-api",
    bitmusa_auth_key="bob-bitmusa-auth",
    coinlocally_api_key="bob-coinlocally-api",
    coinlocally_token="bob-coinlocally-token",
)
ADMIN_TOKEN = "test-admin-token"
LISTEN_KEY_PATH = "/spot/userDataStream"
COINLOCALLY_PATH = "/spotws_user/userData/ws"
# No client keepalive pings (they would muddle the tests of the server's own heartbeat rules), and an
# unbounded receive queue: a websockets client with a full queue stops reading the socket, and then cannot
# see the server's close frame behind the unread events, which makes every close wait its 10 s timeout.
CLIENT_OPTIONS: dict[str, Any] = {"ping_interval": None, "max_queue": None}
WAIT = 5.0  # the bound on every wait for something that must happen; never reached when all is well


def make_config(**overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "accounts": (ALICE, BOB),
        "port": 0,
        "admin_token": ADMIN_TOKEN,
        "close_timeout": 2.0,
    }
    settings.update(overrides)
    return ServerConfig(**settings)


class Kit:
    """A running server plus the third-party clients and helpers a test needs to talk to it."""

    alice = ALICE
    bob = BOB

    def __init__(self, handle: ServerHandle, http: aiohttp.ClientSession) -> None:
        self.server = handle
        self.http = http

    # --- Bitmusa REST ---------------------------------------------------------------------------------------

    @staticmethod
    def bitmusa_headers(account: Account = ALICE) -> dict[str, str]:
        assert account.bitmusa_auth_key is not None
        assert account.bitmusa_api_key is not None
        return {"Authorization": f"Bearer {account.bitmusa_auth_key}", "x-api-key": account.bitmusa_api_key}

    async def rest(
        self, method: str, headers: dict[str, str], path: str = LISTEN_KEY_PATH
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        """(status, JSON body with exact decimals, headers) of one request."""
        async with self.http.request(method, self.server.base_url + path, headers=headers) as reply:
            raw = await reply.read()
            return reply.status, json.loads(raw, parse_float=Decimal), reply.headers

    async def create_listen_key(self, account: Account = ALICE) -> str:
        status, body, _ = await self.rest("POST", self.bitmusa_headers(account))
        assert status == 200
        key: str = body["data"]["listenKey"]
        return key

    # --- streams --------------------------------------------------------------------------------------------

    def bitmusa_stream(self, listen_key: str) -> Any:
        """`async with kit.bitmusa_stream(key) as ws`: a websockets client on the Bitmusa path."""
        return connect(f"{self.server.ws_url}/ws/spot/{listen_key}", **CLIENT_OPTIONS)

    def coinlocally_stream(self, headers: dict[str, str]) -> Any:
        return connect(self.server.ws_url + COINLOCALLY_PATH, additional_headers=headers, ping_interval=None)

    @staticmethod
    async def recv(ws: ClientConnection) -> str | bytes:
        async with asyncio.timeout(WAIT):
            return await ws.recv()

    @staticmethod
    async def recv_json(ws: ClientConnection) -> Any:
        """The next frame as JSON: text frames as they are, binary frames gunzipped first. Exact decimals."""
        frame = await Kit.recv(ws)
        if isinstance(frame, bytes):
            frame = gzip.decompress(frame).decode()
        return json.loads(frame, parse_float=Decimal)

    @staticmethod
    async def subscribe(ws: ClientConnection, token: str) -> None:
        """Read "connect success", send the sub frame, read "sub success"."""
        assert await Kit.recv(ws) == "connect success"
        await ws.send(json.dumps({"event": "sub", "token": token}))
        assert await Kit.recv(ws) == "sub success"

    @staticmethod
    async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
        """Wait for the close; (code, reason) of the close frame the server sent, (None, None) if none."""
        async with asyncio.timeout(WAIT):
            await ws.wait_closed()
        exc = ws.close_exc
        if exc.rcvd is None:
            return None, None
        return exc.rcvd.code, exc.rcvd.reason

    @staticmethod
    async def drain_until_closed(ws: ClientConnection) -> list[Any]:
        """Every frame left before the close, decoded as `recv_json` does (non-JSON text kept as is)."""
        frames: list[Any] = []
        try:
            while True:
                frame = await Kit.recv(ws)
                if isinstance(frame, bytes):
                    frame = gzip.decompress(frame).decode()
                try:
                    frames.append(json.loads(frame, parse_float=Decimal))
                except json.JSONDecodeError:
                    frames.append(frame)
        except ConnectionClosed:
            return frames

    # --- ingest ---------------------------------------------------------------------------------------------

    async def ingest(
        self, account: str, events: list[dict[str, Any]], token: str = ADMIN_TOKEN
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.server.base_url + "/admin/events",
            json={"account": account, "events": events},
            headers={"Authorization": f"Bearer {token}"},
        ) as reply:
            return reply.status, await reply.json()

    @staticmethod
    def balance(
        asset: str, free: str = "1", locked: str = "0", timestamp: int = 1700703548846
    ) -> dict[str, Any]:
        return {"kind": "balance", "asset": asset, "free": free, "locked": locked, "timestamp": timestamp}

    @staticmethod
    def order(order_id: str, timestamp: int = 1700703548846) -> dict[str, Any]:
        return {
            "kind": "order",
            "id": order_id,
            "symbol": "BTC/USDT",
            "side": "buy",
            "status": "open",
            "price": "100",
            "amount": "1",
            "filled": "0",
            "cost": "0",
            "timestamp": timestamp,
        }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def kit(http: aiohttp.ClientSession) -> AsyncIterator[Kit]:
    """A server with the default (documented) timings."""
    async with running_server(make_config()) as handle:
        yield Kit(handle, http)


@pytest.fixture
def start(http: aiohttp.ClientSession) -> Callable[..., AbstractAsyncContextManager[Kit]]:
    """`async with start(listen_key_ttl=0.3) as kit`: a server with some settings changed."""

    @asynccontextmanager
    async def starter(**overrides: Any) -> AsyncIterator[Kit]:
        async with running_server(make_config(**overrides)) as handle:
            yield Kit(handle, http)

    return starter
