"""`userstream serve`: flags in, a running exchange emulator out, until SIGINT or SIGTERM.

Thin: it parses flags into a `ServerConfig` (by `msgspec.convert`, in `build_config`, the one place; every
flag's default is its field's default in `ServerConfig`, the one definition), sets up JSON logging on
stderr, prints what a human needs to start (the URLs, and any credential or admin token it had to generate)
on stdout, and runs `running_server` until a signal arrives, then shuts down gracefully (SYSTEM notices,
1001 close frames) and exits 0. A bad accounts file or flag exits 2 with a message naming what is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any

from userstream.clihelp import parser_texts
from userstream.errors import ConfigurationError
from userstream.logs import configure_logging, log_event
from userstream.netguard import raise_descriptor_limit
from userstream.protocol.registry import REGISTRY
from userstream.protocol.server_session import AccountNamedBy
from userstream.server.app import ADMIN_EVENTS_PATH
from userstream.server.config import (
    Account,
    ServerConfig,
    demo_account,
    generate_secret,
    is_loopback,
    load_accounts_file,
    spell_setting,
)
from userstream.server.limits import DEFAULT_WEBSOCKETS_PER_IP, MAX_TCP_CONNECTIONS, TCP_HEADROOM_PER_IP
from userstream.server.run import ServerHandle, running_server
from userstream.server.variants import merge_variants
from userstream.validation import converted, default_of

__all__ = ["ADMIN_TOKEN_ENV", "add_parser", "build_config", "run"]

ADMIN_TOKEN_ENV = "USERSTREAM_ADMIN_TOKEN"  # noqa: S105 (the name of a variable, not a secret)
_log = logging.getLogger("userstream.server")


def _default(name: str) -> Any:
    """The default of `ServerConfig.<name>`: what its flag shows and leaves when not given."""
    return default_of(ServerConfig, name)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the Bitmusa and Coinlocally user-data-stream services locally (an exchange emulator)",
        **parser_texts(
            "Serve both exchanges' documented user data streams on one port: Bitmusa's listenKey REST API "
            "and WebSocket, Coinlocally's WebSocket, an admin ingest route and /healthz. See docs/server.md.",
            [
                (
                    "the example accounts, a simulated market of 20 events/s",
                    "userstream serve --accounts examples/accounts.toml --simulate 20",
                ),
                (
                    "Coinlocally answering a bad token its other plausible way (docs/server.md, Variants)",
                    "userstream serve --accounts examples/accounts.toml "
                    "--variant coinlocally-refusal-code-msg",
                ),
                (
                    "a free port, printed on stdout",
                    "userstream serve --accounts examples/accounts.toml --port 0",
                ),
            ],
        ),
    )
    parser.add_argument(
        "--host", default=_default("host"), help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_default("port"),
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--accounts",
        metavar="FILE",
        help="accounts file (TOML, see examples/accounts.toml); without it one demo account is generated",
    )
    parser.add_argument(
        "--admin-token",
        default=None,
        help=f"Bearer token of POST {ADMIN_EVENTS_PATH} (default: ${ADMIN_TOKEN_ENV}, else generated)",
    )
    parser.add_argument(
        "--listen-key-ttl",
        type=float,
        default=_default("listen_key_ttl"),
        metavar="SECONDS",
        help="validity of a Bitmusa listenKey after creation or keep-alive (default: %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=_default("heartbeat_timeout"),
        metavar="SECONDS",
        help="close a Coinlocally stream that sent no ping for this long (default: %(default)s)",
    )
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=_default("max_connection_age"),
        metavar="SECONDS",
        help="close every stream at this age (default: %(default)s)",
    )
    parser.add_argument(
        "--simulate",
        type=float,
        default=None,
        metavar="RATE",
        help="run a simulated market for every account at about RATE events per second in total",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed of the simulated market (and of --chaos)"
    )
    parser.add_argument(
        "--chaos",
        type=float,
        default=None,
        metavar="RATE",
        help="inject random faults at about RATE per second (drops, stalls, key expiry, SYSTEM closes, "
        "refused handshakes, delayed frames; see docs/server.md)",
    )
    parser.add_argument(
        "--chaos-faults",
        default=None,
        metavar="KINDS",
        help="the fault kinds --chaos draws from, comma-separated (default: all but clear)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share listenKeys and events with every other node given the same Redis (redis://host:port/db); "
        "see docs/scaling.md",
    )
    parser.add_argument(
        "--node-id",
        metavar="ID",
        default=None,
        help="this node's name in logs and /healthz, with --redis (default: <host>-<pid>)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=None,
        metavar="N",
        help="WebSockets open at once from one address; more are refused with HTTP 429 "
        f"(default: {DEFAULT_WEBSOCKETS_PER_IP} for other addresses, no limit for loopback; "
        "an explicit N applies to loopback too)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=_default("header_timeout"),
        metavar="SECONDS",
        help="a new connection must send a whole request head within this time (default: %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=_default("idle_timeout"),
        metavar="SECONDS",
        help="an idle keep-alive connection is closed after this time (default: %(default)s)",
    )
    parser.add_argument(
        "--max-tcp-connections",
        type=int,
        default=None,
        metavar="N",
        help="TCP connections of any kind open at once (default: what the descriptor limit leaves room "
        f"for, at most {MAX_TCP_CONNECTIONS})",
    )
    parser.add_argument(
        "--max-tcp-connections-per-ip",
        type=int,
        default=None,
        metavar="N",
        help="TCP connections of any kind open at once from one address (default: the WebSocket limit "
        f"+ {TCP_HEADROOM_PER_IP} for other addresses, no limit for loopback)",
    )
    parser.add_argument(
        "--auth-failures-per-second",
        type=float,
        default=_default("auth_failures_per_second"),
        metavar="RATE",
        help="failed authentications allowed per second and address once the burst is spent; beyond, "
        "requests are answered 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--auth-failure-burst",
        type=int,
        default=_default("auth_failure_burst"),
        metavar="N",
        help="failed authentications allowed at once from one address (default: %(default)s)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="answer an open point of the documents another plausible way (repeatable; also "
        "`variants = [...]` in the accounts file, which a flag of the same group overrides); "
        "see docs/server.md, Variants",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS/WSS with this certificate (chain)")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="log level of the JSON logs on stderr (default: %(default)s)",
    )
    return parser


def build_config(args: argparse.Namespace) -> tuple[ServerConfig, list[str]]:
    """The config the flags describe, and the lines to print about what had to be generated."""
    notices: list[str] = []
    accounts: tuple[Account, ...]
    if args.redis and not args.accounts:
        # a generated demo account would differ on every node: the nodes must serve the same accounts
        raise ConfigurationError("--redis needs --accounts: every node must serve the same accounts file")
    file_variants: tuple[str, ...] = ()
    if args.accounts:
        accounts, file_variants = load_accounts_file(args.accounts)
    else:
        demo = demo_account()
        accounts = (demo,)
        notices.append("no --accounts file: generated one demo account (as an accounts-file entry):")
        notices.append(_account_toml(demo))
    admin_token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
    if admin_token is None:
        if not is_loopback(args.host):
            # A generated token is printed on stdout, which ends up in logs; beyond loopback, anyone who
            # reads them could inject events into every account. Only a token chosen on purpose will do.
            raise ConfigurationError(
                f"--host {args.host} makes the admin API ({ADMIN_EVENTS_PATH}) reachable beyond this "
                f"machine: set --admin-token or ${ADMIN_TOKEN_ENV} (a generated token is only used on "
                "loopback)"
            )
        admin_token = generate_secret()
        notices.append(f"no --admin-token or ${ADMIN_TOKEN_ENV}: generated admin token {admin_token}")
    flags = {
        "accounts": accounts,
        "host": args.host,
        "port": args.port,
        "admin_token": admin_token,
        "listen_key_ttl": args.listen_key_ttl,
        "heartbeat_timeout": args.heartbeat_timeout,
        "max_connection_age": args.max_connection_age,
        "simulate_rate": args.simulate,
        "seed": args.seed,
        "chaos_rate": args.chaos,
        "chaos_faults": tuple(kind.strip() for kind in (args.chaos_faults or "").split(",") if kind.strip()),
        "redis_url": args.redis,
        "node_id": args.node_id,
        "max_connections_per_ip": args.max_connections_per_ip,
        "header_timeout": args.header_timeout,
        "idle_timeout": args.idle_timeout,
        "max_tcp_connections": args.max_tcp_connections,
        "max_tcp_connections_per_ip": args.max_tcp_connections_per_ip,
        "auth_failures_per_second": args.auth_failures_per_second,
        "auth_failure_burst": args.auth_failure_burst,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "variants": merge_variants(file_variants, args.variant),
    }
    given = {name: value for name, value in flags.items() if value is not None}  # None: the field's default
    return converted(given, ServerConfig, spell=spell_setting), notices


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        config, notices = build_config(args)
    except ConfigurationError as exc:
        print(f"userstream serve: {exc}", file=sys.stderr)
        return 2
    before, after = raise_descriptor_limit()  # the connection cap is derived from it (limits.py)
    if after != before:
        log_event(_log, logging.INFO, "descriptor limit raised", before=before, after=after)
    try:
        return asyncio.run(_serve(config, notices))
    except ConfigurationError as exc:  # a TLS certificate or key that cannot be loaded
        print(f"userstream serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the port is taken, the address is not ours...
        print(
            f"userstream serve: cannot listen on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr
        )
        return 1


async def _serve(config: ServerConfig, notices: list[str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_server(config) as handle:
            # Everything made so far (modules, the app, the accounts) lives as long as the process: leave
            # it out of every future full collection, whose pause otherwise grows with it (~35 ms of
            # scanning on the reference machine, seen as p99 spikes in docs/performance.md).
            gc.collect()
            gc.freeze()
            _announce(handle, notices)
            log_event(
                _log,
                logging.INFO,
                "serving",
                url=handle.base_url,
                accounts=[account.name for account in config.accounts],
                simulate=config.simulate_rate,
                variants=list(config.variants),
            )
            await stop.wait()
            log_event(_log, logging.INFO, "shutting down")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log_event(_log, logging.INFO, "stopped")
    return 0


def _announce(handle: ServerHandle, notices: list[str]) -> None:
    lines = [
        f"userstream serve: listening on {handle.base_url}",
        *_exchange_lines(handle),
        f"  ingest              POST {handle.base_url}{ADMIN_EVENTS_PATH}",
        *(
            [f"  variants            {' '.join(handle.server.variants.names)}"]
            if handle.server.variants
            else []
        ),
        *notices,
    ]
    print("\n".join(lines), flush=True)


def _exchange_lines(handle: ServerHandle) -> list[str]:
    """Each exchange's listenKey route (if it has one) and user stream, as the banner shows them."""
    lines = []
    for entry in REGISTRY.values():
        if entry.listen_key_path is not None:
            lines.append(
                f"  {entry.title + ' listenKey':<20}POST|PUT|DELETE {handle.base_url}{entry.listen_key_path}"
            )
        by_path = entry.handshake_names_account is AccountNamedBy.LISTEN_KEY_IN_PATH
        lines.append(
            f"  {entry.title + ' stream':<20}{handle.ws_url}{entry.ws_path}{'<listenKey>' if by_path else ''}"
        )
    return lines


def _account_toml(account: Account) -> str:
    lines = ["[[accounts]]", f'name = "{account.name}"', f"uid = {account.uid}"]
    lines += [f'{key} = "{value}"' for key, value in account.credentials().items()]
    return "\n".join(lines)
