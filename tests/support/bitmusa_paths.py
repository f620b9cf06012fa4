"""What a Bitmusa server reads back from a request: the inverses of protocol/bitmusa.py's tables.

serve routes with aiohttp (one route per method of `LISTEN_KEY_PATH`, and `WS_PATH_PREFIX + "{listen_key}"`),
so the product never needs these; the tests use them to check that `ENDPOINTS` and `ws_path` say what a
server can read back, exactly and unambiguously.
"""

from __future__ import annotations

from urllib.parse import unquote

from userstream.protocol.bitmusa import ENDPOINTS, WS_PATH_PREFIX, ListenKeyAction

__all__ = ["listen_key_action", "listen_key_from_ws_path"]

_ACTION_BY_ENDPOINT = {endpoint: action for action, endpoint in ENDPOINTS.items()}


def listen_key_action(method: str, path: str) -> ListenKeyAction | None:
    """Which listenKey action an incoming request asks for, or None."""
    return _ACTION_BY_ENDPOINT.get((method.upper(), path))


def listen_key_from_ws_path(path: str) -> str | None:
    """The listenKey a client's WebSocket path names, or None when it names none."""
    if not path.startswith(WS_PATH_PREFIX):
        return None
    quoted = path[len(WS_PATH_PREFIX) :]
    if not quoted or "/" in quoted:  # a stream path has exactly one segment after the prefix
        return None
    return unquote(quoted)
