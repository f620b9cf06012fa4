"""The `userstream` command: parses the subcommand and hands over to the module that owns it.

Thin on purpose. Each subcommand lives beside the code it drives (`userstream.server.command` for `serve`,
`userstream.client.command` for `watch`) and exposes `add_parser(subparsers)` and `run(args) -> int`;
this file only wires them together, so adding a command never means editing another command's code.
`userstream --version` prints the installed distribution's version. Ctrl-C that reaches it (a command
without a graceful stop of its own, or during start-up) exits 130 with one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from userstream import __version__
from userstream.clihelp import parser_texts

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "main"]

#: subcommand -> module that implements it (`add_parser(subparsers)` and `run(args) -> int`).
COMMANDS: dict[str, str] = {
    "serve": "userstream.server.command",
    "watch": "userstream.client.command",
    "gateway": "userstream.gateway.command",
    "record": "userstream.ops.record",
    "replay": "userstream.ops.replay",
    "doctor": "userstream.ops.doctor",
    "demo": "userstream.demo",
}


def version() -> str:
    """The installed distribution's version (the package's own when run from a source tree uninstalled)."""
    try:
        return importlib.metadata.version("userstream")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="userstream",
        **parser_texts(
            "Trustworthy private user data streams for Bitmusa and Coinlocally: the exchange emulator "
            "(serve), one account's events (watch), many accounts into sinks with an HTTP API (gateway), "
            "tools for when something looks wrong (record, replay, doctor), and a live demo (demo). "
            "`userstream COMMAND --help` describes each.",
            [
                (
                    "the emulator and a gateway on both exchanges, live (what `make demo` runs)",
                    "userstream demo",
                ),
                (
                    "the exchange side, for a bot to test against",
                    "userstream serve --accounts examples/accounts.toml --simulate 20",
                ),
                (
                    "many accounts into sinks, with an HTTP API",
                    "userstream gateway --config examples/gateway.toml",
                ),
            ],
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version and exit"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue  # a command whose module is not built yet is simply not offered
        module.add_parser(subparsers)
    return parser


#: The exit status of a command cut short by Ctrl-C (SIGINT) where it has no graceful stop of its own: the
#: shell's 128 + 2. Commands that stop on a signal by design (serve, watch, gateway, record) exit 0.
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        module = importlib.import_module(COMMANDS[args.command])
        code: int = module.run(args)
    except KeyboardInterrupt:  # Ctrl-C anywhere a command does not handle it: a word, not a traceback
        print("userstream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
