"""The gateway's configuration file (`gateway.toml`): accounts, sinks and the service's own knobs, validated.

This module owns the file's shape and every rule about it: which keys an account of each exchange takes,
that credentials are *named* (the environment variables holding them) and never written in the file, the
`[defaults]` table merged under every account, and the checks that refuse a bad file before anything starts,
with a message naming the account and the key. It reads files and, in `resolve_credentials`, an environment
mapping; it opens no connection. Stream timings are validated by the client's own rules (`resolve`, then
`StreamOptions`), so the gateway can never accept a value `connect()` would refuse, and a timing the file
leaves out adapts to those it sets, as in `connect()`. docs/gateway.md is the reference of every key.

`GatewayConfig` and `AccountConfig` are msgspec Structs, the one definition of the service's keys: their
types declare the constraints and the words a refusal uses (`userstream.validation`), their defaults are the
ones `userstream gateway`'s flags show. The `[gateway]` table is converted into a `GatewayConfig` in one
place (`parse_config`, by `msgspec.convert`); the command's flags are laid over it with
`msgspec.structs.replace`, whose `__post_init__` holds them to the same declarations (and names no file).
Which credentials and keys an account of each exchange takes is read from the exchange registry
(`protocol.registry`), not branched on.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from userstream.client.options import TIMINGS, StreamOptions, resolve
from userstream.client.queue import Overflow
from userstream.client.rest import check_url
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.gateway.cluster import ClusterConfig, parse_cluster
from userstream.protocol.registry import REGISTRY, ExchangeSpec, spec
from userstream.sinks.config import JsonlSpec, SinkSpec, SqliteSpec, load_spec
from userstream.validation import Count, Seconds, check_fields, must
from userstream.validation import converted as msgspec_converted

__all__ = [
    "CREDENTIAL_ENV_KEYS",
    "DEFAULT_DATA_DIR",
    "STREAM_OPTION_KEYS",
    "AccountConfig",
    "GatewayConfig",
    "load_config",
    "parse_config",
    "resolve_credentials",
    "sink_in_data_dir",
]

#: Where sink files named by a relative path are written (itself relative to the working directory) unless
#: `[gateway] data_dir` or `--data-dir` says otherwise: one directory to back up or ignore, never the files
#: scattered over whichever directory the gateway was started in.
DEFAULT_DATA_DIR = "data"

#: `<credential>_env` key -> the `connect()` argument the named variable's value is passed as.
CREDENTIAL_ENV_KEYS: dict[str, str] = {
    "api_key_env": "api_key",
    "auth_key_env": "auth_key",
    "token_env": "token",
    "secret_key_env": "secret_key",
}

#: Keys that would hold a credential in plaintext: refused (the file would become a secret to guard).
_PLAINTEXT_KEYS = frozenset({"api_key", "auth_key", "token", "secret_key", "secret", "password"})

#: `connect()` arguments an account (or `[defaults]`) may set, checked through `StreamOptions`: its fields
#: but the label (the account's name), the callables, the resync keys (endpoint keys here) and what the
#: gateway decides itself (it takes no fills, keeps its own picture, and resyncs when the account says).
STREAM_OPTION_KEYS: frozenset[str] = frozenset(StreamOptions.__struct_fields__) - {
    "account",
    "rng",
    "on_frame",
    "resync",
    "snapshot_symbols",
    "initial_snapshot",
    "fills",
    "picture",
}

_ENDPOINT_KEYS = frozenset({"rest_url", "ws_url", "snapshot_rest_url", "snapshot_symbols", "resync"})


def _env_key(credential: str) -> str:
    return f"{credential}_env"


def _credential_keys(entry: ExchangeSpec) -> frozenset[str]:
    """The `<credential>_env` keys an account of this exchange takes (from the exchange registry)."""
    optional = tuple(credential for credential, _ in entry.credentials_optional)
    return frozenset(
        _env_key(credential)
        for credential in (*entry.credentials_required, *entry.credentials_one_of, *optional)
    )


# Keys that only mean something on one exchange (refused on the other, so a typo cannot pass silently).
_ONLY_ON: Final[Mapping[str, Exchange]] = {
    key: entry.exchange for entry in REGISTRY.values() for key in entry.only_options
}
_DEFAULTABLE = STREAM_OPTION_KEYS | _ENDPOINT_KEYS
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_Port = Annotated[int, Meta(ge=0, le=65535, extra=must("be in 0..65535"))]
_Directory = Annotated[str, Meta(min_length=1, extra=must("be a directory's path"))]


class AccountConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One streamed account: where, as whom (the names of the variables holding its credentials), how.

    `name` is unique in a config: it labels the account's events and names it in the HTTP API and the
    metrics. `options` are further `connect()` arguments (timings, queue), already validated.
    """

    name: str
    exchange: Exchange
    credential_env: Mapping[str, str]  # connect() argument -> environment variable name
    rest_url: str | None = None
    ws_url: str | None = None
    snapshot_rest_url: str | None = None
    snapshot_symbols: tuple[str, ...] | None = None
    resync: bool = True
    options: Mapping[str, Any] = msgspec.field(default_factory=dict)


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole gateway: its accounts, its sinks, and the service's own settings (seconds where durations).

    `http_port=None` runs no HTTP server (a program embedding the gateway may not want one); 0 picks a
    free port. `health_grace`: how long an account may be without a live connection (starting, or between
    two connections) before /healthz reports it down; a failed account is down at once. `sse_queue`: events
    buffered per /events subscriber before that subscriber is dropped as too slow. `shutdown_timeout`: how
    long a stop waits for the sinks to write what they hold. The HTTP API's connections are bounded
    (docs/gateway.md, "Bounds"): `http_header_timeout` for a request head, `http_idle_timeout` between
    requests, `http_max_connections` in all (None: what the descriptor limit leaves, at most 1000) and
    `http_max_connections_per_ip` per address (None: 100 for other addresses, none for loopback);
    `sse_max_subscribers` /events readers at once (503 beyond), each write to one allowed
    `sse_write_timeout` seconds before the reader is disconnected. `data_dir` is the directory of the
    sink files named by a relative path (`sink_in_data_dir`).
    """

    accounts: tuple[AccountConfig, ...]
    sinks: tuple[SinkSpec, ...] = ()
    http_host: str = "127.0.0.1"
    http_port: _Port | None = 8080
    health_grace: Seconds = 10.0
    sse_queue: Count = 1000
    shutdown_timeout: Seconds = 10.0
    # the HTTP API's connection bounds (gateway/http.py, userstream.netguard)
    http_header_timeout: Seconds = 10.0
    http_idle_timeout: Seconds = 60.0
    http_max_connections: Count | None = None
    http_max_connections_per_ip: Count | None = None
    sse_max_subscribers: Count = 100
    sse_write_timeout: Seconds = 10.0
    cluster: ClusterConfig | None = None  # share the accounts with other instances (docs/scaling.md)
    data_dir: _Directory = DEFAULT_DATA_DIR

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.accounts:
            raise ConfigurationError("at least one account is required")
        names = [account.name for account in self.accounts]
        for name in names:
            if names.count(name) > 1:
                raise ConfigurationError(f"account {name!r}: duplicate name (names label events: unique)")

    def account(self, name: str) -> AccountConfig | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None


#: The `[gateway]` table's keys: every field of `GatewayConfig` but the tables of their own.
_GATEWAY_KEYS: Final = frozenset(GatewayConfig.__struct_fields__) - {"accounts", "sinks", "cluster"}


def sink_in_data_dir(spec: SinkSpec, data_dir: str) -> SinkSpec:
    """A JSONL or SQLite sink whose path is relative, placed in `data_dir` (a leading `~` is the home
    directory); any other sink as it is."""
    if isinstance(spec, JsonlSpec | SqliteSpec) and spec.path != "-" and not Path(spec.path).is_absolute():
        return msgspec.structs.replace(spec, path=str(Path(data_dir).expanduser() / spec.path))
    return spec


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check a gateway config file; ConfigurationError naming the file, account and key if bad."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {source!r}: {exc.strerror}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(document, source=source)


def parse_config(document: Mapping[str, Any], *, source: str = "gateway config") -> GatewayConfig:
    """Build a config from a decoded document (what `tomllib` gives)."""
    unknown = sorted(set(document) - {"gateway", "defaults", "accounts", "sinks", "cluster"})
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown top-level key {unknown[0]!r} (expected [gateway], [defaults], "
            "[[accounts]], [[sinks]], [cluster])"
        )
    cluster = None
    if "cluster" in document:
        where = f"{source}: [cluster]"
        cluster = parse_cluster(_table(document["cluster"], where), where)
    service = _table(document.get("gateway", {}), f"{source}: [gateway]")
    unknown = sorted(set(service) - _GATEWAY_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{source}: [gateway]: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_GATEWAY_KEYS))})"
        )
    defaults = _table(document.get("defaults", {}), f"{source}: [defaults]")
    _refuse_plaintext(defaults, f"{source}: [defaults]")
    unknown = sorted(set(defaults) - _DEFAULTABLE)
    if unknown:
        raise ConfigurationError(
            f"{source}: [defaults]: unknown key {unknown[0]!r} (credentials and names belong to each "
            f"account; allowed: {', '.join(sorted(_DEFAULTABLE))})"
        )
    tables = document.get("accounts")
    if not isinstance(tables, list) or not tables:
        raise ConfigurationError(f"{source}: expected at least one [[accounts]] table")
    accounts = tuple(_account(table, index, defaults, source) for index, table in enumerate(tables))
    sink_tables = document.get("sinks", [])
    if not isinstance(sink_tables, list):
        raise ConfigurationError(f"{source}: 'sinks' must be [[sinks]] tables")
    sinks = []
    for index, table in enumerate(sink_tables):
        where = f"{source}: sinks[{index}]"
        try:
            sinks.append(load_spec(_table(table, where)))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    try:  # the one conversion of the service's keys
        return msgspec_converted(
            {**service, "accounts": accounts, "sinks": tuple(sinks), "cluster": cluster}, GatewayConfig
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


def resolve_credentials(account: AccountConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The account's credentials read from `environ`, as `connect()` arguments.

    A variable that is unset or empty is a ConfigurationError naming the account and the variable (never
    any value). The values are returned, never logged or kept beyond the stream they are given to.
    """
    values: dict[str, str] = {}
    for argument, variable in account.credential_env.items():
        value = environ.get(variable)
        if value is None:
            raise ConfigurationError(
                f"account {account.name!r}: environment variable {variable} ({argument}_env) is not set"
            )
        if not value.strip():
            raise ConfigurationError(
                f"account {account.name!r}: environment variable {variable} ({argument}_env) is empty"
            )
        values[argument] = value
    return values


