"""serve's own error codes: where the documents name none, ours (HTTP status * 1000 + n, Bitmusa's scheme).

The handshake routes (app.py), the REST routes (bitmusa_routes.py, coinlocally_routes.py) and the throttle
of failed authentications (limits.py) answer with them; docs/server.md lists them.
"""

from __future__ import annotations

from typing import Final

from userstream.protocol import bitmusa_server, coinlocally_server

__all__ = [
    "BITMUSA_ERR_UNAVAILABLE",
    "COINLOCALLY_ERR_AUTH_THROTTLED",
    "COINLOCALLY_ERR_BAD_REQUEST",
    "COINLOCALLY_ERR_SUB_REJECTED",
    "COINLOCALLY_ERR_TOO_MANY_CONNECTIONS",
    "COINLOCALLY_ERR_UNAUTHORIZED",
    "COINLOCALLY_ERR_UNAVAILABLE",
]

#: Coinlocally documents no error codes; ours follow Bitmusa's numbering (HTTP status * 1000 + n). Those of
#: a stream's handshake and conversation are its server session's (protocol/*_server.py), named here too.
COINLOCALLY_ERR_BAD_REQUEST: Final = coinlocally_server.ERR_BAD_REQUEST
COINLOCALLY_ERR_UNAUTHORIZED: Final = coinlocally_server.ERR_UNAUTHORIZED
COINLOCALLY_ERR_SUB_REJECTED: Final = coinlocally_server.ERR_SUB_REJECTED
#: The shared store (Redis) of a multi-node deployment cannot be reached: this node refuses (HTTP 503).
BITMUSA_ERR_UNAVAILABLE: Final = bitmusa_server.ERR_UNAVAILABLE
COINLOCALLY_ERR_UNAVAILABLE: Final = coinlocally_server.ERR_UNAVAILABLE
COINLOCALLY_ERR_TOO_MANY_CONNECTIONS: Final = coinlocally_server.ERR_TOO_MANY_CONNECTIONS
#: A Coinlocally handshake refused for too many failed authentications from its address.
COINLOCALLY_ERR_AUTH_THROTTLED: Final = 429003
