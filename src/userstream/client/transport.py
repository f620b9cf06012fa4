"""The one place the client touches aiohttp: REST calls, WebSocket connections, and error conversion.

This module owns the client's I/O boundary. `Transport` wraps one `aiohttp.ClientSession` and turns a
protocol module's `HttpRequest` into an `HttpReply` (status and body, nothing parsed: parsing is the
protocol module's job) and a URL plus headers into a `WebSocket`. `WebSocket` receives frames (text,
binary, or a bare sign of life for protocol-level ping/pong), sends text and pings, and closes either
gracefully (a close frame, then keep reading until the peer answers, so nothing the peer sent before our
close is lost) or at once.

Every aiohttp, OS and timeout exception is converted here, in `_converted`, into our error tree (the
pattern of httpx's `map_httpcore_exceptions`), so nothing third-party leaks past this file. Messages are
built from what is safe to show: the caller's `label` for a URL (a Bitmusa WebSocket URL contains the
listenKey, so callers pass a masked label) and the exception's class, never aiohttp's own text, which can
quote the full URL. TLS (the SSL context, verification, the warning when it is off) is `client/tls.py`'s:
certificates are verified unless the caller explicitly passes `verify_tls=False`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol

import aiohttp
from yarl import URL

from userstream.client.tls import TlsPolicy
from userstream.errors import (
    ConfigurationError,
    ConnectionLostError,
    FrameDecodeError,
    TransportError,
)

__all__ = [
    "SIGN_OF_LIFE",
    "HandshakeRejectedError",
    "HttpReply",
    "PeerClosedError",
    "RequestLike",
    "SignOfLife",
    "Transport",
    "WebSocket",
    "check_url",
]


_CLOSE_CODE = struct.Struct("!H")
_ABORT_WAIT = 1.0  # seconds an abort waits for a peer that may be stalled


class HandshakeRejectedError(TransportError):
    """The server answered the WebSocket upgrade with an HTTP status instead of switching protocols.

    Exchange modules decide what a status means (Bitmusa: the listenKey is not valid; Coinlocally: the
    credential header was refused).
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class PeerClosedError(ConnectionLostError):
    """The WebSocket was closed. `code` and `reason` are the peer's close frame, when it sent one;
    `code` is None when the connection simply broke."""

    def __init__(self, message: str, *, code: int | None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class SignOfLife:
    """A protocol-level ping or pong arrived: the peer is alive, and there is no payload to parse."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SIGN_OF_LIFE"


SIGN_OF_LIFE: Final = SignOfLife()


class RequestLike(Protocol):
    """What a protocol module's `HttpRequest` provides (structural, so this file imports no exchange)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    #: case-insensitive; not part of equality (`userstream doctor` reads `Date` for its clock check)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)


def check_url(url: str, schemes: tuple[str, ...], what: str) -> URL:
    """Parse and check a configured endpoint; ConfigurationError naming `what` if it is unusable."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} is not a valid URL") from None
    if parsed.scheme not in schemes or not parsed.host:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ConfigurationError(f"{what} must be an absolute {allowed} URL, not {url!r}")
    return parsed


@contextmanager
def _converted(label: str) -> Iterator[None]:
    """Convert third-party exceptions raised inside into our tree, with messages that show no secret."""
    try:
        yield
    except aiohttp.WSServerHandshakeError as exc:
        raise HandshakeRejectedError(
            f"{label}: WebSocket handshake refused with HTTP {exc.status}", status=exc.status
        ) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        # Fatal, not retried: a certificate does not fix itself, and a wrong one may be an attack.
        why = getattr(exc.certificate_error, "verify_message", None) or type(exc.certificate_error).__name__
        raise ConfigurationError(
            f"{label}: the server's TLS certificate failed verification ({why}); to trust a private CA, "
            "pass its certificate as ca_file (--ca-file)"
        ) from None
    except aiohttp.ClientSSLError as exc:
        raise ConnectionLostError(f"{label}: TLS handshake failed ({type(exc.os_error).__name__})") from None
    except aiohttp.InvalidURL:
        raise ConfigurationError(f"{label}: invalid URL") from None
    except aiohttp.ClientConnectorError as exc:
        detail = exc.os_error.strerror or type(exc.os_error).__name__
        raise ConnectionLostError(f"{label}: cannot connect ({detail})") from None
    except (aiohttp.ServerTimeoutError, TimeoutError):
        raise ConnectionLostError(f"{label}: timed out") from None
    except aiohttp.ClientResponseError as exc:
        raise TransportError(f"{label}: HTTP {exc.status}") from None
    except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
        raise ConnectionLostError(f"{label}: connection failed ({type(exc).__name__})") from None


class Transport:
    """One HTTP client session for REST calls and WebSocket connections. Use as an async context manager,
    or call `open()` and `close()`."""

    def __init__(
        self,
        *,
        verify_tls: bool = True,
        request_timeout: float = 10.0,
        max_frame: int = 1 << 20,
        tls: TlsPolicy | None = None,
    ) -> None:
        # `tls` (a CA bundle, say) wins; `verify_tls` alone is the short form of TlsPolicy(verify=...).
        self._tls = tls if tls is not None else TlsPolicy(verify=verify_tls)
        self._warned_rest = False
        self._timeout = request_timeout
        self._max_frame = max_frame
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Transport:
        self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # No cookie jar: nothing here is a browser session, and cookies could carry auth.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise TransportError("the transport is not open")
        return self._session

    async def request(self, base_url: str, request: RequestLike, *, label: str) -> HttpReply:
        """Send one REST request to `base_url` + `request.path`; any status is a reply, not an error."""
        session = self._require_session()
        url = base_url.rstrip("/") + request.path
        if not self._warned_rest:  # REST connections are pooled: warn at the first, not at every request
            self._warned_rest = True
            self._tls.before_connect(url, label)
        with _converted(label):
            async with session.request(
                request.method,
                url,
                headers=dict(request.headers),
                data=request.body or None,
                ssl=self._tls.context(),
                allow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > self._max_frame:  # a REST reply here is a few dozen bytes
                        raise FrameDecodeError(f"{label}: reply larger than {self._max_frame} bytes")
                return HttpReply(status=response.status, body=bytes(body), headers=response.headers.copy())

    async def websocket(self, url: str, headers: Mapping[str, str], *, label: str) -> WebSocket:
        """Open a WebSocket. Protocol-level pings and close frames are handled by `WebSocket`, not aiohttp,
        so that every frame counts as a sign of life and a graceful close can drain."""
        session = self._require_session()
        self._tls.before_connect(url, label)
        with _converted(label):
            ws = await session.ws_connect(
                url,
                headers=dict(headers),
                ssl=self._tls.context(),
                autoping=False,
                autoclose=False,
                max_msg_size=self._max_frame,
                # ws_close bounds how long aiohttp waits for the peer's close frame in `abort`; a graceful
                # close waits in `receive` instead, under the caller's own timeout.
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_ABORT_WAIT),
            )
        return WebSocket(ws, label=label)


class WebSocket:
    """One open WebSocket. One task receives; any task may send or close."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, label: str) -> None:
        self._ws = ws
        self._label = label
        self._closing = False

    @property
    def label(self) -> str:
        return self._label

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def receive(self) -> str | bytes | SignOfLife:
        """The next frame. Raises `PeerClosedError` when the connection is closed or broken."""
        with _converted(self._label):
            message = await self._ws.receive()
        kind = message.type
        if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
            data: str | bytes = message.data
            return data
        if kind is aiohttp.WSMsgType.PING:
            await self._send_safely(lambda: self._ws.pong(message.data))
            return SIGN_OF_LIFE
        if kind is aiohttp.WSMsgType.PONG:
            return SIGN_OF_LIFE
        if kind is aiohttp.WSMsgType.CLOSE:
            code: int | None = message.data
            reason = message.extra if isinstance(message.extra, str) else ""
            await self.abort()
            shown = f" {reason!r}" if reason else ""
            raise PeerClosedError(
                f"{self._label}: closed by the server with code {code}{shown}",
                code=code,
                reason=reason,
            )
        # CLOSED, CLOSING, ERROR: the connection broke without a close frame, or was aborted locally.
        await self.abort()
        code = self._ws.close_code
        raise PeerClosedError(f"{self._label}: connection lost", code=code)

    async def send_text(self, text: str) -> None:
        with _converted(self._label):
            try:
                await self._ws.send_str(text)
            except RuntimeError:  # aiohttp: "websocket connection is closing"
                raise ConnectionLostError(f"{self._label}: connection is closing") from None

    async def ping(self, payload: bytes = b"") -> None:
        with _converted(self._label):
            await self._ws.ping(payload)

    async def begin_close(self, code: int = 1000, reason: str = "") -> None:
        """Send our close frame and return; the receiver keeps reading until the peer's close frame, so
        every frame the peer sent before it saw ours is still delivered."""
        if self._closing or self._ws.closed:
            return
        self._closing = True
        payload = _CLOSE_CODE.pack(code) + reason.encode()[:123]
        await self._send_safely(lambda: self._ws.send_frame(payload, aiohttp.WSMsgType.CLOSE))

    async def abort(self) -> None:
        """Close at once, without waiting for the peer. Safe to call repeatedly and from any task."""
        if self._ws.closed:
            return
        # aiohttp waits at most _ABORT_WAIT for the peer's close frame (ws_close); wait_for guards the rest.
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError, RuntimeError):
            await asyncio.wait_for(self._ws.close(code=1000), timeout=2 * _ABORT_WAIT)

    async def _send_safely(self, send: Callable[[], Awaitable[None]]) -> None:
        # A failed send is not reported here: the receiver will see the connection end and say why.
        with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
            await send()
