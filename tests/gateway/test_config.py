"""gateway.toml: what is accepted, what is refused (naming account and key), and credentials by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from userstream.client import StreamOptions
from userstream.client.queue import Overflow
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.gateway import AccountConfig, Gateway, GatewayConfig, load_config, parse_config
from userstream.gateway.config import resolve_credentials
from userstream.sinks import SqliteSpec

EXAMPLE = Path(__file__).parents[2] / "examples" / "gateway.toml"


def bitmusa(**overrides: Any) -> dict[str, Any]:
    table = {"name": "alice", "exchange": "bitmusa", "api_key_env": "ALICE_KEY", "auth_key_env": "ALICE_AUTH"}
    table.update(overrides)
    return table


def coinlocally(**overrides: Any) -> dict[str, Any]:
    """A Coinlocally account table; an override of None removes the key."""
    table = {"name": "bob", "exchange": "coinlocally", "token_env": "BOB_TOKEN"}
    table.update(overrides)
    return {key: value for key, value in table.items() if value is not None}


def refused(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(document, source="gateway.toml")
    return str(caught.value)


def test_a_full_config() -> None:
    config = parse_config(
        {
            "gateway": {"http_host": "127.0.0.1", "http_port": 9000, "health_grace": 5, "sse_queue": 10},
            "defaults": {
                "ping_interval": 10,
                "idle_timeout": 25,
                "keepalive_interval": 900,
                "quotes": ["USDT"],
                "snapshot_symbols": ["ETH/USDT"],
            },
            "accounts": [
                bitmusa(rest_url="http://127.0.0.1:8765", ws_url="ws://127.0.0.1:8765", rotate_after=0),
                coinlocally(
                    token_env=None,
                    api_key_env="BOB_API_KEY",
                    secret_key_env="BOB_SECRET",
                    snapshot_rest_url="https://openapi.example",
                    snapshot_symbols=["BTC/USDT"],
                    overflow="drop_oldest",
                    idle_timeout=30,
                ),
            ],
            "sinks": [{"type": "sqlite", "path": "events.db"}],
        }
    )
    assert config == GatewayConfig(
        accounts=(
            AccountConfig(
                name="alice",
                exchange=Exchange.BITMUSA,
                credential_env={"api_key": "ALICE_KEY", "auth_key": "ALICE_AUTH"},
                rest_url="http://127.0.0.1:8765",
                ws_url="ws://127.0.0.1:8765",
                snapshot_symbols=("ETH/USDT",),
                # Defaults apply where they mean something: quotes is Coinlocally's, keepalive Bitmusa's.
                options={
                    "ping_interval": 10,
                    "idle_timeout": 25,
                    "keepalive_interval": 900,
                    "rotate_after": None,
                },
            ),
            AccountConfig(
                name="bob",
                exchange=Exchange.COINLOCALLY,
                credential_env={"api_key": "BOB_API_KEY", "secret_key": "BOB_SECRET"},
                snapshot_rest_url="https://openapi.example",
                snapshot_symbols=("BTC/USDT",),
                options={
                    "ping_interval": 10,
                    "idle_timeout": 30,
                    "quotes": ("USDT",),
                    "overflow": Overflow.DROP_OLDEST,
                },
            ),
        ),
        sinks=(SqliteSpec(path="events.db"),),
        http_host="127.0.0.1",
        http_port=9000,
        health_grace=5,
        sse_queue=10,
    )


def test_the_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert [(account.name, account.exchange.value) for account in config.accounts] == [
        ("alice-bitmusa", "bitmusa"),
        ("alice-coinlocally", "coinlocally"),
        ("bob-coinlocally", "coinlocally"),
    ]
    assert [type(sink).__name__ for sink in config.sinks] == ["SqliteSpec", "JsonlSpec"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"accounts": [bitmusa(api_key="plain")]},
            "gateway.toml: account 'alice': key 'api_key' would hold a credential in plaintext; put the "
            "value in an environment variable and name it with api_key_env instead",
        ),
        (
            {"accounts": [coinlocally(token="plain")]},
            "gateway.toml: account 'bob': key 'token' would hold a credential in plaintext; put the value in "
            "an environment variable and name it with token_env instead",
        ),
        (
            {"defaults": {"secret_key": "plain"}, "accounts": [bitmusa()]},
            "gateway.toml: [defaults]: key 'secret_key' would hold a credential in plaintext; put the value "
            "in an environment variable and name it with secret_key_env instead",
        ),
        (
            {"accounts": [{"exchange": "bitmusa"}]},
            "gateway.toml: accounts[0]: key 'name' is missing",
        ),
        (
            {"accounts": [bitmusa(name="a b")]},
            "gateway.toml: accounts[0]: key 'name' must be 1-64 of A-Z a-z 0-9 . _ - (got 'a b')",
        ),
        (
            {"accounts": [bitmusa(exchange="binance")]},
            "gateway.toml: account 'alice': key 'exchange' must be 'bitmusa' or 'coinlocally', not 'binance'",
        ),
        (
            {"accounts": [{"name": "alice", "api_key_env": "K", "auth_key_env": "A"}]},
            "gateway.toml: account 'alice': key 'exchange' is missing",
        ),
        (
            {"accounts": [{"name": "alice", "exchange": "bitmusa", "api_key_env": "K"}]},
            "gateway.toml: account 'alice': key 'auth_key_env' is missing (Bitmusa needs both keys)",
        ),
        (
            {
                "accounts": [
                    coinlocally(token_env=None) | {"token_env": "T"} | {"name": "bob"},
                    bitmusa(name="bob"),
                ]
            },
            "gateway.toml: account 'bob': duplicate name (names label events: unique)",
        ),
        (
            {"accounts": [{"name": "bob", "exchange": "coinlocally", "secret_key_env": "S"}]},
            "gateway.toml: account 'bob': key 'token_env' or 'api_key_env' is missing (Coinlocally streams "
            "with one credential; snapshot resync needs api_key_env with secret_key_env)",
        ),
        (
            {"accounts": [coinlocally(api_key_env="K")]},
            "gateway.toml: account 'bob': key 'token_env' or 'api_key_env' are both set; set one",
        ),
        (
            {"accounts": [bitmusa(token_env="T")]},
            "gateway.toml: account 'alice': key 'token_env' does not apply to bitmusa",
        ),
        (
            {"accounts": [coinlocally(rest_url="https://x.example")]},
            "gateway.toml: account 'bob': key 'rest_url' does not apply to coinlocally",
        ),
        (
            {"accounts": [bitmusa(pingg_interval=3)]},
            "gateway.toml: account 'alice': unknown key 'pingg_interval' (allowed: ",
        ),
        (
            {"accounts": [bitmusa(api_key_env="not a name")]},
            "gateway.toml: account 'alice': key 'api_key_env' must name an environment variable "
            "(letters, digits, _), not 'not a name'",
        ),
        (
            {"accounts": [bitmusa(ping_interval="fast")]},
            "gateway.toml: account 'alice': ping_interval must be a positive number of seconds, not 'fast'",
        ),
        (
            {"accounts": [bitmusa(ping_interval=30, idle_timeout=20)]},
            "gateway.toml: account 'alice': idle_timeout (20s) must exceed ping_interval (30s)",
        ),
        (
            {"defaults": {"queue_size": 0}, "accounts": [bitmusa()]},
            "gateway.toml: account 'alice': queue_size must be a positive integer, not 0",
        ),
        (
            {"defaults": {"queue_bytes": 0}, "accounts": [bitmusa()]},
            "gateway.toml: account 'alice': queue_bytes must be a positive integer, not 0",
        ),
        (
            {"accounts": [coinlocally(overflow="newest")]},
            "gateway.toml: account 'bob': key 'overflow' must be 'block' or 'drop_oldest', not 'newest'",
        ),
        (
            {"accounts": [bitmusa(ws_url="http://127.0.0.1")]},
            "gateway.toml: account 'alice': key 'ws_url' must be an absolute wss:// or ws:// URL, "
            "not 'http://127.0.0.1'",
        ),
        (
            {"accounts": [bitmusa(resync="yes")]},
            "gateway.toml: account 'alice': key 'resync' must be true or false",
        ),
        (
            {"accounts": [bitmusa()], "sinks": [{"type": "sqlite"}]},
            "gateway.toml: sinks[0]: invalid sink options: Object missing required field `path`",
        ),
        (
            {"gateway": {"port": 1}, "accounts": [bitmusa()]},
            "gateway.toml: [gateway]: unknown key 'port' (allowed: data_dir, health_grace, "
            "http_header_timeout, http_host, http_idle_timeout, http_max_connections, "
            "http_max_connections_per_ip, http_port, shutdown_timeout, sse_max_subscribers, sse_queue, "
            "sse_write_timeout)",
        ),
        (
            {"gateway": {"http_port": 70000}, "accounts": [bitmusa()]},
            "gateway.toml: http_port must be in 0..65535, not 70000",
        ),
        (
            {"gateway": {"sse_queue": 0}, "accounts": [bitmusa()]},
            "gateway.toml: sse_queue must be a positive integer, not 0",
        ),
        ({"accounts": []}, "gateway.toml: expected at least one [[accounts]] table"),
        ({"account": [bitmusa()]}, "gateway.toml: unknown top-level key 'account'"),
    ],
)
def test_a_bad_config_is_refused_naming_the_account_and_key(document: dict[str, Any], message: str) -> None:
    assert refused(document).startswith(message)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[[accounts]\n")
    with pytest.raises(ConfigurationError, match=r"gateway\.toml: not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigurationError, match=r"cannot read config file '.*missing\.toml'"):
        load_config(tmp_path / "missing.toml")


def test_credentials_come_from_the_named_variables() -> None:
    account = parse_config({"accounts": [bitmusa()]}).accounts[0]
    environ = {"ALICE_KEY": "k-SECRET", "ALICE_AUTH": "a-SECRET", "OTHER": "x"}
    assert resolve_credentials(account, environ) == {"api_key": "k-SECRET", "auth_key": "a-SECRET"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"ALICE_KEY": "k-SECRET"},
            "account 'alice': environment variable ALICE_AUTH (auth_key_env) is not set",
        ),
        (
            {"ALICE_KEY": "k-SECRET", "ALICE_AUTH": "  "},
            "account 'alice': environment variable ALICE_AUTH (auth_key_env) is empty",
        ),
    ],
)
def test_a_missing_variable_is_named_and_no_value_shown(environ: dict[str, str], message: str) -> None:
    account = parse_config({"accounts": [bitmusa()]}).accounts[0]
    with pytest.raises(ConfigurationError) as caught:
        resolve_credentials(account, environ)
    assert str(caught.value) == message
    assert "k-SECRET" not in str(caught.value)


async def test_a_gateway_with_a_missing_variable_refuses_to_start_and_leaves_nothing_running() -> None:
    config = parse_config({"gateway": {"http_port": 0}, "accounts": [bitmusa(), coinlocally()]})
    gateway = Gateway(config, environ={"ALICE_KEY": "k", "ALICE_AUTH": "a"})
    with pytest.raises(ConfigurationError) as caught:
        await gateway.start()
    assert str(caught.value) == "account 'bob': environment variable BOB_TOKEN (token_env) is not set"
    assert gateway.http_url is None
    assert all(account.stream is None or not account.stream.running for account in gateway.accounts)


# --- timings: a key left out fits the keys set; only keys that contradict each other are refused ----------


def test_a_timing_the_file_leaves_out_is_derived_by_the_client_not_refused() -> None:
    # The gateway keeps what the file says; the client derives the rest exactly as connect() does.
    config = parse_config(
        {
            "defaults": {"idle_timeout": 30},
            "accounts": [bitmusa(backoff_cap=0.5), coinlocally(rotate_after=60, ping_interval=2)],
        }
    )
    alice, bob = config.accounts
    assert alice.options == {"idle_timeout": 30, "backoff_cap": 0.5}
    assert bob.options == {"idle_timeout": 30, "rotate_after": 60, "ping_interval": 2}
    derived = StreamOptions(**alice.options)
    assert (derived.ping_interval, derived.backoff_base, derived.sub_timeout) == (20.0, 0.5, 10.0)
    derived = StreamOptions(**bob.options)
    assert (derived.ping_interval, derived.overlap_timeout, derived.stable_after) == (2, 5.0, 30.0)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"defaults": {"ping_interval": 30}, "accounts": [bitmusa(idle_timeout=20)]},
            "gateway.toml: account 'alice': idle_timeout (20s) must exceed [defaults] ping_interval (30s): "
            "the pong of a ping is what proves a quiet connection alive (give one of the two and the other "
            "is derived from it)",
        ),
        (
            {"defaults": {"backoff_base": 5}, "accounts": [coinlocally(backoff_cap=2)]},
            "gateway.toml: account 'bob': backoff_cap (2s) must be at least [defaults] backoff_base (5s)",
        ),
        (
            {"accounts": [bitmusa(keepalive_interval=3600)]},
            "gateway.toml: account 'alice': keepalive_interval (3600s) must be shorter than the listenKey's "
            "validity (3600s)",
        ),
        (
            {"accounts": [coinlocally(rotate_after=10, overlap_timeout=10)]},
            "gateway.toml: account 'bob': overlap_timeout (10s) must be shorter than rotate_after (10s): a "
            "rotation's hand-over would last until the next rotation is due",
        ),
        (
            {"defaults": {"stable_after": 90000}, "accounts": [bitmusa()]},
            "gateway.toml: account 'alice': [defaults] stable_after (90000s) must be shorter than "
            "rotate_after (84600s by default): every connection would be rotated before it counted as "
            "stable, so the reconnect backoff would never start over",
        ),
        (
            {"accounts": [bitmusa(rotate_after=-1)]},
            "gateway.toml: account 'alice': rotate_after must be a positive number of seconds (0 turns "
            "rotation off), not -1",
        ),
        (
            {"defaults": {"idle_timeout": "5s"}, "accounts": [bitmusa()]},
            "gateway.toml: account 'alice': [defaults] idle_timeout must be a positive number of seconds, "
            "not '5s'",
        ),
    ],
)
def test_contradicting_timing_keys_are_refused_naming_the_keys(
    document: dict[str, Any], message: str
) -> None:
    assert refused(document) == message


async def test_a_gateway_with_only_an_idle_timeout_streams_both_exchanges(lab: Any) -> None:
    async with lab() as env:
        document = env.document(accounts=("alice",))
        document["defaults"] = {"idle_timeout": 5, "resync": False}  # every other timing at its default
        async with env.gateway(parse_config(document, source="test")) as gateway:
            assert [runtime.stream.options.ping_interval for runtime in gateway.accounts] == [10 / 3, 10 / 3]
            await env.ingest("alice", [{"kind": "balance", "asset": "USDT", "free": "1.5", "locked": "0"}])
            await env.until(lambda: all(runtime.state.snapshot().balances for runtime in gateway.accounts))
            for runtime in gateway.accounts:
                status, body = await env.get(gateway, f"/accounts/{runtime.name}/balances")
                assert status == 200
                assert [(b["asset"], b["free"], b["locked"]) for b in body["balances"]] == [
                    ("USDT", "1.5", "0")
                ]


def test_queue_bytes_is_a_stream_option_of_either_exchange() -> None:
    config = parse_config(
        {"defaults": {"queue_bytes": 8 << 20}, "accounts": [bitmusa(), coinlocally(queue_bytes=1 << 20)]}
    )
    assert [account.options["queue_bytes"] for account in config.accounts] == [8 << 20, 1 << 20]


# --- the tables as data: one conversion, the registry's keys, the cluster's Struct -------------------------


def test_each_exchange_takes_the_keys_its_registry_entry_names() -> None:
    # An unknown key lists what the account's exchange takes: its credentials, and no key only the other
    # exchange takes (rest_url, keepalive_interval and close_key_on_exit are Bitmusa's).
    message = refused({"accounts": [coinlocally(pingg_interval=3)]})
    assert message == (
        "gateway.toml: account 'bob': unknown key 'pingg_interval' (allowed: api_key_env, auth_attempts, "
        "backoff_base, backoff_cap, ca_file, close_timeout, exchange, idle_timeout, max_frame, name, "
        "overflow, overlap_timeout, ping_interval, queue_bytes, queue_size, quotes, request_timeout, "
        "resync, rotate_after, secret_key_env, snapshot_rest_url, snapshot_symbols, stable_after, "
        "sub_timeout, token_env, verify_tls, warning_interval, ws_url)"
    )


@pytest.mark.parametrize(
    ("account", "message"),
    [
        # A missing or malformed name is said first (every other refusal names the account) ...
        (
            {"name": "a b", "exchange": "binance", "api_key": "plain"},
            "gateway.toml: accounts[0]: key 'name' must be 1-64 of A-Z a-z 0-9 . _ - (got 'a b')",
        ),
        # ... then a credential in plaintext ...
        (
            bitmusa(exchange="binance", api_key="plain"),
            "gateway.toml: account 'alice': key 'api_key' would hold a credential in plaintext; put the "
            "value in an environment variable and name it with api_key_env instead",
        ),
        # ... and of several unknown keys, the first in order.
        (
            bitmusa(zeta=1, alpha=2),
            "gateway.toml: account 'alice': unknown key 'alpha' (allowed: ",
        ),
        (
            bitmusa(name=5),
            "gateway.toml: accounts[0]: key 'name' must be 1-64 of A-Z a-z 0-9 . _ - (got 5)",
        ),
        (
            bitmusa(exchange=5),
            "gateway.toml: account 'alice': key 'exchange' must be 'bitmusa' or 'coinlocally', not 5",
        ),
        (
            coinlocally(quotes=["USDT", ""]),
            "gateway.toml: account 'bob': key 'quotes' must be a list of quote assets",
        ),
        (
            bitmusa(verify_tls="no"),
            "gateway.toml: account 'alice': key 'verify_tls' must be true or false",
        ),
        (
            bitmusa(rest_url=5),
            "gateway.toml: account 'alice': key 'rest_url' must be a URL string",
        ),
        (
            bitmusa(max_frame=0),
            "gateway.toml: account 'alice': max_frame must be a positive integer, not 0",
        ),
    ],
)
def test_a_refusal_names_what_the_table_got_wrong_first(account: dict[str, Any], message: str) -> None:
    assert refused({"accounts": [account]}).startswith(message)


def test_the_cluster_table_is_a_struct_that_never_shows_its_redis_url() -> None:
    document = {"accounts": [bitmusa()], "cluster": {"redis_url": "redis://:hunter2@r/0", "instance": "gw-1"}}
    cluster = parse_config(document).cluster
    assert cluster is not None
    assert repr(cluster) == (
        "ClusterConfig(instance='gw-1', lease_ttl=15.0, renew_interval=5.0, prefix='userstream:gateway')"
    )
    document["cluster"] = {"redis_url": "http://:hunter2@r/0"}
    assert refused(document) == (
        "gateway.toml: [cluster]: redis_url must start with redis://, rediss:// or unix://"
    )
    document["cluster"] = {"redis_url": "redis://r", "instance": 5}
    assert refused(document) == (
        "gateway.toml: [cluster]: instance must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or "
        "digit), not 5"
    )
