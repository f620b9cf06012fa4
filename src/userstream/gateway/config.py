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

An `[[accounts]]` table, with `[defaults]` merged under it, is converted in one place too (`_account`, one
`msgspec.convert`) into a tagged union of table Structs, one per exchange, made from the exchange registry
(`protocol.registry`: which credentials it needs, which options only it takes) over one catalogue of every
key's declared type (`_KEY_TYPES`: the stream options' own, from `StreamOptions`, and the gateway's).
msgspec's refusal is said as before (`_account_refusal`): the account and the key, in the words the key's
type declares. What a type cannot say is checked after, from the same registry and the client's own
rules: one of two credentials (`credentials_one_of`), the URLs (`check_url`), the timings between them
(`resolve`).
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

from userstream.client.options import TIMINGS, StreamOptions, resolve
from userstream.client.queue import Overflow
from userstream.client.rest import check_url
from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.gateway.cluster import ClusterConfig, parse_cluster
from userstream.protocol.registry import REGISTRY, ExchangeSpec, spec
from userstream.sinks.config import JsonlSpec, SinkSpec, SqliteSpec, load_spec
from userstream.validation import Count, Seconds, Wording, check_fields, failure, must, wording
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

_Port = Annotated[int, Meta(ge=0, le=65535, extra=must("be in 0..65535"))]
_Directory = Annotated[str, Meta(min_length=1, extra=must("be a directory's path"))]

# --- an [[accounts]] table: every key's declared type, and one table Struct per exchange -------------------

_NAME_WORDS: Final = "be 1-64 of A-Z a-z 0-9 . _ -"
_AccountName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", extra=must(_NAME_WORDS))]
_EnvName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z",
        extra=must("name an environment variable (letters, digits, _)"),
    ),
]
_Url = Annotated[str, Meta(extra=must("be a URL string", quiet=True))]
_Text = Annotated[str, Meta(min_length=1)]
_Symbols = Annotated[tuple[_Text, ...], Meta(extra=must("be a list of symbols", quiet=True))]
_Quotes = Annotated[tuple[_Text, ...], Meta(extra=must("be a list of quote assets", quiet=True))]
_Switch = Annotated[bool, Meta(extra=must("be true or false", quiet=True))]
_Policy = Annotated[Overflow, Meta(extra=must("be " + " or ".join(repr(p.value) for p in Overflow)))]
_RotateAfter = Annotated[
    float, Meta(ge=0, extra=must("be a positive number of seconds (0 turns rotation off)"))
]
#: How a table whose `exchange` names none is refused (the union's tag: no type of its own).
_EXCHANGE_WORDING: Final = Wording("be " + " or ".join(repr(e.value) for e in REGISTRY))

#: The keys the gateway declares itself, refused as `key 'K' must ...`.
_OWN_TYPES: Final[Mapping[str, Any]] = {
    "name": _AccountName,
    **dict.fromkeys(CREDENTIAL_ENV_KEYS, _EnvName),
    "rest_url": _Url,
    "ws_url": _Url,
    "snapshot_rest_url": _Url,
    "snapshot_symbols": _Symbols,
    "resync": _Switch,
    # stream options in the gateway's own words (TOML's forms)
    "overflow": _Policy,
    "quotes": _Quotes,
    "verify_tls": _Switch,
    "close_key_on_exit": _Switch,
}
_OPTION_TYPES: Final = typing.get_type_hints(StreamOptions, include_extras=True)
#: Every key an `[[accounts]]` table may hold, and its declared type: a stream option's is `StreamOptions`'
#: (refused in its words, named bare) but `rotate_after`'s, which takes 0 (rotation off), and the
#: gateway's own.
_KEY_TYPES: Final[Mapping[str, Any]] = {
    **{key: _OPTION_TYPES[key] for key in sorted(STREAM_OPTION_KEYS)},
    "rotate_after": _RotateAfter,
    **_OWN_TYPES,
}
_URL_SCHEMES: Final = {
    "rest_url": ("https", "http"),
    "ws_url": ("wss", "ws"),
    "snapshot_rest_url": ("https", "http"),
}


