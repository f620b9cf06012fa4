"""Every exception userstream raises, under one root, split by what the caller does next.

The tree::

    UserStreamError                    root: catch this to catch everything of ours
    ├── ConfigurationError             fatal: bad arguments, config file or endpoint; fix and restart
    ├── AuthenticationError            fatal: the exchange rejected a credential (`rejected` names which)
    ├── TransportError                 retryable: the connection or the peer is (temporarily) unusable
    │   ├── RateLimitedError           retryable after `retry_after` seconds when the peer said so
    │   ├── ListenKeyInvalidError      retryable: the listenKey lapsed or was deleted; get a new one
    │   ├── EndpointNotFoundError      retryable once live; on a never-live stream a wrong URL (HTTP 404)
    │   └── ConnectionLostError        retryable: closed, dead (idle), or a SYSTEM close notice
    └── ProtocolError                  a broken promise of the wire protocol
        ├── RemoteProtocolError        the peer sent something we cannot accept (retryable by policy)
        │   ├── FrameDecodeError       bytes that do not decode (gzip, UTF-8, JSON, size)
        │   ├── MessageShapeError      decoded JSON of the wrong shape, type or range; `field` names it
        │   └── ExchangeError          a REST reply with a non-zero `code` that is neither auth nor limit
        └── LocalProtocolError         we (or the caller) misused the protocol API

Third-party exceptions (zlib, msgspec, aiohttp) are converted into these at the boundary where they occur,
so none leak into the public API. Messages never contain secrets: credentials are named, never shown.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConnectionLostError",
    "EndpointNotFoundError",
    "ExchangeError",
    "FrameDecodeError",
    "ListenKeyInvalidError",
    "LocalProtocolError",
    "MessageShapeError",
    "ProtocolError",
    "RateLimitedError",
    "RemoteProtocolError",
    "TransportError",
    "UserStreamError",
]


class UserStreamError(Exception):
    """The root of every userstream exception."""


class ConfigurationError(UserStreamError):
    """Bad arguments, configuration or endpoints. Fatal: retrying cannot help."""


class AuthenticationError(UserStreamError):
    """The exchange rejected a credential. Fatal: retrying with the same credential is a retry storm.

    `rejected` names what was rejected ("api key", "listenKey request", "sub token"), never its value.
    """

    def __init__(self, message: str, *, rejected: str, status: int | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.status = status


class TransportError(UserStreamError):
    """The connection or the peer is unusable for now. Retryable with backoff."""


class RateLimitedError(TransportError):
    """The peer asked us to slow down; `retry_after` is its hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ListenKeyInvalidError(TransportError):
    """The listenKey is unknown, expired or deleted: create a new one and reconnect."""


class EndpointNotFoundError(TransportError):
    """The server answered HTTP 404 where an endpoint was expected (a REST call or a WebSocket handshake).

    `url` is where the request went (scheme, host, port and path: no query string, no listenKey) and
    `expected` the path the client expected to find there. A stream that was live before treats it as
    transient (exchanges redeploy); one that never was stops after `auth_attempts` in a row with a
    ConfigurationError naming both.
    """

    def __init__(self, message: str, *, url: str, expected: str) -> None:
        super().__init__(message)
        self.url = url
        self.expected = expected


class ConnectionLostError(TransportError):
    """The stream ended: closed by the peer, found dead (idle), or announced by a SYSTEM close notice."""


class ProtocolError(UserStreamError):
    """A broken promise of the wire protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


class FrameDecodeError(RemoteProtocolError):
    """Bytes that do not decode: truncated or corrupt gzip, bad UTF-8, not JSON, or too large."""


class MessageShapeError(RemoteProtocolError):
    """Well-formed JSON of the wrong shape, type or range. `field` is a JSON path such as `$.data.price`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ExchangeError(RemoteProtocolError):
    """A REST reply whose `code` is non-zero for a reason other than authentication or rate limits."""

    def __init__(self, message: str, *, code: int | None, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class LocalProtocolError(ProtocolError):
    """The protocol API was misused by the caller (for example, rendering an event for the wrong exchange)."""
