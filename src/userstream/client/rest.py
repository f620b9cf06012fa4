"""The client's REST calls: one aiohttp session, a reply as status, body and headers, and error conversion.

This module owns the HTTP half of the client's I/O boundary. `RestClient` turns a protocol module's
`HttpRequest` (anything `RequestLike`) into an `HttpReply` (status, body and headers, nothing parsed:
parsing is the protocol module's job) with one `aiohttp.ClientSession`, made at the first request (a
Coinlocally stream never makes one). A reply's body is bounded by `max_frame`. `HttpReply.retry_after` reads
the server's `Retry-After` hint (seconds), and `carrying_retry_after` puts it on the `RateLimitedError` a
protocol module raises judging that reply, so the one retry policy honours it (`client/backoff.py`).

Every aiohttp, OS and timeout exception is converted here (`_converted`) into our error tree (the pattern
of httpx's `map_httpcore_exceptions`), with messages built from the caller's `label` and the exception's
class, never the library's own text, which can quote the full URL. `check_url` refuses an unusable
configured endpoint before anything connects. The WebSocket half is `client/websocket.py`; the stream's
`Transport` (`client/transport.py`) holds one of each.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from userstream.client.tls import TlsPolicy, uses_tls
from userstream.errors import (
    ConfigurationError,
    ConnectionLostError,
    FrameDecodeError,
    RateLimitedError,
    TransportError,
)
from userstream.protocol.snapshot import RequestLike

__all__ = [
    "HttpReply",
    "RequestLike",
    "RestClient",
    "carrying_retry_after",
    "check_url",
    "retry_after_header",
]


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """The seconds a `Retry-After` header asks for (its delta-seconds form), None without a usable one."""
    text = headers.get("Retry-After", "")
    return float(text) if text.isascii() and text.isdigit() else None


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    #: case-insensitive; not part of equality (`userstream doctor` reads `Date` for its clock check)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def retry_after(self) -> float | None:
        """The server's `Retry-After` hint in seconds, when it gave one."""
        return retry_after_header(self.headers)


@contextmanager
def carrying_retry_after(reply: HttpReply) -> Iterator[None]:
    """A `RateLimitedError` raised inside (a protocol module judging `reply`, which sees only its status
    and body) leaves carrying the reply's `Retry-After`, so that the retry policy can honour it."""
    try:
        yield
    except RateLimitedError as exc:
        if exc.retry_after is None:
            exc.retry_after = reply.retry_after
        raise


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


class RestClient:
    """The REST calls of one stream: one aiohttp session, made at the first request, closed by `close()`."""

    def __init__(self, *, tls: TlsPolicy, request_timeout: float, max_frame: int) -> None:
        self._tls = tls
        self._timeout = request_timeout
        self._max_frame = max_frame
        self._warned = False
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        """The REST session, made at the first request: an HTTP client session with its connector is tens
        of KiB, and a stream that never calls REST (Coinlocally's) should not pay for one."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # No cookie jar: nothing here is a browser session, and cookies could carry auth.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def request(self, base_url: str, request: RequestLike, *, label: str) -> HttpReply:
        """Send one REST request to `base_url` + `request.path`; any status is a reply, not an error."""
        session = self._require_session()
        url = base_url.rstrip("/") + request.path
        if not self._warned:  # REST connections are pooled: warn at the first, not at every request
            self._warned = True
            self._tls.before_connect(url, label)
        with _converted(label):
            async with session.request(
                request.method,
                url,
                headers=dict(request.headers),
                data=request.body or None,
                # The context only for https:// (made at the first TLS connection; http:// needs none).
                ssl=self._tls.context() if uses_tls(url) else True,
                allow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > self._max_frame:  # a REST reply here is a few dozen bytes
                        raise FrameDecodeError(f"{label}: reply larger than {self._max_frame} bytes")
                return HttpReply(status=response.status, body=bytes(body), headers=response.headers.copy())
