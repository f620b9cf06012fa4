"""`userstream watch bitmusa|coinlocally`: one account's events on stdout, live, for people and pipes.

This module owns the command's flags, where credentials come from (flags, else the environment), the two
output formats, and the exit codes. Everything else is the library's `connect()`; this file only parses,
prints and maps outcomes:

- `--format jsonl` (the default when stdout is not a terminal): each event exactly as
  `userstream.eventjson.to_json` writes it, one per line, flushed per line; `--format pretty` (the default
  on a terminal): one readable line per event.
- Status events go to stderr as log lines, or to stdout as {"kind":"status",...} JSON lines with `--status`.
- Exit codes: 0 after SIGINT/SIGTERM or a closed pipe; 2 for rejected credentials, missing credentials or
  bad arguments (the message names what was wrong, never a secret's value); 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import signal
import sys
from typing import IO, Any, NamedTuple

from userstream.client.entry import connect
from userstream.client.options import DEFAULT_QUEUE_BYTES, resolve
from userstream.client.queue import Overflow
from userstream.client.status import StatusEvent
from userstream.client.supervisor import UserStream
from userstream.clihelp import credentials_paragraph, parser_texts
from userstream.errors import AuthenticationError, ConfigurationError, UserStreamError
from userstream.eventjson import dec, to_json
from userstream.events import BalanceUpdate, Event, Fill
from userstream.protocol import bitmusa, coinlocally

__all__ = [
    "ENVIRONMENT",
    "CredentialArgs",
    "add_connection_arguments",
    "add_parser",
    "format_pretty",
    "read_credentials",
    "run",
    "timing_arguments",
    "tls_arguments",
]

#: credential -> the environment variable it is read from when its flag is absent.
ENVIRONMENT: dict[str, str] = {
    "bitmusa_api_key": "USERSTREAM_BITMUSA_API_KEY",
    "bitmusa_auth_key": "USERSTREAM_BITMUSA_AUTH_KEY",
    "coinlocally_api_key": "USERSTREAM_COINLOCALLY_API_KEY",
    "coinlocally_token": "USERSTREAM_COINLOCALLY_TOKEN",
}
#: The timing flags of `watch`: flag -> help. Each is `connect()`'s keyword of the same name; left out, it
#: is not passed, so the library derives it (client/options.py).
_TIMING_FLAGS: dict[str, str] = {
    "--keepalive-interval": "Bitmusa: PUT the listenKey this often (default 1800; under its 3600 s validity)",
    "--ping-interval": "send a ping this often (default 30, or --idle-timeout / 1.5 when that is lower)",
    "--idle-timeout": "no frame at all this long: dead (default 45, or 1.5 * --ping-interval)",
    "--sub-timeout": "Coinlocally: 'sub success' must come this soon (default 10, at most --idle-timeout)",
    "--rotate-after": "open a successor this long after a connection went live (default 84600); 0: never",
    "--overlap-timeout": "rotation: keep a quiet old connection this long (default 5, <= --rotate-after / 2)",
    "--backoff-base": "first reconnect delay bound (default 1, at most --backoff-cap)",
    "--backoff-cap": "largest reconnect delay bound (default 30, at least --backoff-base)",
    "--stable-after": "a connection live this long resets the backoff (default 60, <= --rotate-after / 2)",
    "--close-timeout": "how long a graceful close waits for the server's answer (default 5)",
    "--request-timeout": "each REST call and WebSocket handshake (default 10)",
}
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2

_PROG = "userstream watch"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watch",
        help="stream one account's balance and order events to stdout",
        **parser_texts(
            "Stream one account's user data events to stdout, one docs/events.md JSON line each (or "
            "--format pretty), reconnecting, renewing and rotating as needed; status lines go to stderr. "
            "Exit 2 when a credential or the URL is refused (the message says which)."
            "\n\n" + credentials_paragraph(ENVIRONMENT),
            [
                (
                    "a Bitmusa account, its credentials in the environment",
                    "userstream watch bitmusa --account alice",
                ),
                (
                    "alice on the emulator's Coinlocally (userstream serve), a base or a full URL alike",
                    "USERSTREAM_COINLOCALLY_TOKEN=alice-coinlocally-token-example userstream watch "
                    "coinlocally --ws-url ws://127.0.0.1:8765 --account alice",
                ),
                (
                    "only a 10 s dead-socket timeout: the ping interval is fitted to it",
                    "userstream watch bitmusa --idle-timeout 10 --rest-url http://127.0.0.1:8765 "
                    "--ws-url ws://127.0.0.1:8765",
                ),
            ],
        ),
    )
    add_connection_arguments(parser)
    timing = parser.add_argument_group(
        "timings (seconds)",
        "A timing left out takes its default, or a value fitted to the timings given (--idle-timeout 30 "
        "alone pings every 20 s); only a contradiction between timings you give is refused. The rules: "
        "docs/client.md.",
    )
    for flag, help_text in _TIMING_FLAGS.items():
        timing.add_argument(flag, type=float, metavar="SECONDS", help=help_text)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        choices=["jsonl", "pretty"],
        help="jsonl (default when stdout is not a terminal) or pretty (default on a terminal)",
    )
    output.add_argument(
        "--status",
        action="store_true",
        help='status events to stdout as {"kind":"status",...} lines (default: stderr log lines)',
    )
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--queue-size", type=_positive_int, default=10_000, help="events buffered (default %(default)s)"
    )
    behaviour.add_argument(
        "--queue-bytes",
        type=_positive_int,
        default=DEFAULT_QUEUE_BYTES,
        metavar="N",
        help="the queue's bound in bytes besides events (default: %(default)s, 32 MiB)",
    )
    behaviour.add_argument(
        "--overflow",
        choices=[policy.value for policy in Overflow],
        default="block",
        help="when the queue is full: block (the socket waits, nothing lost) or drop_oldest (dropped "
        "events are counted and reported) (default: %(default)s)",
    )
    behaviour.add_argument(
        "--fills",
        action="store_true",
        help="also print the fills each order update reveals, right after it (default: off)",
    )
    behaviour.add_argument(
        "--close-key-on-exit",
        action="store_true",
        help="Bitmusa: DELETE the listenKey on exit (cuts off every other client of the account)",
    )
    behaviour.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="level of the library's log lines on stderr (default: %(default)s)",
    )


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The exchange, credential and endpoint flags of every command that connects to an account (`watch`,
    `record`, `doctor`); `read_credentials(args)` reads them back."""
    parser.add_argument(
        "exchange", choices=["bitmusa", "coinlocally"], help="the exchange of the account: %(choices)s"
    )
    creds = parser.add_argument_group("credentials")
    creds.add_argument(
        "--api-key",
        help="API key: Bitmusa's (default: $USERSTREAM_BITMUSA_API_KEY) or Coinlocally's api-key credential "
        "(default: $USERSTREAM_COINLOCALLY_API_KEY, when $USERSTREAM_COINLOCALLY_TOKEN is unset)",
    )
    creds.add_argument(
        "--auth-key",
        help="Bitmusa auth key, sent as 'Authorization: Bearer' (default: $USERSTREAM_BITMUSA_AUTH_KEY)",
    )
    creds.add_argument("--token", help="Coinlocally login token (default: $USERSTREAM_COINLOCALLY_TOKEN)")
    where = parser.add_argument_group("endpoints")
    where.add_argument(
        "--rest-url",
        help=f"Bitmusa REST base URL (default {bitmusa.REST_BASE}; {bitmusa.LISTEN_KEY_PATH} is appended)",
    )
    where.add_argument(
        "--ws-url",
        help=(
            f"WebSocket URL: Bitmusa's base (default {bitmusa.WS_BASE}; /ws/spot/<listenKey> is appended) "
            f"or Coinlocally's full URL (default {coinlocally.WS_URL})"
        ),
    )
    where.add_argument("--account", default="default", help="label put on every event (default: default)")
    tls = parser.add_argument_group("TLS (certificates are verified by default)")
    tls.add_argument(
        "--ca-file",
        metavar="FILE",
        help="PEM bundle of CA certificates to trust besides the system's (a private exchange emulator)",
    )
    tls.add_argument(
        "--insecure-no-verify",
        action="store_true",
        help="do NOT verify the server's TLS certificate (anyone on the path can read and change the "
        "stream; a WARNING is logged at every connection)",
    )


