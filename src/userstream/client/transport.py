"""A stream's network: its REST calls and its WebSockets, with the TLS policy and the secrets they share.

This module owns `Transport`, the one object a stream's sessions, resync and `userstream doctor` reach the
network through. It holds what both halves need (the TLS policy, `request_timeout`, `max_frame`, and the
stream's `Scrubber`, which hides its credentials in whatever a server says) and is opened and closed once
per stream. The work is done next door: REST calls by `client/rest.py` (aiohttp), WebSockets by
`client/websocket.py` (picows). Every third-party exception is converted there, so none leaks past this
layer. TLS (the SSL context, verification, the warning when it is off) is `client/tls.py`'s: certificates
are verified unless the caller explicitly passes `verify_tls=False`.
"""

from __future__ import annotations

from collections.abc import Mapping

from userstream.client.rest import HttpReply, RequestLike, RestClient
from userstream.client.scrub import Scrubber
from userstream.client.tls import TlsPolicy
from userstream.client.websocket import WebSocket, open_websocket
from userstream.errors import TransportError

__all__ = ["Transport"]


class Transport:
    """One stream's REST client and WebSocket connections. Use as an async context manager, or call
    `open()` and `close()`."""

    def __init__(
        self,
        *,
        verify_tls: bool = True,
        request_timeout: float = 10.0,
        max_frame: int = 1 << 20,
        tls: TlsPolicy | None = None,
        scrubber: Scrubber | None = None,
    ) -> None:
        # `tls` (a CA bundle, say) wins; `verify_tls` alone is the short form of TlsPolicy(verify=...).
        #: The stream's secrets: a close reason is scrubbed here, and the sessions scrub REST errors with it.
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self._tls = tls if tls is not None else TlsPolicy(verify=verify_tls)
        self._timeout = request_timeout
        self._max_frame = max_frame
        self._open = False
        self._rest = RestClient(tls=self._tls, request_timeout=request_timeout, max_frame=max_frame)

    async def __aenter__(self) -> Transport:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self._rest.close()

    def _require_open(self) -> None:
        if not self._open:
            raise TransportError("the transport is not open")

    async def request(self, base_url: str, request: RequestLike, *, label: str) -> HttpReply:
        """Send one REST request to `base_url` + `request.path`; any status is a reply, not an error."""
        self._require_open()
        return await self._rest.request(base_url, request, label=label)

    async def websocket(self, url: str, headers: Mapping[str, str], *, label: str) -> WebSocket:
        """Open a WebSocket (`request_timeout` bounds the TCP connect, TLS and the upgrade together)."""
        self._require_open()
        return await open_websocket(
            url,
            headers,
            label=label,
            tls=self._tls,
            handshake_timeout=self._timeout,
            max_frame=self._max_frame,
            scrubber=self.scrubber,
        )
