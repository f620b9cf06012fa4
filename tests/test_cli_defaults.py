"""Every flag of `watch`, `serve` and `gateway` that sets a config field defaults to that field's default in
its Struct (the one definition: `StreamOptions`, `ServerConfig`, `GatewayConfig`), and its help names that
exact value; so a default changed in the Struct cannot leave a flag, or its help, saying the old one."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from userstream.cli import build_parser
from userstream.client.options import StreamOptions
from userstream.gateway.cluster import ClusterConfig
from userstream.gateway.config import GatewayConfig
from userstream.server.config import ServerConfig
from userstream.validation import default_of


def _parser(command: str) -> argparse.ArgumentParser:
    top = build_parser()
    [subparsers] = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = subparsers.choices[command]
    return parser


def _actions(command: str) -> dict[str, tuple[argparse.Action, str]]:
    """flag -> (its action, its help as printed)."""
    parser = _parser(command)
    return {
        action.option_strings[-1]: (action, parser._get_formatter()._expand_help(action))
        for action in parser._actions
        if action.option_strings and action.help
    }


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


#: serve's flags that set a ServerConfig field of another name.
_SERVE_RENAMED = {"simulate_rate": "--simulate", "chaos_rate": "--chaos", "redis_url": "--redis"}


def test_serve_flags_default_to_server_config_and_say_so() -> None:
    actions = _actions("serve")
    checked = []
    for field in ServerConfig.__struct_fields__:
        flag = _SERVE_RENAMED.get(field, _flag(field))
        if flag not in actions or field == "accounts":
            continue  # not a flag, or (--accounts) the file the accounts are read from
        action, text = actions[flag]
        # admin_token's default is generated afresh (its flag says so); the others are values
        default = default_of(ServerConfig, field) if field != "admin_token" else None
        if default is None or default == ():
            assert action.default in (None, []), flag  # left out: the field's default (None) applies
            continue
        assert action.default == default, flag
        assert f"(default: {default})" in text, (flag, text)
        checked.append(flag)
    assert checked == [
        "--host",
        "--port",
        "--listen-key-ttl",
        "--heartbeat-timeout",
        "--max-connection-age",
        "--header-timeout",
        "--idle-timeout",
        "--auth-failures-per-second",
        "--auth-failure-burst",
    ]


def test_watch_timing_flags_name_the_settled_defaults() -> None:
    actions = _actions("watch")
    settled = StreamOptions()  # every timing at its default: what a flag left out comes to
    expected = {
        "keepalive_interval": 1800,
        "ping_interval": 30,
        "idle_timeout": 45,
        "rotate_after": 84600,
        "sub_timeout": 10,
        "backoff_base": 1,
        "backoff_cap": 30,
        "stable_after": 60,
        "overlap_timeout": 5,
        "close_timeout": 5,
        "request_timeout": 10,
    }
    for field, value in expected.items():
        assert getattr(settled, field) == value
        action, text = actions[_flag(field)]
        assert action.default is None, field  # not passed: the library settles it
        assert f"(default {value}" in text, (field, text)


@pytest.mark.parametrize(
    ("flag", "field", "shown"),
    [
        ("--queue-size", "queue_size", "(default 10000)"),
        ("--queue-bytes", "queue_bytes", "(default: 33554432, 32 MiB)"),
        ("--overflow", "overflow", "(default: block)"),
        ("--account", "account", "(default: default)"),
    ],
)
def test_watch_option_flags_default_to_stream_options(flag: str, field: str, shown: str) -> None:
    action, text = _actions("watch")[flag]
    default = default_of(StreamOptions, field)
    assert action.default == getattr(default, "value", default)
    assert shown in text


def test_gateway_flags_name_the_defaults_of_the_config_they_override() -> None:
    actions = _actions("gateway")
    for flag, field, shown in (
        ("--http-port", "http_port", "the config's, 8080 if it has none"),
        ("--http-host", "http_host", "the config's, 127.0.0.1 if it has none"),
        ("--data-dir", "data_dir", "data_dir, 'data' if it has none"),
    ):
        action, text = actions[flag]
        assert action.default is None  # left out: the config's value, else the Struct's default
        assert str(default_of(GatewayConfig, field)) in shown
        assert shown in text, (flag, text)
    cluster = {field.name: field.default for field in dataclasses.fields(ClusterConfig)}
    assert (cluster["lease_ttl"], cluster["renew_interval"]) == (15.0, 5.0)
    assert "(default: 15)" in actions["--lease-ttl"][1]
    assert "(default: 5; at most TTL/3)" in actions["--lease-renew"][1]
