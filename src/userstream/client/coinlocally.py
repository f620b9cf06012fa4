"""Coinlocally at runtime: the authenticated handshake, the sub, and the heartbeat's words.

This module owns `CoinlocallySession` and `CoinlocallyDialect`. The wire (headers, sub and ping frames, the
classification of every incoming frame) belongs to `userstream.protocol.coinlocally`; this file decides what
each thing means to a running stream:

- the credential travels in the handshake header (`token` or `api-key`); a handshake refused with HTTP 401
  or 403 is a rejected credential (fatal, after the supervisor's bounded attempts);
- the sub frame is sent right after the handshake, and the connection is live only once "sub success"
  arrives (the supervisor enforces `sub_timeout`); "connect success" is accepted and changes nothing;
- an error reply or a close with SUB_REJECTED means the sub's token was refused: fatal, and the server's
  message is shown (scrubbed of every secret by the connection before it gets here: client/scrub.py);
- {"ping": now_ms} is sent every `ping_interval`; a server's own {"ping": n} is answered {"pong": n};
- the SYSTEM close notice ends the connection (after reading what the server still sends), and the
  supervisor reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from userstream.client.session import SessionHooks
from userstream.client.transport import HandshakeRejectedError, PeerClosedError, Transport, WebSocket
from userstream.errors import AuthenticationError, UserStreamError
from userstream.events import Exchange
from userstream.protocol import coinlocally
from userstream.protocol.close import is_fatal
from userstream.protocol.messages import ControlReply, ErrorReply, Incoming

__all__ = ["CoinlocallyDialect", "CoinlocallySession"]

_SHOWN_REPLY_CHARS = 200


class CoinlocallyDialect:
    """Frames on a Coinlocally stream: sub first, live on "sub success", JSON ping/pong both ways."""

    exchange = Exchange.COINLOCALLY
    live_on_connect = False

    def __init__(self, parser: coinlocally.Parser, credentials: coinlocally.Credentials) -> None:
        #: The exchange's parser itself, not a method around it: it runs once per frame.
        self.parse: Callable[[str | bytes], Incoming] = parser
        self._credentials = credentials

    def opening_frames(self) -> Sequence[str]:
        return (coinlocally.sub_frame(self._credentials),)

    def is_live_reply(self, reply: ControlReply) -> bool:
        return reply.text == coinlocally.SUB_SUCCESS

    def ping_frame(self, now_ms: int) -> str | None:
        return coinlocally.ping_frame(now_ms)

    def pong_frame(self, timestamp: int) -> str | None:
        return coinlocally.pong_frame(timestamp)

    def error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        message = reply.message[:_SHOWN_REPLY_CHARS]  # scrubbed already, where it entered (connection.py)
        detail = f": {message}" if message else ""
        return AuthenticationError(
            f"Coinlocally refused the sub frame's token (error code {reply.code}){detail}",
            rejected="sub token",
        )

    def error_for_close(self, closed: PeerClosedError) -> UserStreamError:
        if is_fatal(closed.code):
            return AuthenticationError(
                f"Coinlocally refused the sub frame's token (close code {closed.code})",
                rejected="sub token",
            )
        return closed


class CoinlocallySession:
    """One account's Coinlocally credential and the WebSockets that use it."""

    exchange = Exchange.COINLOCALLY
    listen_key_hint = None
    keepalives = 0

    def __init__(
        self,
        *,
        transport: Transport,
        credentials: coinlocally.Credentials,
        account: str,
        ws_url: str,
        quotes: Sequence[str] | None,
        max_frame: int,
    ) -> None:
        self._transport = transport
        self._credentials = credentials
        self._ws_url = ws_url
        parser = (
            coinlocally.Parser(account=account, max_frame=max_frame)
            if quotes is None
            else coinlocally.Parser(account=account, quotes=quotes, max_frame=max_frame)
        )
        self.dialect = CoinlocallyDialect(parser, credentials)

    async def open_websocket(self) -> WebSocket:
        headers = coinlocally.handshake_headers(self._credentials)
        header = self._credentials.header_name
        try:
            return await self._transport.websocket(self._ws_url, headers, label=self._ws_url)
        except HandshakeRejectedError as exc:
            if exc.status in (401, 403):
                raise AuthenticationError(
                    f"Coinlocally refused the {header!r} header (HTTP {exc.status})",
                    rejected=f"{header} header",
                    status=exc.status,
                ) from None
            raise

    def forget_listen_key(self, reason: str) -> None:
        """Coinlocally has no listenKey."""

    async def maintain(self, hooks: SessionHooks) -> None:
        """Nothing runs beside Coinlocally's connections: each carries its own heartbeat."""

    async def close(self) -> None:
        """Nothing to release: the credential outlives the stream."""
