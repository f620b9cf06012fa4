"""Coinlocally at runtime: the authenticated handshake, the sub, and the heartbeat's words.

This module owns `CoinlocallySession` and `CoinlocallyDialect`. The wire (headers, sub and ping frames, the
classification of every incoming frame, a refusal in any shape: `protocol.refusal`) belongs to
`userstream.protocol.coinlocally`; this file decides what each thing means to a running stream
(docs/client.md, "Refusals"):

- the credential travels in the handshake header (`token` or `api-key`); a handshake refused with HTTP 401
  or 403, whatever the body, is a rejected credential (fatal, after the supervisor's bounded attempts); a
  404 is an `EndpointNotFoundError` (a wrong URL if the stream was never live); other statuses are retried;
- the sub frame is sent right after the handshake, and the connection is live only once "sub success"
  arrives (the supervisor enforces `sub_timeout`); "connect success" is accepted and changes nothing;
- a reply that refuses (any shape: a non-zero code, an error text, a plain-text refusal) is a refused sub:
  an `AuthenticationError` quoting the server's text (scrubbed of every secret where it entered:
  client/scrub.py); a transient one (rate limit, busy server) is retried instead;
- a close before the connection went live with a 4000-4999 code or 1008 (or a refusal word in its reason)
  is a refused sub too (`ended_before_live`); a close with no code or a transient one (1011, 1013...) is
  retried; after live, only our emulator's SUB_REJECTED close is a refusal;
- {"ping": now_ms} is sent every `ping_interval`; a server's own {"ping": n} is answered {"pong": n};
- the SYSTEM close notice ends the connection (after reading what the server still sends), and the
  supervisor reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from userstream.client.session import SessionHooks
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, PeerClosedError, WebSocket
from userstream.errors import (
    AuthenticationError,
    ConnectionLostError,
    EndpointNotFoundError,
    UserStreamError,
)
from userstream.events import Exchange
from userstream.protocol import coinlocally, endpoints
from userstream.protocol.close import is_fatal
from userstream.protocol.messages import ControlReply, ErrorReply, Incoming
from userstream.protocol.refusal import clip, read_text_refusal

__all__ = ["CoinlocallyDialect", "CoinlocallySession"]


class CoinlocallyDialect:
    """Frames on a Coinlocally stream: sub first, live on "sub success", JSON ping/pong both ways."""

    exchange = Exchange.COINLOCALLY
    live_on_connect = False

    def __init__(
        self, parser: coinlocally.Parser, credentials: coinlocally.Credentials, *, label: str = ""
    ) -> None:
        #: The exchange's parser itself, not a method around it: it runs once per frame.
        self.parse: Callable[[str | bytes], Incoming] = parser
        self._credentials = credentials
        self._prefix = f"{label}: " if label else ""

    def opening_frames(self) -> Sequence[str]:
        return (coinlocally.sub_frame(self._credentials),)

    def is_live_reply(self, reply: ControlReply) -> bool:
        return reply.text == coinlocally.SUB_SUCCESS

    def ping_frame(self, now_ms: int) -> str | None:
        return coinlocally.ping_frame(now_ms)

    def pong_frame(self, timestamp: int) -> str | None:
        return coinlocally.pong_frame(timestamp)

    def error_for_reply(self, reply: ErrorReply) -> UserStreamError:
        # server words arrive scrubbed (a reply by the connection, a close reason by the transport)
        message = clip(reply.message)
        detail = f": {message}" if message else ""
        code = "" if reply.code is None else f" (error code {clip(str(reply.code))})"
        if reply.transient:
            return ConnectionLostError(
                f"{self._prefix}Coinlocally answered the sub with a transient refusal{code}{detail}"
            )
        return AuthenticationError(
            f"{self._prefix}Coinlocally refused the sub frame's token{code}{detail}", rejected="sub token"
        )

    def error_for_close(self, closed: PeerClosedError) -> UserStreamError:
        if is_fatal(closed.code):
            return self._refused_by_close(closed)
        return closed

    def error_before_live(self, ending: UserStreamError) -> UserStreamError:
        """A connection ended before "sub success": a close with a 4000-4999 code, 1008, or a refusal in
        its reason refused the sub; anything else (no close code, 1011, 1013...) stays what it was."""
        if not isinstance(ending, PeerClosedError) or ending.code in _TRANSIENT_CLOSES:
            return ending
        code = ending.code
        refused_reason = read_text_refusal(ending.reason)
        if (code is not None and (4000 <= code <= 4999 or code == _POLICY_VIOLATION)) or (
            refused_reason is not None and not refused_reason.transient
        ):
            return self._refused_by_close(ending)
        return ending

    def _refused_by_close(self, closed: PeerClosedError) -> AuthenticationError:
        reason = clip(closed.reason)
        detail = f": {reason}" if reason else ""
        return AuthenticationError(
            f"{self._prefix}Coinlocally refused the sub frame's token (close code {closed.code}){detail}",
            rejected="sub token",
        )


#: RFC 6455 close codes that say "later", not "no": going away, abnormal, internal error, restart, try again.
_TRANSIENT_CLOSES = frozenset({None, 1001, 1006, 1011, 1012, 1013, 1014})
_POLICY_VIOLATION = 1008


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
        self._ws_url = endpoints.coinlocally_ws_url(ws_url)
        self._label = endpoints.shown(self._ws_url)
        parser = (
            coinlocally.Parser(account=account, max_frame=max_frame)
            if quotes is None
            else coinlocally.Parser(account=account, quotes=quotes, max_frame=max_frame)
        )
        self.dialect = CoinlocallyDialect(parser, credentials, label=self._label)

    async def open_websocket(self) -> WebSocket:
        headers = coinlocally.handshake_headers(self._credentials)
        header = self._credentials.header_name
        try:
            return await self._transport.websocket(self._ws_url, headers, label=self._label)
        except HandshakeRejectedError as exc:
            if exc.status in (401, 403):
                raise AuthenticationError(
                    f"{self._label}: Coinlocally refused the {header!r} header (HTTP {exc.status})",
                    rejected=f"{header} header",
                    status=exc.status,
                ) from None
            if exc.status == 404:
                raise EndpointNotFoundError(
                    f"{self._label}: WebSocket handshake refused with HTTP 404 (no Coinlocally stream here)",
                    url=self._label,
                    expected=coinlocally.WS_PATH,
                ) from None
            raise

    def ended_before_live(self, ending: UserStreamError) -> UserStreamError:
        return self.dialect.error_before_live(ending)

    def forget_listen_key(self, reason: str) -> None:
        """Coinlocally has no listenKey."""

    async def maintain(self, hooks: SessionHooks) -> None:
        """Nothing runs beside Coinlocally's connections: each carries its own heartbeat."""

    async def close(self) -> None:
        """Nothing to release: the credential outlives the stream."""
