"""The protocol sessions of `userstream serve`: made from the run's config and variants; one small runtime.

`new_session` makes the registry's session for a new stream with the config's timings and the run's
`ServerStyle` (`Variants.session_style`, variants.py: each exchange's chosen variants over our answers);
the server's streams are then driven by connection.py. `serve_unaccounted` drives the one stream that
belongs to no account: a Coinlocally credential that matched nobody, upgraded because a refusal variant
says the exchange refuses it only at the sub. It is not in the hub, the ledger or the per-address counts,
so it needs no outbox: it sends as the session says, answers WebSocket pings, and ends at the session's
close (or when the client or the server's shutdown ends it). No protocol decision is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import WSMsgType, web

from userstream.events import Exchange
from userstream.protocol.registry import spec
from userstream.protocol.server_session import ServerSession, ServerStyle, ServerTerms
from userstream.protocol.session import Close, Send, ServerAction
from userstream.server.config import Account, ServerConfig
from userstream.server.connection import wall_ms

__all__ = ["new_session", "serve_unaccounted"]


def new_session(
    config: ServerConfig,
    style: ServerStyle,
    exchange: Exchange,
    account: Account | None,
    *,
    secret: str | None = None,
) -> ServerSession:
    """The exchange's session for a new stream of `account` (None: a credential that matched nobody), whose
    handshake showed `secret` (Coinlocally's sub must repeat it)."""
    terms = ServerTerms(
        uid=0 if account is None else account.uid,
        secret=None if account is None else secret,
        max_age=config.max_connection_age,
        heartbeat_timeout=config.heartbeat_timeout,
        style=style,
    )
    return spec(exchange).server_session(terms)


async def serve_unaccounted(
    request: web.Request, ws: web.WebSocketResponse, session: ServerSession
) -> web.WebSocketResponse:
    """Run a stream that belongs to no account to its end (see the module docstring)."""
    await ws.prepare(request)
    if await _perform(ws, session.open(time.monotonic(), wall_ms())):
        return ws
    while True:
        deadline = session.next_deadline()
        message = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                message = await ws.receive()
        if message is None:
            actions = session.on_deadline(time.monotonic(), wall_ms())
        elif message.type is WSMsgType.PING:
            await ws.pong(message.data)
            continue
        elif message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
            actions = session.receive(message.data, time.monotonic(), wall_ms())
        else:
            if message.type is WSMsgType.CLOSE:
                await ws.close()
            return ws  # the client closed (or the socket broke) first
        if await _perform(ws, actions):
            return ws


async def _perform(ws: web.WebSocketResponse, actions: list[ServerAction]) -> bool:
    """Send and close as the session says (what it ignores is not logged: this stream has no account);
    True once closed."""
    for action in actions:
        if isinstance(action, Send):
            await _send(ws, action.frame)
        elif isinstance(action, Close):
            if action.last_frame is not None:
                await _send(ws, action.last_frame)
            await ws.close(code=action.code, message=action.reason.encode())
            return True
    return False


async def _send(ws: web.WebSocketResponse, frame: str | bytes) -> None:
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)
