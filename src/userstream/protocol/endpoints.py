"""Where each exchange's endpoints are, however the user wrote the URL, and how a URL may be shown. Sans-I/O.

Users write an endpoint either as a base (`ws://h:p`) or as the full URL of the stream
(`ws://h:p/ws/spot`, `wss://h/spotws_user/userData/ws`, `https://h/spot/userDataStream`), with or without a
trailing slash, for either exchange. This module owns turning any of those into what the client needs, so
that no path segment is ever doubled (docs/client.md, "Endpoints"):

- `bitmusa_ws_base(url)`: the base to which `/ws/spot/<listenKey>` is appended;
- `bitmusa_rest_base(url)`: the base to which `/spot/userDataStream` (and the snapshot paths) are appended;
- `coinlocally_ws_url(url)`: the full WebSocket URL (the document's path appended to a bare host);
- `join(base, path)`: a path appended to a base, before the base's query string if it has one;
- `shown(url)`: a URL as it may appear in errors and status reasons: scheme, host, port and path, never a
  query string or user info (either may carry a credential).

A path that ends in either exchange's documented stream path is read as its base plus that path (so one
emulator URL serves both); any other path is kept as the user wrote it: a base with a prefix for Bitmusa
(`https://proxy/bitmusa` + `/spot/userDataStream`), the full URL for Coinlocally. Query strings are kept.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "BITMUSA_REST_PATH",
    "BITMUSA_WS_PATH",
    "COINLOCALLY_WS_PATH",
    "bitmusa_rest_base",
    "bitmusa_ws_base",
    "coinlocally_ws_url",
    "join",
    "shown",
]

# The documents' paths. protocol.bitmusa and protocol.coinlocally own them; they are repeated here (and a
# test checks they agree) so that this module needs neither exchange module.
BITMUSA_WS_PATH: Final = "/ws/spot"
BITMUSA_REST_PATH: Final = "/spot/userDataStream"
COINLOCALLY_WS_PATH: Final = "/spotws_user/userData/ws"
_STREAM_PATHS: Final = (BITMUSA_WS_PATH, COINLOCALLY_WS_PATH)


def bitmusa_ws_base(url: str) -> str:
    """The base of a Bitmusa WebSocket URL: `ws://h:p`, `ws://h:p/ws/spot[/]`, `ws://h:p/ws/spot/<key>`,
    Coinlocally's `ws://h:p/spotws_user/userData/ws` all give `ws://h:p`."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    marker = path.find(BITMUSA_WS_PATH + "/")
    if marker >= 0:  # a URL with a listenKey in it: the key is per session, never configured
        path = path[:marker]
    return _with_path(parts, _strip_suffix(path, _STREAM_PATHS))


def bitmusa_rest_base(url: str) -> str:
    """The base of a Bitmusa REST URL: `https://h` and `https://h/spot/userDataStream[/]` give `https://h`."""
    parts = urlsplit(url)
    return _with_path(parts, _strip_suffix(parts.path.rstrip("/"), (BITMUSA_REST_PATH,)))


def coinlocally_ws_url(url: str) -> str:
    """The full Coinlocally WebSocket URL: the document's path appended to a bare host (or to a URL that
    ends in Bitmusa's stream path), the URL as written otherwise, without a trailing slash."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith(COINLOCALLY_WS_PATH):
        return _with_path(parts, path)
    base = _strip_suffix(path, (BITMUSA_WS_PATH,))
    if base != path or not path:
        return _with_path(parts, base + COINLOCALLY_WS_PATH)
    return _with_path(parts, path)


def join(base: str, path: str) -> str:
    """`base` with `path` appended to its path (before its query string, if it has one)."""
    parts = urlsplit(base)
    return _with_path(parts, parts.path.rstrip("/") + path)


def shown(url: str) -> str:
    """`url` without its query string, fragment and user info: what errors and status reasons may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _strip_suffix(path: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if path.endswith(suffix):
            return path[: -len(suffix)].rstrip("/")
    return path


def _with_path(parts: SplitResult, path: str) -> str:
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
