"""`userstream replay FILE`: a recording's frames through the client's own parsers, as normalized events.

This module owns the command and `replay_frames`, the loop behind it. Each recorded frame goes through the
same parser the client uses for its exchange (the exchange registry's, `protocol.registry`), labelled
with the recording's account, and every event comes out in the docs/events.md JSON form (or `watch`'s
pretty lines). Nothing is de-duplicated or reordered: a rotation's overlap shows its events twice, once
per connection, exactly as they arrived.

A frame the parser does not understand, and a line that is not a frame record, is reported on stderr with
its line number and reason, and counted in the summary line. Exit codes: 0 when every frame was understood,
1 when any was not (attach the recording to the bug report: it is the reproduction), 2 when FILE cannot be
read or is not a recording.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from userstream.client.command import format_pretty
from userstream.clihelp import parser_texts
from userstream.errors import ConfigurationError
from userstream.eventjson import to_json
from userstream.events import Event, Exchange
from userstream.ops.recording import BadLine, RecordedFrame, numbered_lines, read_frames, read_header
from userstream.protocol.messages import DataEvents, Incoming, Unknown
from userstream.protocol.registry import REGISTRY

__all__ = ["ReplaySummary", "add_parser", "replay_frames", "run"]

EXIT_OK = 0
EXIT_UNKNOWN = 1
EXIT_UNREADABLE = 2

_PROG = "userstream replay"


@dataclass(slots=True)
class ReplaySummary:
    frames: int = 0  # frame records read
    events: int = 0  # events the data frames gave
    other: int = 0  # understood frames without events: control replies, pings, pongs, notices, errors
    unknown: int = 0  # frames the parser did not understand
    bad_lines: int = 0  # lines that are not frame records

    @property
    def clean(self) -> bool:
        return self.unknown == 0 and self.bad_lines == 0

    def describe(self) -> str:
        return (
            f"{self.frames} frames: {self.events} events, {self.other} other, {self.unknown} unknown; "
            f"{self.bad_lines} bad lines"
        )


def _parsers(account: str) -> dict[Exchange, Callable[[bytes | str], Incoming]]:
    return {exchange: entry.client.parser(account) for exchange, entry in REGISTRY.items()}


def replay_frames(
    records: Iterable[RecordedFrame | BadLine],
    *,
    account: str,
    on_event: Callable[[Event], object],
    on_problem: Callable[[int, str], object],
) -> ReplaySummary:
    """Parse every recorded frame; events to `on_event`, (line, reason) of every problem to `on_problem`."""
    parsers = _parsers(account)
    summary = ReplaySummary()
    for record in records:
        if isinstance(record, BadLine):
            summary.bad_lines += 1
            on_problem(record.line, f"bad record: {record.reason}")
            continue
        summary.frames += 1
        incoming = parsers[record.record.exchange](record.frame)
        if isinstance(incoming, DataEvents):
            for event in incoming.events:
                summary.events += 1
                on_event(event)
        elif isinstance(incoming, Unknown):
            summary.unknown += 1
            where = f"{record.record.exchange.value}, connection {record.record.conn}, {record.record.type}"
            on_problem(record.line, f"unknown frame ({where}): {incoming.reason}")
        else:
            summary.other += 1
    return summary


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="print the normalized events of a recording (how to report a parsing bug)",
        **parser_texts(
            "Feed a recording made by `userstream record` through the client's own parsers and print the "
            "normalized events. Frames that are not understood are reported on stderr with their line "
            "number; the exit status is 1 if there was any. It connects to nothing and reads no credential.",
            [
                (
                    "the events of a recording, one docs/events.md JSON line each",
                    "userstream replay alice.rec",
                ),
                ("readable, on a terminal", "userstream replay alice.rec --format pretty"),
                (
                    "only the order events (the JSON lines are the gateway's and `watch`'s)",
                    'userstream replay alice.rec --format jsonl | grep \'"kind":"order"\'',
                ),
            ],
        ),
    )
    parser.add_argument("file", metavar="FILE", help="a recording (`userstream record --out FILE`)")
    parser.add_argument(
        "--format",
        choices=["jsonl", "pretty"],
        help="jsonl (docs/events.md) or pretty (default: pretty on a terminal, jsonl otherwise)",
    )


def run(args: argparse.Namespace) -> int:
    output_format = args.format or ("pretty" if sys.stdout.isatty() else "jsonl")
    stdout: IO[bytes] = sys.stdout.buffer

    def print_event(event: Event) -> None:
        line = format_pretty(event).encode() if output_format == "pretty" else to_json(event)
        stdout.write(line + b"\n")

    def report(line: int, reason: str) -> None:
        stdout.flush()  # keep stdout and stderr in order on a terminal
        print(f"{_PROG}: line {line}: {reason}", file=sys.stderr, flush=True)

    try:
        with open(args.file, "rb") as file:
            lines = numbered_lines(file)
            _, first = next(lines, (1, b""))
            header = read_header(first)
            summary = replay_frames(
                read_frames(lines), account=header.account, on_event=print_event, on_problem=report
            )
            stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): what it wanted was printed
        with contextlib.suppress(OSError):  # and keep Python from complaining at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"{_PROG}: cannot read {args.file}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREADABLE
    except ConfigurationError as exc:
        print(f"{_PROG}: {args.file}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(f"{_PROG}: {summary.describe()}", file=sys.stderr, flush=True)
    return EXIT_OK if summary.clean else EXIT_UNKNOWN
