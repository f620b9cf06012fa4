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

Every option flag's default, and the default its help names, is read from `StreamOptions` (client/options.py,
the one definition), and a queue bound's value is held to its field's declaration as it is parsed
(`validation.flag_type`); a timing flag that only one exchange uses says which, from the exchange registry.
The flags reach `StreamOptions` through `connect()`'s keywords, not a conversion here: the timings'
refusals must name the flags (`timing_arguments` runs the client's `resolve` spelled as flags first),
which a `StreamOptions` built here could not.
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
from userstream.client.options import DEFAULTS, LISTEN_KEY_VALIDITY, PONG_MARGIN, StreamOptions, resolve
from userstream.client.queue import Overflow
from userstream.client.status import StatusEvent
from userstream.client.supervisor import UserStream
from userstream.clihelp import credentials_paragraph, parser_texts
from userstream.errors import AuthenticationError, ConfigurationError, UserStreamError
from userstream.eventjson import dec, to_json
from userstream.events import BalanceUpdate, Event, Exchange, Fill
from userstream.protocol.client_wire import ListenKeyWire
from userstream.protocol.registry import REGISTRY, ExchangeSpec, spec
from userstream.validation import default_of, flag_type

__all__ = [
    "ENVIRONMENT",
    "CredentialArgs",
    "add_connection_arguments",
    "add_parser",
    "format_pretty",
    "positive_seconds",
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


def _only(option: str) -> str:
    """ "Bitmusa: " for an option only one exchange's client uses (the exchange registry), else ""."""
    return "".join(f"{entry.title}: " for entry in REGISTRY.values() if option in entry.only_options)


def _timing_help(option: str, what: str, rule: str = "") -> str:
    """A timing flag's help: what it does, its default (`DEFAULTS`, the one definition) and how it fits."""
    return f"{_only(option)}{what} (default {DEFAULTS[option]:g}{rule})"


#: The timing flags of `watch`: flag -> help. Each is `connect()`'s keyword of the same name; left out, it
#: is not passed, so the library derives it (client/options.py).
_TIMING_FLAGS: dict[str, str] = {
    "--keepalive-interval": _timing_help(
        "keepalive_interval",
        "PUT the listenKey this often",
        f"; under its {LISTEN_KEY_VALIDITY:g} s validity",
    ),
    "--ping-interval": _timing_help(
        "ping_interval", "send a ping this often", f", or --idle-timeout / {PONG_MARGIN:g} when that is lower"
    ),
    "--idle-timeout": _timing_help(
        "idle_timeout", "no frame at all this long: dead", f", or {PONG_MARGIN:g} * --ping-interval"
    ),
    "--sub-timeout": _timing_help(
        "sub_timeout", "'sub success' must come this soon", ", at most --idle-timeout"
    ),
    "--rotate-after": _timing_help("rotate_after", "open a successor this long after a connection went live")
    + "; 0: never",
    "--overlap-timeout": _timing_help(
        "overlap_timeout", "rotation: keep a quiet old connection this long", ", <= --rotate-after / 2"
    ),
    "--backoff-base": _timing_help("backoff_base", "first reconnect delay bound", ", at most --backoff-cap"),
    "--backoff-cap": _timing_help(
        "backoff_cap", "largest reconnect delay bound", ", at least --backoff-base"
    ),
    "--stable-after": _timing_help(
        "stable_after", "a connection live this long resets the backoff", ", <= --rotate-after / 2"
    ),
    "--close-timeout": _timing_help(
        "close_timeout", "how long a graceful close waits for the server's answer"
    ),
    "--request-timeout": _timing_help("request_timeout", "each REST call and WebSocket handshake"),
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
        "--queue-size",
        type=flag_type(StreamOptions, "queue_size", int),
        default=default_of(StreamOptions, "queue_size"),
        help="events buffered (default %(default)s)",
    )
    queue_bytes = default_of(StreamOptions, "queue_bytes")
    behaviour.add_argument(
        "--queue-bytes",
        type=flag_type(StreamOptions, "queue_bytes", int),
        default=queue_bytes,
        metavar="N",
        help=f"the queue's bound in bytes besides events (default: %(default)s, {queue_bytes / 2**20:g} MiB)",
    )
    behaviour.add_argument(
        "--overflow",
        choices=[policy.value for policy in Overflow],
        default=default_of(StreamOptions, "overflow").value,
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


def _rest_url_help() -> str:
    """--rest-url's help, from the registry: the REST base of each exchange whose stream needs a listenKey."""
    return " or ".join(
        f"{entry.title} REST base URL (default {wire.rest_base}; {wire.listen_key_path} is appended)"
        for entry in REGISTRY.values()
        if isinstance(wire := entry.client, ListenKeyWire)
    )


def _ws_url_help(entry: ExchangeSpec) -> str:
    """What --ws-url is on one exchange (a base the key's path is appended to, or the full URL)."""
    wire = entry.client
    if isinstance(wire, ListenKeyWire):
        return f"{entry.title}'s base (default {wire.ws_base}; {wire.ws_path_prefix}<listenKey> is appended)"
    return f"{entry.title}'s full URL (default {wire.ws_url})"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The exchange, credential and endpoint flags of every command that connects to an account (`watch`,
    `record`, `doctor`); `read_credentials(args)` reads them back."""
    parser.add_argument(
        "exchange",
        choices=[entry.exchange.value for entry in REGISTRY.values()],
        help="the exchange of the account: %(choices)s",
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
    where.add_argument("--rest-url", help=_rest_url_help())
    where.add_argument("--ws-url", help="WebSocket URL: " + " or ".join(map(_ws_url_help, REGISTRY.values())))
    where.add_argument(
        "--account",
        default=default_of(StreamOptions, "account"),
        help="label put on every event (default: %(default)s)",
    )
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


def positive_seconds(text: str) -> float:
    """An argparse `type=` for a flag of a positive number of seconds (`userstream record`, `doctor`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


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
    """connect()'s credential arguments: each flag, else its environment variable. Which credentials an
    exchange needs (all of some, one of others) is the exchange registry's (`protocol.registry`)."""
    entry = spec(Exchange(args.exchange))
    required, one_of = entry.credentials_required, entry.credentials_one_of
    taken = " and ".join(_cli_flag(name) for name in required) or " or ".join(map(_cli_flag, one_of))
    for credential in CredentialArgs._fields:
        if credential not in (*required, *one_of) and getattr(args, credential) is not None:
            raise ConfigurationError(f"{entry.title} takes {taken}, not {_cli_flag(credential)}")
    env = os.environ
    found: dict[str, str | None] = {}
    for credential in required:
        variable = ENVIRONMENT[f"{entry.exchange.value}_{credential}"]
        found[credential] = getattr(args, credential) or env.get(variable)
        if not found[credential]:
            raise ConfigurationError(
                f"{entry.title} needs {_cli_flag(credential)} or the environment variable {variable}"
            )
    if one_of:
        flags = {credential: getattr(args, credential) for credential in one_of}
        if any(value is not None for value in flags.values()):
            return CredentialArgs(**found, **flags)
        # From the environment the first of `one_of` set wins (a token over an api key): both is no error.
        variables = [ENVIRONMENT[f"{entry.exchange.value}_{credential}"] for credential in one_of]
        for credential, variable in zip(one_of, variables, strict=True):
            value = env.get(variable)
            if value:
                return CredentialArgs(**found, **{credential: value})
        raise ConfigurationError(
            f"{entry.title} needs {' or '.join(map(_cli_flag, one_of))}, or the environment variable "
            f"{' or '.join(variables)}"
        )
    return CredentialArgs(**found)


def _cli_flag(credential: str) -> str:
    return "--" + credential.replace("_", "-")


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