# --- internals --------------------------------------------------------------------------------------------


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a table")
    return value


def _refuse_plaintext(table: Mapping[str, Any], where: str) -> None:
    for key in sorted(set(table) & _PLAINTEXT_KEYS):
        raise ConfigurationError(
            f"{where}: key {key!r} would hold a credential in plaintext; put the value in an environment "
            f"variable and name it with {key}_env instead"
        )


def _account(table: object, index: int, defaults: Mapping[str, Any], source: str) -> AccountConfig:
    where = f"{source}: accounts[{index}]"
    table = _table(table, where)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problem = "is missing" if name is None else f"must be 1-64 of A-Z a-z 0-9 . _ - (got {name!r})"
        raise ConfigurationError(f"{where}: key 'name' {problem}")
    where = f"{source}: account {name!r}"
    _refuse_plaintext(table, where)
    raw_exchange = table.get("exchange")
    if raw_exchange not in tuple(Exchange):
        choices = " or ".join(repr(e.value) for e in Exchange)
        problem = "is missing" if raw_exchange is None else f"must be {choices}, not {raw_exchange!r}"
        raise ConfigurationError(f"{where}: key 'exchange' {problem}")
    exchange = Exchange(raw_exchange)
    entry = spec(exchange)

    credential_keys = _credential_keys(entry)
    allowed = {"name", "exchange"} | credential_keys | _ENDPOINT_KEYS | STREAM_OPTION_KEYS
    allowed -= {key for key, only in _ONLY_ON.items() if only is not exchange}
    for key in sorted(set(table) - allowed):
        if key in CREDENTIAL_ENV_KEYS or key in _ONLY_ON:
            raise ConfigurationError(f"{where}: key {key!r} does not apply to {exchange.value}")
        raise ConfigurationError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    merged = {
        key: value
        for key, value in defaults.items()
        if key not in _ONLY_ON or _ONLY_ON[key] is exchange  # an exchange-specific default skips the other
    }
    merged.update(table)

    credential_env = {}
    for key in sorted(credential_keys & set(table)):
        variable = table[key]
        if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
            raise ConfigurationError(
                f"{where}: key {key!r} must name an environment variable (letters, digits, _), "
                f"not {variable!r}"
            )
        credential_env[CREDENTIAL_ENV_KEYS[key]] = variable
    _check_credentials(entry, table, where)

    endpoints = _endpoints(merged, where)
    symbols = merged.get("snapshot_symbols")
    if symbols is not None and (
        not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols)
    ):
        raise ConfigurationError(f"{where}: key 'snapshot_symbols' must be a list of symbols")
    resync = merged.get("resync", True)
    if not isinstance(resync, bool):
        raise ConfigurationError(f"{where}: key 'resync' must be true or false")

    options = {key: merged[key] for key in STREAM_OPTION_KEYS if key in merged}
    options = _stream_options(options, name, where, inherited=frozenset(options) - set(table))
    return AccountConfig(
        name=name,
        exchange=exchange,
        credential_env=credential_env,
        rest_url=endpoints["rest_url"],
        ws_url=endpoints["ws_url"],
        snapshot_rest_url=endpoints["snapshot_rest_url"],
        snapshot_symbols=None if symbols is None else tuple(symbols),
        resync=resync,
        options=options,
    )


