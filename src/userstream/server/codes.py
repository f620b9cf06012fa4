"""serve's own error codes: where the documents name none, ours (HTTP status * 1000 + n, Bitmusa's scheme).

The handshake routes (app.py), the REST routes (bitmusa_routes.py, coinlocally_routes.py) and the throttle
of failed authentications (limits.py) answer with them; docs/server.md lists them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BITMUSA_ERR_UNAVAILABLE",
    "COINLOCALLY_ERR_AUTH_THROTTLED",
    "COINLOCALLY_ERR_BAD_REQUEST",
    "COINLOCALLY_ERR_SUB_REJECTED",
    "COINLOCALLY_ERR_TOO_MANY_CONNECTIONS",
    "COINLOCALLY_ERR_UNAUTHORIZED",
    "COINLOCALLY_ERR_UNAVAILABLE",
]

#: Coinlocally documents no error codes; ours follow Bitmusa's numbering (HTTP status * 1000 + n).
COINLOCALLY_ERR_BAD_REQUEST: Final = 400001
COINLOCALLY_ERR_UNAUTHORIZED: Final = 401001
COINLOCALLY_ERR_SUB_REJECTED: Final = 401002
#: The shared store (Redis) of a multi-node deployment cannot be reached: this node refuses (HTTP 503).
BITMUSA_ERR_UNAVAILABLE: Final = 503001
COINLOCALLY_ERR_UNAVAILABLE: Final = 503001
COINLOCALLY_ERR_TOO_MANY_CONNECTIONS: Final = 429002
#: A Coinlocally handshake refused for too many failed authentications from its address.
COINLOCALLY_ERR_AUTH_THROTTLED: Final = 429003
