"""The trader side: `connect()` gives a `UserStream` of one account's events that never stops silently.

This package owns the asyncio runtime of the client. The wire of each exchange belongs to
`userstream.protocol`; here are the supervisor (`stream`), its options and the rules between them
(`options`), the exchange sessions (`bitmusa`, `coinlocally`), one connection's reader and heartbeat
(`connection`), the one aiohttp boundary (`transport`), and the pure pieces they are built from
(`backoff`, `dedupe`, `queue`, `status`).
The `userstream watch` command lives in `command`.
"""

from userstream.client.queue import Overflow
from userstream.client.status import State, StatusEvent
from userstream.client.stream import StreamOptions, StreamStats, UserStream, connect, run

__all__ = [
    "Overflow",
    "State",
    "StatusEvent",
    "StreamOptions",
    "StreamStats",
    "UserStream",
    "connect",
    "run",
]