def tls_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """connect()'s TLS arguments from the flags of `add_connection_arguments`."""
    return {"verify_tls": not args.insecure_no_verify, "ca_file": args.ca_file}


def run(args: argparse.Namespace) -> int:
    output_format = args.format or ("pretty" if sys.stdout.isatty() else "jsonl")
    _configure_logging(args.log_level)
    try:
        return asyncio.run(_watch(args, output_format))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return EXIT_OK


def _configure_logging(level: str = "WARNING") -> None:
    """The library's log lines at `level` and above (warnings by default: say, a listenKey that could not
    be closed, or TLS verification turned off) reach stderr."""
    logger = logging.getLogger("userstream")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PROG}: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


class CredentialArgs(NamedTuple):
    api_key: str | None = None
    auth_key: str | None = None
    token: str | None = None


def read_credentials(args: argparse.Namespace) -> CredentialArgs:
    """connect()'s credential arguments: each flag, else its environment variable."""
    env = os.environ
    if args.exchange == "bitmusa":
        if args.token is not None:
            raise ConfigurationError("Bitmusa takes --api-key and --auth-key, not --token")
        api_key = args.api_key or env.get(ENVIRONMENT["bitmusa_api_key"])
        auth_key = args.auth_key or env.get(ENVIRONMENT["bitmusa_auth_key"])
        for name, value, flag in (
            ("bitmusa_api_key", api_key, "--api-key"),
            ("bitmusa_auth_key", auth_key, "--auth-key"),
        ):
            if not value:
                raise ConfigurationError(
                    f"Bitmusa needs {flag} or the environment variable {ENVIRONMENT[name]}"
                )
        return CredentialArgs(api_key=api_key, auth_key=auth_key)
    if args.auth_key is not None:
        raise ConfigurationError("Coinlocally takes --token or --api-key, not --auth-key")
    if args.token is not None or args.api_key is not None:
        return CredentialArgs(token=args.token, api_key=args.api_key)
    # From the environment a token wins over an api key, so setting both is not an error.
    token = env.get(ENVIRONMENT["coinlocally_token"])
    if token:
        return CredentialArgs(token=token)
    api_key = env.get(ENVIRONMENT["coinlocally_api_key"])
    if api_key:
        return CredentialArgs(api_key=api_key)
    raise ConfigurationError(
        "Coinlocally needs --token or --api-key, or the environment variable "
        f"{ENVIRONMENT['coinlocally_token']} or {ENVIRONMENT['coinlocally_api_key']}"
    )


