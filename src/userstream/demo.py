"""`make demo`: the exchange emulator with a simulated market, and the client on both of its exchanges.

It starts `userstream serve`'s app in-process with `--simulate`, connects one client stream per exchange for
the generated demo account, and prints what arrives: JSONL (the docs/events.md contract) when stdout is not a
terminal, a readable line per event on a terminal. It stops after `--duration` seconds, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from userstream.client import StatusEvent, UserStream, connect
from userstream.client.command import format_pretty
from userstream.eventjson import to_json
from userstream.server.config import ServerConfig, demo_account
from userstream.server.run import running_server

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="userstream-demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="simulated events per second")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (replayable runs)")
    parser.add_argument("--format", choices=["jsonl", "pretty"], default=None)
    args = parser.parse_args(argv)
    if args.format is None:
        args.format = "pretty" if sys.stdout.isatty() else "jsonl"
    if args.duration is None and not sys.stdout.isatty():
        args.duration = 5.0  # a pipe or CI: a bounded run, never a hang
    return args


async def _pump(stream: UserStream, pretty: bool) -> None:
    async for event in stream:
        line = format_pretty(event) if pretty else to_json(event).decode()
        print(line, flush=True)


async def demo(args: argparse.Namespace) -> int:
    account = demo_account()
    config = ServerConfig(
        host="127.0.0.1", port=0, accounts=(account,), simulate_rate=args.rate, seed=args.seed
    )
    pretty = args.format == "pretty"

    def status(event: StatusEvent) -> None:
        print(f"[status] {event.describe()}", file=sys.stderr, flush=True)

    async with running_server(config) as server:
        print(f"[demo] emulator on {server.base_url}, simulating {args.rate:g} events/s", file=sys.stderr)
        bitmusa = connect(
            "bitmusa",
            api_key=account.bitmusa_api_key,
            auth_key=account.bitmusa_auth_key,
            rest_url=server.base_url,
            ws_url=server.ws_url,
            account=account.name,
            on_status=status,
        )
        coinlocally = connect(
            "coinlocally",
            token=account.coinlocally_token,
            ws_url=server.ws_url + "/spotws_user/userData/ws",
            account=account.name,
            on_status=status,
        )
        async with bitmusa, coinlocally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration), asyncio.TaskGroup() as group:
                    group.create_task(_pump(bitmusa, pretty))
                    group.create_task(_pump(coinlocally, pretty))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return asyncio.run(demo(args))
    except KeyboardInterrupt:
        return 0
    except BaseExceptionGroup as group:
        broken_pipe, rest = group.split(BrokenPipeError)
        if broken_pipe is None or rest is not None:
            raise
        # `make demo | head`: the reader left, which is not an error; silence the final flush too.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