def _check_credentials(entry: ExchangeSpec, table: Mapping[str, Any], where: str) -> None:
    """The account names every credential its exchange needs (`credentials_required`), and exactly one of
    those it needs one of (`credentials_one_of`)."""
    required = [_env_key(credential) for credential in entry.credentials_required]
    for key in required:
        if key not in table:
            needs = "both keys" if len(required) == 2 else "all of " + ", ".join(required)
            raise ConfigurationError(f"{where}: key {key!r} is missing ({entry.title} needs {needs})")
    one_of = [_env_key(credential) for credential in entry.credentials_one_of]
    given = [key for key in one_of if key in table]
    if one_of and len(given) != 1:
        both = "are both set" if len(given) == 2 else "are set"
        problem = "is missing" if not given else f"{both}; set one"
        signing = "".join(
            f"; snapshot resync needs {_env_key(with_)} with {_env_key(credential)}"
            for credential, with_ in entry.credentials_optional
        )
        raise ConfigurationError(
            f"{where}: key {' or '.join(repr(key) for key in one_of)} {problem} ({entry.title} streams with "
            f"one credential{signing})"
        )


def _endpoints(merged: Mapping[str, Any], where: str) -> dict[str, str | None]:
    endpoints: dict[str, str | None] = {}
    for key, schemes in (
        ("rest_url", ("https", "http")),
        ("ws_url", ("wss", "ws")),
        ("snapshot_rest_url", ("https", "http")),
    ):
        value = merged.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigurationError(f"{where}: key {key!r} must be a URL string")
            try:
                check_url(value, schemes, f"key {key!r}")
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
        endpoints[key] = value
    return endpoints