def _allowed(entry: ExchangeSpec) -> frozenset[str]:
    """The keys an account of this exchange takes: its credentials, and every other key but those only
    another exchange takes (`only_options`)."""
    keys = _credential_keys(entry) | (frozenset(_KEY_TYPES) - frozenset(CREDENTIAL_ENV_KEYS))
    return (keys - {key for key, only in _ONLY_ON.items() if only is not entry.exchange}) | {"exchange"}


def _table_type(entry: ExchangeSpec) -> type[msgspec.Struct]:
    """The `[[accounts]]` table of an account of this exchange, tagged `exchange = "<its name>"`: its name
    and the credentials it needs all of are required; any other key it takes is UNSET when left out."""
    required = ("name", *(_env_key(credential) for credential in entry.credentials_required))
    optional = sorted(_allowed(entry) - {"exchange", *required})
    return msgspec.defstruct(
        f"{entry.title}AccountTable",
        [(key, _KEY_TYPES[key]) for key in required]
        + [(key, Union[_KEY_TYPES[key], UnsetType], UNSET) for key in optional],  # noqa: UP007
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
        tag_field="exchange",
        tag=entry.exchange.value,
        module=__name__,
    )


#: Each exchange's table Struct -> its registry entry.
_TABLES: Final[Mapping[type[msgspec.Struct], ExchangeSpec]] = {
    _table_type(entry): entry for entry in REGISTRY.values()
}
#: What an `[[accounts]]` table is converted into: one of the tables, by its `exchange`.
_ACCOUNT_TABLE: Final[Any] = Union[tuple(_TABLES)]  # noqa: UP007
#: Every key some exchange's account takes (another's is refused as not applying, not as unknown).
_ANY_EXCHANGE_KEYS: Final = frozenset().union(*(_allowed(entry) for entry in REGISTRY.values()))


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


def _account(table: object, index: int, defaults: Mapping[str, Any], source: str) -> AccountConfig:
    """One `[[accounts]]` table, with `[defaults]` merged under it, as an `AccountConfig`: the one
    `msgspec.convert` into its exchange's table Struct, then what a type cannot say."""
    table = _table(table, f"{source}: accounts[{index}]")
    exchange = table.get("exchange")
    merged = {  # an exchange-specific default skips the other exchange's accounts
        key: value
        for key, value in defaults.items()
        if key not in _ONLY_ON or _ONLY_ON[key].value == exchange
    }
    merged.update(table)
    inherited = frozenset(merged) - set(table)
    try:
        parsed = msgspec.convert(merged, _ACCOUNT_TABLE)
    except msgspec.ValidationError as exc:
        refusal = _account_refusal(exc, index, table, merged, inherited)
        raise ConfigurationError(f"{source}: {refusal}") from None
    entry = _TABLES[type(parsed)]
    given = {key: getattr(parsed, key) for key in parsed.__struct_fields__}
    given = {key: value for key, value in given.items() if value is not UNSET}
    name: str = given["name"]
    try:
        _check_credentials(entry, given)
        for key, schemes in _URL_SCHEMES.items():
            if key in given:
                check_url(given[key], schemes, f"key {key!r}")
        options = _stream_options(given, name, inherited)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: account {name!r}: {exc}") from None
    return AccountConfig(
        name=name,
        exchange=entry.exchange,
        credential_env={
            credential: given[key] for key, credential in CREDENTIAL_ENV_KEYS.items() if key in given
        },
        rest_url=given.get("rest_url"),
        ws_url=given.get("ws_url"),
        snapshot_rest_url=given.get("snapshot_rest_url"),
        snapshot_symbols=given.get("snapshot_symbols"),
        resync=given.get("resync", True),
        options=options,
    )