class _Printer:
    """Writes events and status lines; remembers whether stdout is gone (a closed pipe)."""

    def __init__(self, output_format: str, status_to_stdout: bool) -> None:
        self._pretty = output_format == "pretty"
        self._status_to_stdout = status_to_stdout
        self._stdout: IO[bytes] = sys.stdout.buffer
        self.closed = asyncio.Event()

    def event(self, event: Event) -> None:
        line = format_pretty(event).encode() if self._pretty else to_json(event)
        self._write(line)

    def status(self, status: StatusEvent) -> None:
        if self._status_to_stdout:
            self._write(status.to_json())
        else:
            print(f"{_PROG}: {status.describe()}", file=sys.stderr, flush=True)

    def _write(self, line: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            self._stdout.write(line + b"\n")
            self._stdout.flush()
        except BrokenPipeError:
            # The reader left (`| head`): stop quietly, and keep Python from complaining at exit.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.closed.set()


def timing_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """connect()'s timing arguments from the timing flags given (none for a flag left out, so the library
    derives it; `--rotate-after 0` is rotate_after=None), checked as the library checks them but with the
    flags named: a contradiction between two flags given is a ConfigurationError naming both."""
    timings: dict[str, float | None] = {}
    for flag in _TIMING_FLAGS:
        value = getattr(args, _option(flag))
        if value is not None:
            timings[_option(flag)] = None if flag == "--rotate-after" and value == 0 else value
    resolve(timings, spell=_flag, rotation_off="0")
    return timings


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _option(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


async def _watch(args: argparse.Namespace, output_format: str) -> int:
    printer = _Printer(output_format, args.status)
    try:
        credentials = read_credentials(args)
        timings = timing_arguments(args)
        stream = connect(
            args.exchange,
            api_key=credentials.api_key,
            auth_key=credentials.auth_key,
            token=credentials.token,
            account=args.account,
            rest_url=args.rest_url,
            ws_url=args.ws_url,
            queue_size=args.queue_size,
            queue_bytes=args.queue_bytes,
            overflow=args.overflow,
            close_key_on_exit=args.close_key_on_exit,
            fills=args.fills,
            on_status=printer.status,
            **timings,
            **tls_arguments(args),
        )
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_REJECTED

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with stream:
            return await _pump(stream, printer, stop)
    except AuthenticationError as exc:
        print(
            f"{_PROG}: authentication failed ({exc.rejected} rejected): {exc}",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except UserStreamError as exc:
        print(f"{_PROG}: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _pump(stream: UserStream, printer: _Printer, stop: asyncio.Event) -> int:
    """Print events until a signal, a closed pipe, or the stream's fatal error (raised)."""

    async def consume() -> UserStreamError | None:
        try:
            async for event in stream:
                printer.event(event)
                if printer.closed.is_set():
                    break
        except UserStreamError as exc:  # returned, not raised: a TaskGroup would wrap it in a group
            return exc
        return None

    async with asyncio.TaskGroup() as tasks:
        consumer = tasks.create_task(consume())
        stopped = tasks.create_task(stop.wait())
        closed = tasks.create_task(printer.closed.wait())
        await asyncio.wait({consumer, stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (consumer, stopped, closed):
            task.cancel()
    error = None if consumer.cancelled() else consumer.result()
    if error is not None:
        raise error
    return EXIT_OK


def format_pretty(event: Event) -> str:
    """One readable line: time (UTC), where, what."""
    when = datetime.datetime.fromtimestamp(event.timestamp / 1000, datetime.UTC)
    head = f"{when:%H:%M:%S}.{event.timestamp % 1000:03d}  {event.exchange.value}/{event.account}"
    if isinstance(event, BalanceUpdate):
        return (
            f"{head}  balance  {event.asset:<6} free {dec(event.free)}  locked {dec(event.locked)}"
            f"  total {dec(event.total)}"
        )
    if isinstance(event, Fill):
        price = "?" if event.price is None else dec(event.price)
        line = (
            f"{head}  fill     {event.symbol:<10} {event.side.value:<4} {dec(event.amount)} @ {price}"
            f"  order {event.order_id} filled {dec(event.order_filled)}"
        )
        if event.fee is not None:
            line += f"  fee {dec(event.fee)}"
        return line + ("  (derived)" if event.derived else "")
    kind = event.type.value if event.type is not None else event.raw_type
    status = event.status.value if event.status is not None else f"?{event.raw_status}"
    price = "market" if event.price is None else dec(event.price)
    line = (
        f"{head}  order    {event.symbol:<10} {event.side.value:<4} {kind:<6} {status:<8} "
        f"{dec(event.amount)} @ {price}  filled {dec(event.filled)}  remaining {dec(event.remaining)}"
        f"  id {event.id}"
    )
    if event.last_fill_amount:
        line += f"  last fill {dec(event.last_fill_amount)} @ {dec(event.last_fill_price)}"
    return line
