"""`userstream gateway --config gateway.toml`: the gateway as a service, until SIGINT or SIGTERM.

Thin: it reads the config (the flags `--http-port`, `--http-host` and `--data-dir` override its [gateway]
table, checked by `GatewayConfig`'s own declarations, whose defaults their help shows), sets up
JSON logging on stderr, starts a `Gateway`, prints one line saying where its HTTP API listens, and waits for
a signal; then the gateway stops its streams and flushes its sinks. Exit codes: 0 after a signal once every
event was written; 1 if a sink lost events or the HTTP port could not be bound; 2 for a bad config or a
missing credential variable (the message names the account and the key or variable, never a value), or
a sink that cannot be used (a read-only SQLite database, a directory where its file should be).

A fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) never ends the process silently: `faulthandler`
writes the Python traceback of every thread to stderr first (docs/reliability.md, "Sinks that cannot write").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import logging
import signal
import sys
from typing import Any

import msgspec

from userstream.clihelp import parser_texts
from userstream.errors import ConfigurationError
from userstream.gateway.app import Gateway
from userstream.gateway.cluster import ClusterConfig
from userstream.gateway.config import GatewayConfig, load_config
from userstream.logs import configure_logging, log_event
from userstream.netguard import raise_descriptor_limit
from userstream.validation import default_of

__all__ = ["add_parser", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
_PROG = "userstream gateway"
_log = logging.getLogger("userstream.gateway")
#: The defaults of the [cluster] table's timings (ClusterConfig), which --lease-ttl and --lease-renew show.
_CLUSTER_DEFAULTS = {field.name: field.default for field in dataclasses.fields(ClusterConfig)}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gateway",
        help="stream many accounts on both exchanges into sinks, with an HTTP API (docs/gateway.md)",
        **parser_texts(
            "Run every account of a config file in one process: each event goes to the configured sinks "
            "and to /events subscribers, and /healthz, /metrics and /accounts answer over HTTP (GET / "
            "lists the endpoints). Credentials are read from the environment variables the config names "
            "(its *_env keys), never from the file; examples/gateway.toml is a complete example, "
            "docs/gateway.md has every key.",
            [
                (
                    "against `userstream serve --accounts examples/accounts.toml`, its variables exported",
                    "userstream gateway --config examples/gateway.toml",
                ),
                (
                    "another port and data directory than the config's",
                    "userstream gateway --config gateway.toml --http-port 9100 --data-dir /srv/userstream",
                ),
                (
                    "two instances sharing the accounts through Redis",
                    "userstream gateway --config gateway.toml --redis redis://127.0.0.1:6379/0 --instance a",
                ),
            ],
        ),
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway config (TOML)")
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        metavar="PORT",
        help=f"HTTP port (default: the config's, {default_of(GatewayConfig, 'http_port')} if it has none; "
        "0 picks a free one)",
    )
    parser.add_argument(
        "--http-host",
        default=None,
        metavar="ADDRESS",
        help=f"HTTP address (default: the config's, {default_of(GatewayConfig, 'http_host')} if it has none)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help=f"directory of the sink files the config names by a relative path (default: the config's "
        f"data_dir, {default_of(GatewayConfig, 'data_dir')!r} if it has none; created when needed)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="share the config's accounts with every instance given the same Redis: each account is "
        "leased to one instance (overrides [cluster] redis_url; docs/scaling.md)",
    )
    parser.add_argument(
        "--instance", metavar="ID", default=None, help="this instance's name (default: <host>-<pid>)"
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"lease TTL (default: {_CLUSTER_DEFAULTS['lease_ttl']:g})",
    )
    parser.add_argument(
        "--lease-renew",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often leases are renewed and free accounts sought "
        f"(default: {_CLUSTER_DEFAULTS['renew_interval']:g}; at most TTL/3)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="log level of the JSON logs on stderr (default: %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    faulthandler.enable(all_threads=True)
    try:
        config = load_config(args.config)
        flags = {"http_port": args.http_port, "http_host": args.http_host, "data_dir": args.data_dir}
        overrides: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
        cluster = _cluster(config.cluster, args)
        if cluster is not None:
            overrides["cluster"] = cluster
        config = msgspec.structs.replace(config, **overrides)  # __post_init__ checks them
    except ConfigurationError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    before, after = raise_descriptor_limit()  # the HTTP API's cap is derived from it (http.py)
    if after != before:
        log_event(_log, logging.INFO, "descriptor limit raised", before=before, after=after)
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return EXIT_FAILED


def _cluster(configured: ClusterConfig | None, args: argparse.Namespace) -> ClusterConfig | None:
    """The [cluster] table with the flags applied over it (a cluster from the flags alone with --redis)."""
    flags: dict[str, Any] = {
        key: value
        for key, value in (
            ("redis_url", args.redis),
            ("instance", args.instance),
            ("lease_ttl", args.lease_ttl),
            ("renew_interval", args.lease_renew),
        )
        if value is not None
    }
    if not flags:
        return configured
    if configured is None:
        if "redis_url" not in flags:
            raise ConfigurationError("--instance, --lease-ttl and --lease-renew need --redis (or [cluster])")
        return ClusterConfig(**flags)
    return dataclasses.replace(configured, **flags)


async def _serve(config: GatewayConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        gateway = Gateway(config)
        try:
            async with gateway:
                where = gateway.http_url or "not served"
                print(f"{_PROG}: {len(config.accounts)} accounts; HTTP API on {where}", flush=True)
                await stop.wait()
                log_event(_log, logging.INFO, "stopping on a signal")
        except ConfigurationError as exc:
            print(f"{_PROG}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except OSError as exc:  # the HTTP port is taken, the address is not ours...
            print(f"{_PROG}: cannot serve HTTP: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    lost = gateway.lost_events
    if lost:
        print(f"{_PROG}: {lost} events were not written to every sink (see the log)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
