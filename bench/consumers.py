"""The three clients every client benchmark compares, in one shape: connect, then call `on_event(time)`
for every event with the event's exchange timestamp (ms), until it returns True.

This module owns the clients, not the measurements:

- `userstream`: the public API, `client.connect(...)` and `async for event in stream`: decode, normalize
  into Decimal events, dedupe, queue, deliver. Default options.
- `limit`: the fastest raw loop that can be built here: picows' frame callback, `zlib.decompress(data, 31)`
  for gzip, and a typed msgspec decode of the exchange's shapes with Decimal money (select_libs.py's
  Structs), straight from picows' buffer; no normalization, no queue, no task switch.
- `handwritten`: what people write today: the websockets library, `gzip.decompress`, `json.loads`, and a
  dict of the fields they need.

Every client sends Coinlocally's sub frame with the credential header, as the exchange requires.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import picows
import websockets.asyncio.client

from select_libs import BITMUSA_TYPED, COINLOCALLY_TYPED, AccountPosition
from userstream import client
from wire import GZIP_WBITS

TOKEN = "bench-token"
MAX_FRAME = 1 << 20

#: on_event(exchange timestamp in ms) -> True to stop
OnEvent = Callable[[int], bool]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one run's stream comes from: the WebSocket URL to use (userstream's own path suffix is
    added to Bitmusa's base by userstream itself) and the REST base for Bitmusa's listenKey."""

    exchange: str
    ws_base: str  # e.g. ws://127.0.0.1:PORT/flood/bitmusa
    rest_url: str

    @property
    def full_ws_url(self) -> str:
        """The URL a client that builds no path itself connects to."""
        if self.exchange == "bitmusa":
            return f"{self.ws_base}/ws/spot/bench-listen-key"
        return f"{self.ws_base}/spotws_user/userData/ws"


def _sub_frame() -> str:
    return json.dumps({"event": "sub", "token": TOKEN})


# --- userstream ------------------------------------------------------------------------------------------


async def userstream_client(target: Target, on_event: OnEvent, **options: Any) -> None:
    if target.exchange == "bitmusa":
        stream = client.connect(
            "bitmusa",
            api_key="bench-api-key",
            auth_key="bench-auth-key",
            rest_url=target.rest_url,
            ws_url=target.ws_base,
            **options,
        )
    else:
        stream = client.connect("coinlocally", token=TOKEN, ws_url=target.full_ws_url, **options)
    async with stream:
        async for event in stream:
            if on_event(event.timestamp):
                return


# --- the limit -------------------------------------------------------------------------------------------


class _LimitListener(picows.WSListener):
    def __init__(self, exchange: str, on_event: OnEvent, done: asyncio.Future[None]) -> None:
        self.bitmusa = exchange == "bitmusa"
        self.on_event = on_event
        self.done = done

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if self.done.done():
            return
        kind = frame.msg_type
        if self.bitmusa:
            if kind == picows.WSMsgType.TEXT:
                message = BITMUSA_TYPED.decode(frame.get_payload_as_memoryview())
                if self.on_event(message.event_time):
                    self.done.set_result(None)
            return
        if kind == picows.WSMsgType.BINARY:
            message = COINLOCALLY_TYPED.decode(zlib.decompress(frame.get_payload_as_memoryview(), GZIP_WBITS))
            if isinstance(message, AccountPosition):
                for _balance in message.balances:
                    if self.on_event(message.event_time):
                        self.done.set_result(None)
                        return
            elif self.on_event(message.event_time):
                self.done.set_result(None)


async def limit_client(target: Target, on_event: OnEvent) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    headers = {"token": TOKEN} if target.exchange == "coinlocally" else None
    transport, _listener = await picows.ws_connect(
        lambda: _LimitListener(target.exchange, on_event, done),
        target.full_ws_url,
        max_frame_size=MAX_FRAME,
        extra_headers=headers,
    )
    try:
        if target.exchange == "coinlocally":
            transport.send(picows.WSMsgType.TEXT, _sub_frame().encode())
        await done
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()


# --- hand-written ----------------------------------------------------------------------------------------

CONTROL_REPLIES = ("connect success", "sub success")


async def handwritten_client(target: Target, on_event: OnEvent) -> None:
    """The client most people write: websockets, gzip.decompress, json.loads, dict access."""
    bitmusa = target.exchange == "bitmusa"
    headers = None if bitmusa else {"token": TOKEN}
    # close_timeout: after the last counted event the flood is still coming and websockets has paused
    # reading (its queue is full), so it never sees the server's close; waiting the default 10 s for it
    # is not measured, only wasted.
    async with websockets.asyncio.client.connect(
        target.full_ws_url, additional_headers=headers, max_size=MAX_FRAME, close_timeout=0.2
    ) as ws:
        if not bitmusa:
            await ws.send(_sub_frame())
        async for received in ws:
            if isinstance(received, bytes):
                text: str | bytes = gzip.decompress(received)
            elif received in CONTROL_REPLIES:
                continue
            else:
                text = received
            msg = json.loads(text)
            if bitmusa:
                data = msg["data"]
                if msg["stream"] == "spot_order":
                    update = {
                        "id": data["orderId"],
                        "symbol": data["symbol"],
                        "side": data["direction"],
                        "status": data["status"],
                        "price": data["price"],
                        "amount": data["amount"],
                        "filled": data["tradedAmount"],
                        "time": msg["eventTime"],
                    }
                else:
                    update = {
                        "asset": data["asset"],
                        "free": data["free"],
                        "locked": data["locked"],
                        "time": msg["eventTime"],
                    }
                if on_event(update["time"]):
                    return
                continue
            kind = msg.get("e")
            if kind == "executionReport":
                update = {
                    "id": msg["i"],
                    "symbol": msg["s"],
                    "side": msg["S"],
                    "status": msg["X"],
                    "price": msg["p"],
                    "amount": msg["q"],
                    "filled": msg["z"],
                    "time": msg["E"],
                }
                if on_event(update["time"]):
                    return
            elif kind == "outboundAccountPosition":
                for entry in msg["B"]:
                    balance = {
                        "asset": entry["a"],
                        "free": entry["f"],
                        "locked": entry["l"],
                        "time": msg["E"],
                    }
                    if on_event(balance["time"]):
                        return


CLIENTS: dict[str, Callable[[Target, OnEvent], Coroutine[Any, Any, None]]] = {
    "userstream": userstream_client,
    "limit": limit_client,
    "hand-written": handwritten_client,
}
