"""`userstream record bitmusa|coinlocally --out FILE`: capture one account's raw frames into a recording.

This module owns the command: its flags (the exchange, credential and endpoint flags are `watch`'s own,
from `userstream.client.command`), the stream it runs, and its exit codes. The stream is the library's
`connect()`, so it reconnects, renews and rotates exactly as `watch` does; every text or binary frame any
of its connections receives reaches the `on_frame` hook before it is parsed, and is written with its
receive time by `recording.RecordingWriter` (format in `userstream.ops.recording`, docs/operations.md).
The events themselves are read and discarded: `userstream replay FILE` shows them.

Exit codes: 0 after `--duration`, SIGINT or SIGTERM; 2 for rejected or missing credentials, bad arguments,
or an output file that cannot be created; 1 when writing fails midway or the stream stops for another
reason. The last line on stderr says how many frames were written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

from userstream import __version__
from userstream.client.command import (
    ENVIRONMENT,
    add_connection_arguments,
    positive_seconds,
    read_credentials,
    tls_arguments,
)
from userstream.client.entry import connect
from userstream.client.status import StatusEvent
from userstream.client.supervisor import UserStream
from userstream.clihelp import credentials_paragraph, parser_texts
from userstream.errors import AuthenticationError, ConfigurationError, UserStreamError
from userstream.events import Exchange
from userstream.ops.recording import RecordingWriter, header_for
from userstream.protocol.client_wire import production_endpoints
from userstream.protocol.registry import spec

__all__ = ["add_parser", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2

_PROG = "userstream record"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "record",
        help="write one account's raw frames, with receive times, to a file",
        **parser_texts(
            "Record every frame of one account's user data stream, as received, with its receive time, "
            "to a JSON Lines file that `userstream replay` reads back (docs/operations.md). The file holds "
            "no credential; it does hold the account's balances and orders, so it is created readable by "
            "its owner only. It connects, reconnects and rotates as `userstream watch` does."
            "\n\n" + credentials_paragraph(ENVIRONMENT),
            [
                (
                    "a minute of a Bitmusa account, its credentials in the environment",
                    "userstream record bitmusa --out bitmusa.rec --duration 60",
                ),
                (
                    "alice on the emulator's Coinlocally, until Ctrl-C",
                    "USERSTREAM_COINLOCALLY_TOKEN=alice-coinlocally-token-example userstream record "
                    "coinlocally --ws-url ws://127.0.0.1:8765/spotws_user/userData/ws --account alice "
                    "--out alice.rec",
                ),
                ("then read it back", "userstream replay alice.rec --format pretty"),
            ],
        ),
    )
    add_connection_arguments(parser)
    output = parser.add_argument_group("recording")
    output.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="the recording to write (required; an existing file is replaced)",
    )
    output.add_argument(
        "--duration",
        type=positive_seconds,
        metavar="S",
        help="stop after S seconds (default: until SIGINT or SIGTERM)",
    )


def run(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        return asyncio.run(_record(args))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return EXIT_OK


def _configure_logging() -> None:
    """The library's warnings reach stderr, labelled with the command."""
    logger = logging.getLogger("userstream")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PROG}: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def _say(message: str) -> None:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)


def _print_status(status: StatusEvent) -> None:
    _say(status.describe())


class _FrameSink:
    """The `on_frame` hook: writes each frame; a failed write stops the recording instead of the stream
    silently losing frames."""

    def __init__(self) -> None:
        self.writer: RecordingWriter | None = None
        self.failure: OSError | None = None
        self.stop = asyncio.Event()

    def __call__(self, received_at: float, frame: bytes | str, connection: int) -> None:
        if self.writer is None or self.failure is not None:
            return
        try:
            self.writer.write_frame(received_at, frame, connection)
        except OSError as exc:
            self.failure = exc
            self.stop.set()


def _endpoints(args: argparse.Namespace) -> dict[str, str | None]:
    rest, ws = production_endpoints(spec(Exchange(args.exchange)).client)
    return {"rest": args.rest_url or rest, "ws": args.ws_url or ws}


async def _record(args: argparse.Namespace) -> int:
    sink = _FrameSink()
    try:
        credentials = read_credentials(args)
        stream = connect(
            args.exchange,
            api_key=credentials.api_key,
            auth_key=credentials.auth_key,
            token=credentials.token,
            account=args.account,
            rest_url=args.rest_url,
            ws_url=args.ws_url,
            on_status=_print_status,
            on_frame=sink,
            **tls_arguments(args),
        )
    except ConfigurationError as exc:
        _say(str(exc))
        return EXIT_REJECTED
    header = header_for(Exchange(args.exchange), args.account, __version__, time.time(), _endpoints(args))
    secrets = [value for value in credentials if value]
    try:
        writer = RecordingWriter.create(args.out, header, secrets=secrets)
    except OSError as exc:
        _say(f"cannot write {args.out}: {exc.strerror or type(exc).__name__}")
        return EXIT_REJECTED
    sink.writer = writer

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, sink.stop.set)
    try:
        async with stream:
            await _until_stopped(stream, sink.stop, args.duration)
    except AuthenticationError as exc:
        _say(f"authentication failed ({exc.rejected} rejected): {exc}")
        return EXIT_REJECTED
    except ConfigurationError as exc:
        _say(str(exc))
        return EXIT_REJECTED
    except UserStreamError as exc:
        _say(f"stopped: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        sink.writer = None
        writer.close()
        _say(f"{writer.frames} frames written to {args.out}")
    if sink.failure is not None:
        _say(f"writing {args.out} failed: {sink.failure.strerror or type(sink.failure).__name__}")
        return EXIT_FAILED
    return EXIT_OK


async def _until_stopped(stream: UserStream, stop: asyncio.Event, duration: float | None) -> None:
    """Read (and discard) events until `stop`, `duration`, or the stream's fatal error (raised)."""

    async def drain() -> UserStreamError | None:
        try:
            async for _ in stream:
                pass
        except UserStreamError as exc:  # returned, not raised: a TaskGroup would wrap it in a group
            return exc
        return None

    async with asyncio.TaskGroup() as tasks:
        drained = tasks.create_task(drain())
        stopped = tasks.create_task(stop.wait())
        await asyncio.wait({drained, stopped}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        stopped.cancel()
    error = None if drained.cancelled() else drained.result()
    if error is not None:
        raise error
