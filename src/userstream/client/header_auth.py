"""A stream whose handshake carries the credential (Coinlocally) at runtime: open the WebSocket, and give each
connection its client session.

This module owns `HeaderSession`, the I/O of one account's stream on an exchange the registry describes
with a `protocol.client_wire.HeaderWire`: it opens each WebSocket with the credential header and gives each
connection the exchange's sans-I/O client session (`protocol.coinlocally_client`), which holds every
protocol decision (the sub, "sub success", ping/pong, a refusal in any shape, what a refused handshake
means: docs/client.md, "Refusals"). Nothing runs beside the connections: each carries its own heartbeat,
and the credential outlives the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from userstream.client.rest import check_url
from userstream.client.session import OpenArguments, SessionHooks
from userstream.client.transport import Transport
from userstream.client.websocket import HandshakeRejectedError, WebSocket
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol import endpoints
from userstream.protocol.client_session import ClientSession, Timings
from userstream.protocol.client_wire import HeaderWire
from userstream.protocol.registry import ExchangeSpec

__all__ = ["HeaderSession"]


class HeaderSession:
    """One account's credential and the WebSockets that use it."""

    listen_key_hint = None
    keepalives = 0

    @classmethod
    def open(
        cls,
        entry: ExchangeSpec,
        wire: HeaderWire,
        arguments: OpenArguments,
    ) -> HeaderSession:
        """The session `connect()`'s arguments describe; ConfigurationError for unusable ones."""
        title = entry.title
        transport, options = arguments.transport, arguments.options
        api_key, auth_key, token = arguments.api_key, arguments.auth_key, arguments.token
        rest_url, ws_url = arguments.rest_url, arguments.ws_url
        if auth_key is not None:
            raise ConfigurationError(f"{title} takes a token or an api_key, not an auth_key")
        if rest_url is not None:
            raise ConfigurationError(f"{title}'s user stream has no REST endpoint; pass ws_url only")
        wss = ws_url if ws_url is not None else wire.ws_url
        check_url(wss, ("wss", "ws"), f"the {title} WebSocket URL")
        return cls(
            entry.exchange,
            wire,
            transport=transport,
            credentials=wire.credentials(token, api_key),
            account=options.account,
            ws_url=wss,
            quotes=options.quotes,
            max_frame=options.max_frame,
        )

    def __init__(
        self,
        exchange: Exchange,
        wire: HeaderWire,
        *,
        transport: Transport,
        credentials: Any,
        account: str,
        ws_url: str,
        quotes: tuple[str, ...] | None,
        max_frame: int,
    ) -> None:
        self.exchange = exchange
        self._wire = wire
        self._transport = transport
        self._credentials = credentials
        self._ws_url = wire.ws_url_of(ws_url)
        self._label = endpoints.shown(self._ws_url)
        self._parser = wire.parser(account, quotes=quotes, max_frame=max_frame)
        self.live_on_connect = wire.live_on_connect

    def new_client_session(
        self, *, timings: Timings, label: str, scrub: Callable[[str], str]
    ) -> ClientSession:
        return self._wire.client_session(
            self._parser, self._credentials, timings=timings, label=label, scrub=scrub
        )

    async def open_websocket(self) -> WebSocket:
        headers = dict(self._wire.handshake_headers(self._credentials))
        header = self._wire.header_name(self._credentials)
        try:
            return await self._transport.websocket(self._ws_url, headers, label=self._label)
        except HandshakeRejectedError as exc:
            refused = self._wire.handshake_refused(exc.status, label=self._label, header=header)
            if refused is None:
                raise
            raise refused from None

    def forget_listen_key(self, reason: str) -> None:
        """There is no listenKey."""

    async def maintain(self, hooks: SessionHooks) -> None:
        """Nothing runs beside the connections: each carries its own heartbeat."""

    async def close(self) -> None:
        """Nothing to release: the credential outlives the stream."""