def _stream_options(
    options: dict[str, Any], name: str, where: str, *, inherited: frozenset[str]
) -> dict[str, Any]:
    """Check the options as the client would (`StreamOptions`), and convert the TOML forms to its types.

    The timings go through the client's own rules (`client.options.resolve`), with the keys spelled as the
    file has them: a timing the account (or `[defaults]`) leaves out is derived by the client, and only a
    contradiction between keys the file sets is refused, naming them (`[defaults] ping_interval` for one
    the account inherits, as the account's own keys are named bare)."""
    converted = dict(options)
    if "rotate_after" in converted and converted["rotate_after"] == 0:
        converted["rotate_after"] = None  # 0 disables rotation, as `userstream watch --rotate-after 0`

    def spell(key: str) -> str:
        return f"[defaults] {key}" if key in inherited else key

    timings = {key: value for key, value in converted.items() if key in TIMINGS}
    try:
        resolve(timings, spell=spell, rotation_off="0")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    if "overflow" in converted:
        try:
            converted["overflow"] = Overflow(converted["overflow"])
        except ValueError:
            raise ConfigurationError(
                f"{where}: key 'overflow' must be 'block' or 'drop_oldest', not {converted['overflow']!r}"
            ) from None
    if "quotes" in converted:
        quotes = converted["quotes"]
        if not isinstance(quotes, list) or not all(isinstance(q, str) and q for q in quotes):
            raise ConfigurationError(f"{where}: key 'quotes' must be a list of quote assets")
        converted["quotes"] = tuple(quotes)
    for key in ("verify_tls", "close_key_on_exit"):
        if key in converted and not isinstance(converted[key], bool):
            raise ConfigurationError(f"{where}: key {key!r} must be true or false")
    try:  # the rest as the client holds it: StreamOptions' declared types, by msgspec.convert
        msgspec_converted({"account": name, **converted}, StreamOptions)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return converted
