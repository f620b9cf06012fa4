"""Print alice's Bitmusa events from a local `userstream serve --accounts examples/accounts.toml`.

Run: python examples/stream_bitmusa.py [BASE_URL]   (default http://127.0.0.1:8765)
"""

import asyncio
import sys

import userstream
from userstream.eventjson import to_json


async def main(base_url: str) -> None:
    async with userstream.connect(
        "bitmusa",
        api_key="alice-bitmusa-api-key-example",
        auth_key="alice-bitmusa-auth-key-example",
        rest_url=base_url,
        ws_url=base_url.replace("http", "ws", 1),
        account="alice",
        on_status=lambda status: print("status:", status.describe(), file=sys.stderr),
    ) as stream:
        async for event in stream:
            print(to_json(event).decode(), flush=True)  # the docs/events.md JSON form


try:
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765"))
except KeyboardInterrupt:  # Ctrl-C: the stream is closed on the way out; no traceback
    sys.exit(130)
