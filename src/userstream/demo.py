"""`make demo`: the exchange emulator's simulated market, a gateway on both of its exchanges, and a live view.

It starts `userstream serve --simulate` in-process (one generated demo account), then a `Gateway` streaming
that account on Bitmusa and on Coinlocally (credentials handed over in the gateway's environment mapping,
exactly as `userstream gateway` reads them), with its HTTP API on a free port. Then:

- on a terminal: a dashboard (balances, open orders, recent fills, events per second, connection state,
  reconnects, resyncs), redrawn about four times a second until Ctrl-C. Every `--drop-every` seconds (20 by
  default) the emulator cuts the account's connections, to show the reconnects and the snapshot resyncs
  that follow;
- otherwise (a pipe, CI): every event the gateway processes, fills included, as one docs/events.md JSON
  line on stdout, for `--duration` seconds (5 by default), then exit 0. Status lines go to stderr.

This module owns the demo's flags and its wiring; the pieces are the library's (`running_server`,
`Gateway`, `dashboard`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from userstream.clihelp import parser_texts
from userstream.gateway.app import Gateway
from userstream.gateway.config import DEFAULT_DATA_DIR, GatewayConfig, parse_config
from userstream.gateway.dashboard import LogTail, run_dashboard
from userstream.gateway.sse import Subscription
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.registry import REGISTRY, ExchangeSpec
from userstream.server.config import Account, ServerConfig, credential_key, demo_account
from userstream.server.run import ServerHandle, running_server
from userstream.server.simulator import INSTRUMENTS
from userstream.sinks.config import parse_sink

__all__ = ["add_parser", "demo_gateway_config", "main", "run"]

_log = logging.getLogger("userstream.demo")
_PROG = "userstream demo"
_PRINTER_CAPACITY = (
    1_000_000  # events the JSONL printer may fall behind before it is dropped (never, in a demo)
)


def add_parser(subparsers: Any) -> None:
    """`userstream demo` (`python -m userstream.demo` is the same command)."""
    _add_arguments(
        subparsers.add_parser("demo", help="the emulator and a gateway on both exchanges, live", **_texts())
    )


def _texts() -> dict[str, Any]:
    return parser_texts(
        "Run the exchange emulator's simulated market (`userstream serve --simulate`) and a gateway "
        "streaming its demo account on Bitmusa and Coinlocally, in one process. On a terminal: a live "
        "dashboard until Ctrl-C. Piped: every event as one docs/events.md JSON line on stdout (status lines "
        "on stderr) for --duration seconds. `make demo` runs it.",
        [
            ("the dashboard, until Ctrl-C", "userstream demo"),
            (
                "30 s of events at 200 per second, as JSON lines",
                "userstream demo --duration 30 --rate 200 > events.jsonl",
            ),
            (
                "also keep every event in SQLite (written to data/demo.db)",
                "userstream demo --sink sqlite:demo.db",
            ),
        ],
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["dashboard", "jsonl"],
        default=None,
        help="dashboard or jsonl (default: dashboard on a terminal, jsonl otherwise)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: at Ctrl-C on a terminal, 5 otherwise)",
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="simulated events per second (default %(default)g)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=7,
        help="simulator seed: the same seed, the same market (default %(default)s)",
    )
    parser.add_argument(
        "--drop-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="cut the demo account's connections this often (default: 20 with the dashboard, never with "
        "jsonl; 0: never)",
    )
    parser.add_argument(
        "--notice-seconds",
        type=float,
        action=_NonNegative,
        default=8.0,
        metavar="SECONDS",
        help="how long the dashboard's header keeps the latest fault or reconnect (default 8)",
    )
    parser.add_argument(
        "--http-port", type=int, default=0, help="the gateway's HTTP port (default: 0, a free one)"
    )
    parser.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="SPEC",
        help="also write every event to this sink (e.g. sqlite:demo.db; see docs/sinks.md); repeatable; "
        "relative paths are in --data-dir",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="directory of the --sink files given by a relative path (default: %(default)s, created "
        "when needed)",
    )


class _NonNegative(argparse.Action):
    """Stores a number of seconds, refusing a negative one with a usage error (exit 2)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values < 0:
            parser.error(f"{option_string} must be 0 or more")
        setattr(namespace, self.dest, values)


