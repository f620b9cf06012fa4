"""The trader side: `connect()` gives a `UserStream` of one account's events that never stops silently.

This package owns the asyncio runtime of the client. The wire of each exchange belongs to
`userstream.protocol`; here are the entry points (`entry`: `connect()`, `run()`), the supervisor
(`supervisor`), the stream's options and the rules between them (`options`), one account's runtime (`session`;
`runtimes` picks `listen_key` or `header_auth` by how the registry says the exchange's stream is opened), one
connection's reader and heartbeat (`connection`), the one entrance to the queue (`intake`), resync after a gap
(`resync`) and the user's side of the iterator (`delivered`), the I/O boundary (`transport`, holding `rest` on
aiohttp and `websocket` on picows), and the pure pieces they are built from (`backoff`: the one retry policy,
`dedupe`, `queue`, `status`).
The `userstream watch` command lives in `command`.
"""

from userstream.client.entry import connect, run
from userstream.client.options import StreamOptions
from userstream.client.queue import Overflow
from userstream.client.status import State, StatusEvent, StreamStats
from userstream.client.supervisor import UserStream

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