def _account_refusal(
    error: msgspec.ValidationError,
    index: int,
    table: Mapping[str, Any],
    merged: Mapping[str, Any],
    inherited: frozenset[str],
) -> str:
    """msgspec's refusal of an account table, in the gateway's words: the account (`accounts[<i>]` while
    it has no usable name) and the key, in the words the key's type declares. A missing or malformed name
    is said first, then a credential written in plaintext, as every other refusal names the account."""
    name = table.get("name")
    if not _fits(name, _AccountName):
        where = f"accounts[{index}]"
        if name is None:
            return f"{where}: key 'name' is missing"
        return f"{where}: key 'name' must {_NAME_WORDS} (got {name!r})"
    where = f"account {name!r}"
    for key in sorted(set(table) & _PLAINTEXT_KEYS):
        return f"{where}: {_plaintext(key)}"
    found = failure(error)
    key = found.missing or re.split(r"[.\[]", found.key or "", maxsplit=1)[0]
    if key == "exchange":  # the union's tag
        if found.missing is not None:
            return f"{where}: key 'exchange' is missing"
        return f"{where}: {_EXCHANGE_WORDING.refuse('key ' + repr(key), table.get(key))}"
    entry = spec(Exchange(table["exchange"]))
    if found.unknown is not None:
        unknown = min(set(table) - _allowed(entry), default=found.unknown)  # the first, in key order
        if unknown in _ANY_EXCHANGE_KEYS:
            return f"{where}: key {unknown!r} does not apply to {entry.exchange.value}"
        allowed = ", ".join(sorted(_allowed(entry)))
        return f"{where}: unknown key {unknown!r} (allowed: {allowed})"
    if found.missing is not None:  # a credential the exchange needs all of
        required = [_env_key(credential) for credential in entry.credentials_required]
        needs = "both keys" if len(required) == 2 else "all of " + ", ".join(required)
        return f"{where}: key {key!r} is missing ({entry.title} needs {needs})"
    declared = wording(_KEY_TYPES[key]) if key in _KEY_TYPES and key in merged else None
    if declared is None:
        return f"{where}: key {key!r}: {found.reason}"
    return f"{where}: {declared.refuse(_spelled(key, inherited), merged[key])}"


def _spelled(key: str, inherited: frozenset[str]) -> str:
    """How a refusal names a key: one of the gateway's own as `key 'K'`; a stream option bare, as the
    client names it, and a timing the account inherits as `[defaults] K` (as the rules between timings
    name it)."""
    if key in _OWN_TYPES:
        return f"key {key!r}"
    return f"[defaults] {key}" if key in inherited and key in TIMINGS else key


def _fits(value: object, annotation: Any) -> bool:
    try:
        msgspec.convert(value, annotation)
    except msgspec.ValidationError:
        return False
    return True


def _plaintext(key: str) -> str:
    return (
        f"key {key!r} would hold a credential in plaintext; put the value in an environment variable and "
        f"name it with {key}_env instead"
    )


def _refuse_plaintext(table: Mapping[str, Any], where: str) -> None:
    for key in sorted(set(table) & _PLAINTEXT_KEYS):
        raise ConfigurationError(f"{where}: {_plaintext(key)}")


def _check_credentials(entry: ExchangeSpec, given: Mapping[str, Any]) -> None:
    """Exactly one of the credentials the exchange needs one of (`credentials_one_of`); those it needs
    all of are required fields of its table."""
    one_of = [_env_key(credential) for credential in entry.credentials_one_of]
    chosen = [key for key in one_of if key in given]
    if one_of and len(chosen) != 1:
        both = "are both set" if len(chosen) == 2 else "are set"
        problem = "is missing" if not chosen else f"{both}; set one"
        signing = "".join(
            f"; snapshot resync needs {_env_key(with_)} with {_env_key(credential)}"
            for credential, with_ in entry.credentials_optional
        )
        raise ConfigurationError(
            f"key {' or '.join(repr(key) for key in one_of)} {problem} ({entry.title} streams with "
            f"one credential{signing})"
        )


def _stream_options(given: Mapping[str, Any], name: str, inherited: frozenset[str]) -> dict[str, Any]:
    """The stream options the table sets (converted already), held to the client's rules between them.

    The timings go through the client's own rules (`client.options.resolve`), with the keys spelled as the
    file has them: a timing the account (or `[defaults]`) leaves out is derived by the client, and only a
    contradiction between keys the file sets is refused, naming them (`[defaults] ping_interval` for one
    the account inherits, as the account's own keys are named bare). Then `StreamOptions` itself, for
    what else the client refuses (a CA file it cannot read)."""
    options = {key: given[key] for key in sorted(STREAM_OPTION_KEYS) if key in given}
    if "rotate_after" in options and options["rotate_after"] == 0:
        options["rotate_after"] = None  # 0 disables rotation, as `userstream watch --rotate-after 0`

    def spell(key: str) -> str:
        return f"[defaults] {key}" if key in inherited else key

    resolve({key: value for key, value in options.items() if key in TIMINGS}, spell=spell, rotation_off="0")
    StreamOptions(account=name, **options)
    return options
