"""Many cheap WebSocket receivers for the server benchmarks (fan-out and idle memory).

This module owns `Fleet`: N picows connections to `userstream serve`, one per account (or several per
account), of one dialect, opened the way each exchange requires (Bitmusa: a listenKey from the REST API,
then `/ws/spot/<key>`; Coinlocally: the `token` header, the sub frame, and "sub success"). A receiver costs
the bench process about nothing per frame: it counts frames, and only when asked (`decode_ids`) pulls the
order id out of each frame to time it. The server is what these benchmarks measure, so the receivers stay
out of its way (they run in the bench process, the server in its own).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable

import aiohttp
import msgspec
import picows

from serve_child import account_name, credentials
from wire import GZIP_WBITS


class _BitmusaData(msgspec.Struct):
    orderId: str  # noqa: N815 - the wire's name


class _BitmusaId(msgspec.Struct):
    data: _BitmusaData


class _CoinlocallyId(msgspec.Struct):
    i: str


_BITMUSA_ID = msgspec.json.Decoder(_BitmusaId)
_COINLOCALLY_ID = msgspec.json.Decoder(_CoinlocallyId)


def sequence_of(order_id: str) -> int:
    """Bench order ids are "L<sequence>"."""
    return int(order_id[1:])


class _Receiver(picows.WSListener):
    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.live: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        if self.fleet.exchange == "bitmusa":
            self.live.set_result(None)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        fleet = self.fleet
        if kind == picows.WSMsgType.TEXT:
            if fleet.exchange == "coinlocally":  # control replies; data comes as gzip binary
                if frame.get_payload_as_bytes() == b"sub success" and not self.live.done():
                    self.live.set_result(None)
                return
            if fleet.on_order is not None:
                fleet.on_order(_BITMUSA_ID.decode(frame.get_payload_as_memoryview()).data.orderId)
        elif kind == picows.WSMsgType.BINARY:
            if fleet.on_order is not None:
                message = zlib.decompress(frame.get_payload_as_memoryview(), GZIP_WBITS)
                fleet.on_order(_COINLOCALLY_ID.decode(message).i)
        elif kind == picows.WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        elif kind == picows.WSMsgType.CLOSE:
            fleet.closed += 1
            transport.disconnect()
            return
        else:
            return
        fleet.frames[self.index] += 1
        fleet.total += 1
        if fleet.total >= fleet.wake_at:
            fleet.wake()


class Fleet:
    """`size` receivers of `exchange`; receiver k belongs to account `first_account + k // per_account`."""

    def __init__(
        self,
        exchange: str,
        base_url: str,
        ws_url: str,
        size: int,
        *,
        per_account: int = 1,
        first_account: int = 0,
    ) -> None:
        self.exchange = exchange
        self.first_account = first_account
        self.base_url = base_url
        self.ws_url = ws_url
        self.size = size
        self.per_account = per_account
        self.frames = [0] * size
        self.total = 0
        self.closed = 0
        self.wake_at = 1 << 62
        self._waiter: asyncio.Future[None] | None = None
        #: called with the order id of every data frame, when set (latency runs)
        self.on_order: Callable[[str], None] | None = None
        self.transports: list[picows.WSTransport] = []

    @property
    def accounts(self) -> range:
        return range(self.first_account, self.first_account - (-self.size // self.per_account))

    def account_index(self, receiver: int) -> int:
        return self.first_account + receiver // self.per_account

    def account_of(self, receiver: int) -> str:
        return account_name(self.account_index(receiver))

    def wake(self) -> None:
        self.wake_at = 1 << 62
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_total(self, total: int) -> None:
        """Return once `total` data frames have arrived across the fleet."""
        if self.total >= total:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        self.wake_at = total
        await self._waiter

    async def open(self, concurrency: int = 100) -> float:
        """Open every receiver (until live); returns the seconds it took."""
        started = time.perf_counter()
        keys: dict[int, str] = {}
        if self.exchange == "bitmusa":
            async with aiohttp.ClientSession() as session:
                for account in self.accounts:
                    keys[account] = await _listen_key(session, self.base_url, account)
        slots = asyncio.Semaphore(concurrency)
        self.transports = [None] * self.size  # type: ignore[list-item]

        async def open_one(index: int) -> None:
            async with slots:
                self.transports[index] = await self._connect(index, keys)

        async with asyncio.TaskGroup() as group:
            for index in range(self.size):
                group.create_task(open_one(index))
        return time.perf_counter() - started

    async def _connect(self, index: int, keys: dict[int, str]) -> picows.WSTransport:
        account = self.account_index(index)
        holder: list[_Receiver] = []

        def make() -> _Receiver:
            holder.append(_Receiver(self, index))
            return holder[0]

        if self.exchange == "bitmusa":
            url, headers = f"{self.ws_url}/ws/spot/{keys[account]}", None
        else:
            url = f"{self.ws_url}/spotws_user/userData/ws"
            headers = {"token": credentials(account)["coinlocally_token"]}
        for attempt in range(5):
            try:
                transport, _ = await picows.ws_connect(
                    make,
                    url,
                    extra_headers=headers,
                    read_buffer_init_size=2048,
                    websocket_handshake_timeout=30,
                )
                break
            except (OSError, TimeoutError, picows.WSError):
                holder.clear()
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        if self.exchange == "coinlocally":
            token = credentials(account)["coinlocally_token"]
            transport.send(picows.WSMsgType.TEXT, msgspec.json.encode({"event": "sub", "token": token}))
        async with asyncio.timeout(60):
            await holder[0].live
        return transport

    async def close(self) -> None:
        for transport in self.transports:
            if transport is not None:
                transport.send_close(picows.WSCloseCode.OK)
                transport.disconnect()
        for transport in self.transports:
            if transport is not None:
                async with asyncio.timeout(30):
                    await transport.wait_disconnected()
        self.transports = []


async def _listen_key(session: aiohttp.ClientSession, base_url: str, account: int) -> str:
    secrets = credentials(account)
    headers = {
        "Authorization": f"Bearer {secrets['bitmusa_auth_key']}",
        "x-api-key": secrets["bitmusa_api_key"],
    }
    async with session.post(f"{base_url}/spot/userDataStream", headers=headers) as response:
        body = await response.json()
    key: str = body["data"]["listenKey"]
    return key
