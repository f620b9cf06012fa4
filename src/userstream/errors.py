"""Every exception userstream raises, under one root, split by what the caller does next.

The tree: each class, the module that defines it (under userstream/), and what raises it. The classes
this module defines are the public ones (also exported by `userstream`); the others are defined where
they are raised, beside the code that gives them their extra fields. tests/test_errors.py holds this
drawing to the code: the exact set of exception classes in the package, each class's bases (a second
base is named "also ..."), and its module::

    UserStreamError                          errors.py            root: catch this to catch all of ours
    ├── ConfigurationError                   errors.py            fatal: bad arguments, config file or
    │   │                                                         endpoint; fix and restart (config
    │   │                                                         loaders, commands, client options)
    │   └── LedgerNotKeptError               server/run.py        (also RuntimeError) serve: `sent` read
    │                                                             on a server started without
    │                                                             `ServerConfig(ledger=True)`
    ├── AuthenticationError                  errors.py            fatal: the exchange rejected a credential
    │                                                             (`rejected` names which); REST replies,
    │                                                             handshake refusals, sub refusals
    ├── TransportError                       errors.py            retryable: the connection or the peer is
    │   │                                                         (temporarily) unusable; the transport,
    │   │                                                         REST replies without a usable body, sinks
    │   ├── RateLimitedError                 errors.py            retryable after `retry_after` seconds
    │   │                                                         when the peer said so (REST 429; its
    │   │                                                         Retry-After is put on by client/rest.py)
    │   ├── ListenKeyInvalidError            errors.py            retryable: the listenKey lapsed or was
    │   │   │                                                     deleted (Bitmusa close 4001/4002, REST)
    │   │   └── KeyOrEndpointNotFoundError   protocol/bitmusa_client.py  (also EndpointNotFoundError) a
    │   │                                                         Bitmusa stream handshake answered 404: a
    │   │                                                         lapsed key or a wrong URL, the stream
    │   │                                                         decides
    │   ├── EndpointNotFoundError            errors.py            retryable once live; on a never-live
    │   │                                                         stream a wrong URL (HTTP 404)
    │   ├── ConnectionLostError              errors.py            retryable: closed, dead (idle), or a
    │   │   │                                                     SYSTEM close notice; cannot connect
    │   │   └── PeerClosedError              client/websocket.py  the WebSocket closed: the peer's `code`
    │   │                                                         and `reason`, or None when it broke
    │   ├── HandshakeRejectedError           client/websocket.py  the WebSocket upgrade was answered with
    │   │                                                         HTTP `status`; the exchange's client
    │   │                                                         module says what that status means;
    │   │                                                         `retry_after` when a 429/418 said
    │   ├── BackendUnavailableError          server/backend/interface.py  serve: the listenKey
    │   │                                                         store / fan-out (Redis) is unreachable;
    │   │                                                         HTTP 503
    │   └── SinkUnwritableError              sinks/base.py        a sink's file or database cannot be
    │                                                             written (read-only, gone); the runner
    │                                                             reports the sink down at once
    ├── ProtocolError                        errors.py            a broken promise of the wire protocol
    │   ├── RemoteProtocolError              errors.py            the peer sent something we cannot
    │   │   │                                                     accept (retryable by policy)
    │   │   ├── FrameDecodeError             errors.py            bytes that do not decode (gzip, UTF-8,
    │   │   │                                                     JSON, size): protocol/codec.py, parsers
    │   │   ├── MessageShapeError            errors.py            decoded JSON of the wrong shape, type or
    │   │   │                                                     range; `field` names it (parsers,
    │   │   │                                                     eventjson.py, resync snapshots)
    │   │   └── ExchangeError                errors.py            a REST reply with a non-zero `code`
    │   │                                                         that is neither auth nor limit
    │   └── LocalProtocolError               errors.py            we (or the caller) misused the protocol
    │       │                                                     API: rendering an event a dialect cannot
    │       │                                                     carry, a sink used before open
    │       ├── IngestError                  server/ingest.py     serve: an admin batch or `ingest()` is
    │       │                                                     refused whole; `status` is the HTTP status
    │       └── RenderError                  server/render.py     serve: an event of a batch cannot be
    │                                                             rendered in a dialect (`index`,
    │                                                             `exchange`); serve answers IngestError 422
    └── FaultError                           server/faults.py     (also ValueError) serve: a fault cannot be
                                                                  fired as asked (`POST /admin/faults`,
                                                                  `inject()`); `status` is the HTTP status

Private signals: control flow that never leaves the code that raises it, so not an error and not under
the root::

    _Stop                                    client/supervisor.py the supervisor's "stop with this error",
                                                                  caught by its own run loop
    QueueClosed                              client/queue.py      the event queue is closed and drained; the
                                                                  stream's iterator ends on it
    _WriteTimeoutError                       gateway/http.py      a slow HTTP client's write timed out; the
                                                                  server drops that connection

Builtin exceptions are raised on purpose, and only, for a programming error in the calling code, never for
bad input from a file, a flag, the network or an exchange (the code that meets such input converts them
into the tree above): ValueError for an argument out of its range (a constructor's bound such as `rate`,
`capacity` or `max_connections`, a money value beyond money.py's bounds, `AccountSnapshot.of` given an
asset or an order twice; values from a config file or a flag are checked before, as ConfigurationError),
TypeError for an argument of the wrong type, RuntimeError for a lifecycle misuse (a stream or a gateway
started twice, a stream used before it starts), KeyError for an unknown name in a lookup by name
(`testing`'s and serve's `account(name)`), ZeroDivisionError from `money.exact_div`, NotImplementedError
for an abstract method, AssertionError for a state that cannot be reached, and StopIteration /
StopAsyncIteration to end an iteration. Command-line type checkers raise argparse.ArgumentTypeError
(argparse turns it into a usage message and exit status 2), and the pytest plugin pytest.UsageError for
its own bad options.

Third-party exceptions (zlib, msgspec, aiohttp, picows, redis) are converted into these at the boundary
where they occur, so none leak into the public API. Messages never contain secrets: credentials are named,
never shown.
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
