"""Stalled /events readers against the gateway (issue 13): what they hold, and for how long.

    PYTHONPATH=src python bench/sse_stall.py [--readers 100] [--events 20000]

Runs `userstream serve` and a gateway (one account) in this process, opens N readers of the gateway's
/events that never read (4 KiB receive buffers), publishes events through the gateway's hub as its streams
would, and reports, right after and 12 s later: the hub's subscribers, the gateway's subscribers dropped
and disconnected, the sockets of this process that are the gateway's side of those readers (counted from
/proc/self/fd and /proc/net/tcp against the API's port), and their unsent bytes in the kernel. Run with
PYTHONPATH at an older checkout to compare (its config has no sse_write_timeout: left at the default).
Not a test: figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from decimal import Decimal
from typing import Any

from userstream.events import BalanceUpdate, Exchange
from userstream.gateway import Gateway, parse_config
from userstream.server import Account, ServerConfig, running_server

TOKEN = "bench-sse-token"


def server_side(port: int) -> tuple[int, int]:
    """(sockets whose local port is the API's, other than the listener; their unsent bytes in total)."""
    count = unsent = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            state = fields[3]
            if local_port == port and state != "0A":  # 0A: LISTEN
                count += 1
                unsent += int(fields[4].split(":")[0], 16)
    return count, unsent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    account = Account(name="bench", uid=1, coinlocally_token=TOKEN)
    config = ServerConfig(accounts=(account,), port=0)
    async with running_server(config) as server:
        document: dict[str, Any] = {
            "gateway": {"http_port": 0},
            "accounts": [
                {
                    "name": "bench-coinlocally",
                    "exchange": "coinlocally",
                    "token_env": "BENCH_TOKEN",
                    "ws_url": server.ws_url + "/spotws_user/userData/ws",
                    "resync": False,
                }
            ],
        }
        gateway = Gateway(parse_config(document), environ={"BENCH_TOKEN": TOKEN})
        async with gateway:
            assert gateway.http_url is not None
            port = int(gateway.http_url.rsplit(":", 1)[1])
            readers = []
            for _ in range(args.readers):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                readers.append(sock)
            while gateway.hub.subscribers < args.readers:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            hub = gateway.hub
            for n in range(args.events):
                hub.publish(
                    BalanceUpdate(
                        exchange=Exchange.COINLOCALLY,
                        account="bench-coinlocally",
                        timestamp=1_700_000_000_000 + n,
                        asset="USDT",
                        free=Decimal(n),
                        locked=Decimal(0),
                    )
                )
                if n % 200 == 0:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(1.0)
            report: dict[str, Any] = {"readers": args.readers, "events": args.events}

            def snapshot(label: str) -> None:
                sockets, unsent = server_side(port)
                report[label] = {
                    "subscribers": hub.subscribers,
                    "dropped_subscribers": hub.dropped_subscribers,
                    "disconnected_subscribers": getattr(hub, "stalled_subscribers", None),
                    "gateway_side_sockets": sockets,
                    "unsent_kernel_bytes": unsent,
                    "process_descriptors": len(os.listdir("/proc/self/fd")),
                }

            snapshot("after_1s")
            await asyncio.sleep(12.0)
            snapshot("after_13s")
            for sock in readers:
                sock.close()
            print(json.dumps(report, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
