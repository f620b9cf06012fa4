"""Coinlocally at runtime: the authenticated handshake, and a client session per connection.

This module owns `CoinlocallySession`, the I/O of one account's Coinlocally stream: it opens each WebSocket
with the credential header and gives each connection a `protocol.coinlocally_client.CoinlocallyClientSession`,
which holds every protocol decision (the sub, "sub success", ping/pong, a refusal in any shape, what a
refused handshake means: docs/client.md, "Refusals"). Nothing runs beside the connections: each carries
its own heartbeat, and the credential outlives the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from userstream.client.options import StreamOptions
from userstream.client.session import SessionHooks
from userstream.client.transport import HandshakeRejectedError, Transport, WebSocket, check_url
from userstream.errors import ConfigurationError, UserStreamError
from userstream.events import Exchange
from userstream.protocol import coinlocally, endpoints
from userstream.protocol.coinlocally_client import CoinlocallyClientSession, handshake_refused
from userstream.protocol.session import ClientSession, Timings

__all__ = ["CoinlocallySession"]


class CoinlocallySession:
    """One account's Coinlocally credential and the WebSockets that use it."""

    exchange = Exchange.COINLOCALLY
    live_on_connect = CoinlocallyClientSession.live_on_connect
    listen_key_hint = None
    keepalives = 0

    @classmethod
    def open(
        cls,
        *,
        transport: Transport,
        options: StreamOptions,
        api_key: str | None,
        auth_key: str | None,
        token: str | None,
        rest_url: str | None,
        ws_url: str | None,
        clock: Callable[[], float],
    ) -> CoinlocallySession:
        """The session `connect()`'s arguments describe; ConfigurationError for unusable ones."""
        if auth_key is not None:
            raise ConfigurationError("Coinlocally takes a token or an api_key, not an auth_key")
        if rest_url is not None:
            raise ConfigurationError("Coinlocally's user stream has no REST endpoint; pass ws_url only")
        wss = ws_url if ws_url is not None else coinlocally.WS_URL
        check_url(wss, ("wss", "ws"), "the Coinlocally WebSocket URL")
        return cls(
            transport=transport,
            credentials=coinlocally.Credentials(token=token, api_key=api_key),
            account=options.account,
            ws_url=wss,
            quotes=options.quotes,
            max_frame=options.max_frame,
        )

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
        self._parser = (
            coinlocally.Parser(account=account, max_frame=max_frame)
            if quotes is None
            else coinlocally.Parser(account=account, quotes=quotes, max_frame=max_frame)
        )

    def new_client_session(
        self, *, timings: Timings, label: str, scrub: Callable[[str], str]
    ) -> ClientSession:
        return CoinlocallyClientSession(
            self._parser, self._credentials, timings=timings, label=label, scrub=scrub
        )

    async def open_websocket(self) -> WebSocket:
        headers = coinlocally.handshake_headers(self._credentials)
        header = self._credentials.header_name
        try:
            return await self._transport.websocket(self._ws_url, headers, label=self._label)
        except HandshakeRejectedError as exc:
            refused = handshake_refused(exc.status, label=self._label, header=header)
            if refused is None:
                raise
            raise refused from None

    def ended_before_live(self, ending: UserStreamError) -> UserStreamError:
        return ending  # the client session judged a close before "sub success" already

    def forget_listen_key(self, reason: str) -> None:
        """Coinlocally has no listenKey."""

    async def maintain(self, hooks: SessionHooks) -> None:
        """Nothing runs beside Coinlocally's connections: each carries its own heartbeat."""

    async def close(self) -> None:
        """Nothing to release: the credential outlives the stream."""
