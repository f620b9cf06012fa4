"""`userstream doctor bitmusa|coinlocally`: the command around `diagnose`, one line per check.

This module owns the command's flags, its help, the printing of each check as it is known, the summary
line and the exit status: 0 when nothing FAILed, 1 when a check FAILed, 2 for missing credentials or
unusable URLs, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from userstream.client.command import (
    ENVIRONMENT,
    add_connection_arguments,
    positive_seconds,
    read_credentials,
    tls_arguments,
)
from userstream.clihelp import credentials_paragraph, parser_texts
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.ops.doctor.checks import EXIT_INTERRUPTED, Check, DoctorOptions, Verdict
from userstream.ops.doctor.flows import diagnose

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="check reachability, clock, credentials and the stream handshake, one line per check",
        **parser_texts(
            "Check, in the order a stream needs them, everything between this machine and one account's "
            "user data stream: one line per check with OK, WARN, FAIL or SKIP and the reason. Exit status "
            "0 when nothing FAILed, 1 when a check FAILed, 2 for missing credentials, 130 when "
            "interrupted (Ctrl-C). Nothing it prints shows a credential."
            "\n\n" + credentials_paragraph(ENVIRONMENT),
            [
                (
                    "a Bitmusa account in production, its credentials in the environment",
                    "userstream doctor bitmusa",
                ),
                (
                    "alice on the emulator's Coinlocally",
                    "USERSTREAM_COINLOCALLY_TOKEN=alice-coinlocally-token-example userstream doctor "
                    "coinlocally --ws-url ws://127.0.0.1:8765/spotws_user/userData/ws",
                ),
                (
                    "a slow network: more time per step and for the first frame",
                    "userstream doctor coinlocally --timeout 15 --frame-wait 10",
                ),
            ],
        ),
    )
    add_connection_arguments(parser)
    checks = parser.add_argument_group("checks")
    checks.add_argument(
        "--timeout",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long each step may take (default 5)",
    )
    checks.add_argument(
        "--frame-wait",
        type=positive_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long to wait for the first data frame (default 3)",
    )


def run(args: argparse.Namespace) -> int:
    def print_check(check: Check) -> None:
        print(check.line(), flush=True)

    try:
        credentials = read_credentials(args)
        options = DoctorOptions(
            exchange=Exchange(args.exchange),
            api_key=credentials.api_key,
            auth_key=credentials.auth_key,
            token=credentials.token,
            rest_url=args.rest_url,
            ws_url=args.ws_url,
            account=args.account,
            timeout=args.timeout,
            frame_wait=args.frame_wait,
            **tls_arguments(args),
        )
        results = asyncio.run(diagnose(options, report=print_check))
    except ConfigurationError as exc:
        print(f"userstream doctor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in the middle of a check: the checks so far are printed
        print("userstream doctor: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    counts = {verdict: sum(1 for check in results if check.verdict is verdict) for verdict in Verdict}
    summary = ", ".join(f"{count} {verdict.value}" for verdict, count in counts.items())
    print(f"{len(results)} checks: {summary}", flush=True)
    return 1 if counts[Verdict.FAIL] else 0
