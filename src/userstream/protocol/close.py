"""WebSocket close codes and reasons that `userstream serve` sends and the client interprets.

Neither exchange documents its close codes, so these are ours (docs/server.md). Codes 4000-4999 are the
range RFC 6455 leaves to applications. The client's reconnect policy keys off them: a lapsed or deleted
listenKey means "get a new key first"; a rejected sub means "fatal, do not retry".
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "is_fatal", "needs_new_listen_key"]


class CloseCode(IntEnum):
    NORMAL = 1000  # the client asked to close
    GOING_AWAY = 1001  # the server is shutting down
    POLICY = 1008  # a frame the server will not accept (too large, malformed)
    MAX_AGE = 4000  # the connection reached --max-connection-age (the documented 24 h cut)
    LISTEN_KEY_EXPIRED = 4001  # Bitmusa: the listenKey's validity lapsed
    LISTEN_KEY_DELETED = 4002  # Bitmusa: the listenKey was closed with DELETE
    HEARTBEAT_TIMEOUT = 4003  # Coinlocally: no ping within --heartbeat-timeout
    SUB_REJECTED = 4004  # Coinlocally: the sub frame's token did not match the handshake credential
    SLOW_CONSUMER = 4005  # the server's bounded send buffer for this connection filled up


def needs_new_listen_key(code: int | None) -> bool:
    return code in (CloseCode.LISTEN_KEY_EXPIRED, CloseCode.LISTEN_KEY_DELETED)


def is_fatal(code: int | None) -> bool:
    """A close that retrying with the same credentials cannot fix."""
    return code == CloseCode.SUB_REJECTED