def _settle(args: argparse.Namespace) -> argparse.Namespace:
    """The defaults that depend on where the output goes."""
    if args.format is None:
        args.format = "dashboard" if sys.stdout.isatty() else "jsonl"
    if args.duration is None and args.format == "jsonl":
        args.duration = 5.0  # a pipe or CI: a bounded run, never a hang
    if args.drop_every is None:
        args.drop_every = 20.0 if args.format == "dashboard" else 0.0
    return args


def _account_table(
    entry: ExchangeSpec, server: ServerHandle, account: Account, environ: dict[str, str]
) -> dict[str, Any]:
    """The demo account's gateway table on one exchange, from the registry, its credentials put in `environ`
    (`DEMO_<EXCHANGE>_<CREDENTIAL>`, the way a user's shell would hold them)."""
    exchange = entry.exchange.value
    table: dict[str, Any] = {"name": f"{account.name}-{exchange}", "exchange": exchange}
    wire = entry.client
    if isinstance(wire, ListenKeyWire):  # the emulator's bases: the key's paths are appended
        table["rest_url"], table["ws_url"] = server.base_url, server.ws_url
    else:  # the stream's whole URL
        table["ws_url"] = server.ws_url + wire.ws_path

    def held(credential: str) -> str | None:
        value: str | None = getattr(account, credential_key(entry.exchange, credential))
        return value

    def signers(credential: str) -> list[str]:
        return [optional for optional, with_ in entry.credentials_optional if with_ == credential]

    # Of the credentials it needs one of, stream with one the account also holds the signing secret of (so
    # the stream can resync: Coinlocally's snapshot is signed with the api key's secret key), else with the
    # first it holds (and no resync).
    held_one_of = [credential for credential in entry.credentials_one_of if held(credential) is not None]
    signed = [c for c in held_one_of if signers(c) and all(held(s) is not None for s in signers(c))]
    chosen = signed[:1] or held_one_of[:1] or list(entry.credentials_one_of[:1])
    companions = [signer for credential in chosen for signer in signers(credential)]
    for credential in (*entry.credentials_required, *chosen, *companions):
        variable = f"DEMO_{exchange}_{credential}".upper()
        environ[variable] = held(credential) or ""
        table[f"{credential}_env"] = variable
    if companions and not isinstance(wire, ListenKeyWire):  # snapshots from the emulator too
        table["snapshot_rest_url"] = server.base_url
    return table


def demo_gateway_config(
    server: ServerHandle, account: Account, *, http_port: int | None = 0
) -> tuple[GatewayConfig, dict[str, str]]:
    """The gateway config of the demo (the demo account on every exchange of `server`), and the environment
    holding its credentials, as a user's gateway.toml and shell would give them."""
    environ: dict[str, str] = {}
    accounts = [_account_table(entry, server, account, environ) for entry in REGISTRY.values()]
    document: dict[str, Any] = {
        "gateway": {"http_port": http_port, "shutdown_timeout": 5.0} if http_port is not None else {},
        # The emulator is local: recover fast, so a cut connection is back within a fraction of a second.
        "defaults": {
            "backoff_base": 0.2,
            "backoff_cap": 2.0,
            "stable_after": 5.0,
            # Open orders are listed per symbol: a snapshot asks for every symbol the market trades.
            "snapshot_symbols": [instrument.symbol for instrument in INSTRUMENTS],
        },
        "accounts": accounts,
    }
    config = parse_config(document, source="demo")
    if http_port is None:
        config = msgspec.structs.replace(config, http_port=None)
    return config, environ


