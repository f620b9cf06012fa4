"""Print alice's Coinlocally events, each fill right after its order update, without asyncio.

Run: python examples/stream_sync.py [WS_URL]   (default ws://127.0.0.1:8765/spotws_user/userData/ws)
"""

import os
import sys

import userstream
from userstream.eventjson import to_json

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/spotws_user/userData/ws"
token = os.environ.get("USERSTREAM_COINLOCALLY_TOKEN", "alice-coinlocally-token-example")
with userstream.sync.connect("coinlocally", token=token, ws_url=url, account="alice", fills=True) as stream:
    for event in stream:  # BalanceUpdate, OrderUpdate, and each Fill right after its update
        print(to_json(event).decode(), flush=True)