async def demo(args: argparse.Namespace) -> int:
    account = demo_account()
    server_config = ServerConfig(
        host="127.0.0.1", port=0, accounts=(account,), simulate_rate=args.rate, seed=args.seed
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_server(server_config) as server:
            config, environ = demo_gateway_config(server, account, http_port=args.http_port)
            config = msgspec.structs.replace(
                config, sinks=tuple(parse_sink(flag) for flag in args.sink), data_dir=args.data_dir
            )
            gateway = Gateway(config, environ=environ)
            _log.info(
                "emulator on %s simulating %g events/s; gateway on both exchanges", server.base_url, args.rate
            )
            if args.format == "jsonl":
                return await _jsonl(gateway, server, args, stop)
            return await _dashboard(gateway, server, args, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _jsonl(
    gateway: Gateway, server: ServerHandle, args: argparse.Namespace, stop: asyncio.Event
) -> int:
    subscription = gateway.hub.subscribe(capacity=_PRINTER_CAPACITY)  # before start: no event is missed
    async with asyncio.TaskGroup() as tasks:
        printer = tasks.create_task(_print_jsonl(subscription, stop))
        async with gateway:
            faults = tasks.create_task(_faults(server, args.drop_every))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration):
                    await stop.wait()
            faults.cancel()
        # The gateway has stopped: the hub is closed, and the printer ends once it has printed everything.
    if subscription.dropped_reason is not None:
        print(f"{_PROG}: the printer fell behind: {subscription.dropped_reason}", file=sys.stderr)
        return 1
    return printer.result()


async def _print_jsonl(subscription: Subscription, stop: asyncio.Event) -> int:
    out = sys.stdout.buffer
    while True:
        batch = await subscription.next_batch()
        if batch is None:
            return 0
        try:
            out.write(b"".join(message.json + b"\n" for message in batch))
            out.flush()
        except BrokenPipeError:
            # The reader left (`make demo | head`): not an error. Stop, and keep Python quiet at exit.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            subscription.close()
            stop.set()
            return 0


async def _dashboard(
    gateway: Gateway, server: ServerHandle, args: argparse.Namespace, stop: asyncio.Event
) -> int:
    tail = LogTail()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)  # anything written to the terminal would tear the frame
    root.addHandler(tail)
    started = time.monotonic()
    async with gateway, asyncio.TaskGroup() as tasks:
        helpers = [tasks.create_task(_faults(server, args.drop_every))]
        if args.duration is not None:
            helpers.append(tasks.create_task(_stop_after(stop, args.duration)))
        await run_dashboard(
            gateway,
            stop,
            title=f"userstream demo: serve --simulate {args.rate:g} on {server.base_url}",
            out=sys.stdout,
            clock=time.monotonic,
            wall_ms=lambda: time.time_ns() // 1_000_000,
            log_tail=tail,
            footer="Ctrl-C to stop. Try: curl " + (gateway.http_url or "") + "/metrics",
            notice_seconds=args.notice_seconds,
        )
        for helper in helpers:
            helper.cancel()
    elapsed = time.monotonic() - started
    for runtime in gateway.accounts:
        print(
            f"{_PROG}: {runtime.name}: {sum(runtime.events.values())} events in {elapsed:.1f}s, "
            f"{runtime.reconnects} reconnects, {runtime.resyncs} resyncs, ended {runtime.connection.value}"
        )
    return 0


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    stop.set()


async def _faults(server: ServerHandle, every: float) -> None:
    """Cut every connection of the demo account every `every` seconds (0: never)."""
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        for account in server.config.accounts:
            cut = await server.drop(account.name)
            _log.info("fault: cut %d connections of %s (watch the reconnects and resyncs)", cut, account.name)


def _configure_logging(dashboard: bool) -> None:
    logging.getLogger("userstream.gateway").setLevel(logging.INFO)
    logging.getLogger("userstream.demo").setLevel(logging.INFO)
    if not dashboard:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PROG}: %(message)s"))
        logging.getLogger().addHandler(handler)


def run(args: argparse.Namespace) -> int:
    """`userstream demo`'s entry (cli.py): the flags parsed."""
    args = _settle(args)
    _configure_logging(args.format == "dashboard")
    try:
        return asyncio.run(demo(args))
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m userstream.demo`: the same command as `userstream demo`."""
    parser = argparse.ArgumentParser(prog=_PROG, **_texts())
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
