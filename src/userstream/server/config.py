"""Configuration of `userstream serve`: accounts, timings and limits, and the accounts file.

This module owns `Account` (one trader's identity and credentials on both exchanges), `ServerConfig` (every
knob of the service, validated once, immutable) and `load_accounts` (the TOML accounts file, refused with a
message naming the account and key at fault). It performs no network I/O and never shows a secret: reprs and
error messages name credentials, never their values.

Both are msgspec Structs, the one definition of each setting: its type declares its constraint and the
words a refusal uses (`userstream.validation`), its default is the one `userstream serve`'s flags show.
The accounts file is read by `msgspec.convert` into `AccountsFile`, and serve's flags into `ServerConfig`
(`server/command.py`), each in one place; msgspec's refusals are said in this module's words
(`_file_refusal`). Which credentials an account needs on each exchange, and which of them find it, is
read from the exchange registry (`protocol.registry`: `credentials_required`, `credentials_one_of`,
`credentials_optional`, `credentials_identifying`), never branched on: the file's key of a credential is
`<exchange>_<credential>` (`credential_key`).
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import tomllib
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from userstream.errors import ConfigurationError
from userstream.events import Exchange
from userstream.protocol.registry import REGISTRY, ExchangeSpec, spec
from userstream.server.variants import parse_variants
from userstream.validation import Count, Seconds, check_fields, failure, field_wording, must

__all__ = [
    "CREDENTIAL_KEYS",
    "MIN_ADMIN_TOKEN_BITS",
    "Account",
    "AccountsFile",
    "ServerConfig",
    "credential_key",
    "demo_account",
    "generate_secret",
    "is_loopback",
    "load_accounts",
    "load_accounts_file",
    "parse_accounts",
    "spell_setting",
    "token_bits",
]

#: The credential keys of an `[[accounts]]` table, in the order they are documented.
CREDENTIAL_KEYS: tuple[str, ...] = (
    "bitmusa_api_key",
    "bitmusa_auth_key",
    "coinlocally_api_key",
    "coinlocally_token",
    "coinlocally_secret_key",
)
_MAX_UID = 2**63 - 1
#: The fault kinds `chaos_faults` may name (faults.FaultKind's values, which a test keeps equal).
_FAULT_KINDS = frozenset(
    {"drop", "stall", "expire_key", "delete_key", "system_close", "refuse", "delay", "clear"}
)
_MAX_CREDENTIAL_LENGTH = 512  # credentials travel in HTTP headers; absurd lengths are a typo, not a key

_Name = Annotated[str, Meta(pattern=r"\S", extra=must("be a non-empty string"))]
_Uid = Annotated[int, Meta(ge=0, le=_MAX_UID, extra=must("be a non-negative integer"))]
_Credential = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=_MAX_CREDENTIAL_LENGTH,
        extra=must(f"be a non-empty string of at most {_MAX_CREDENTIAL_LENGTH} characters"),
    ),
]
_Port = Annotated[int, Meta(ge=0, le=65535, extra=must("be in 0..65535"))]
_Rate = Annotated[float, Meta(gt=0, extra=must("be positive"))]
_Token = Annotated[str, Meta(min_length=1, extra=must("not be empty", quiet=True))]  # quiet: a secret
_NodeId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
        extra=must("be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"),
    ),
]
#: A Redis URL (quiet: it may hold a password).
_RedisUrl = Annotated[
    str,
    Meta(
        pattern=r"^(redis|rediss|unix)://",
        extra=must("start with redis://, rediss:// or unix://", quiet=True),
    ),
]
_Prefix = Annotated[str, Meta(pattern=r"^\S+\Z", extra=must("be non-empty without spaces"))]


def generate_secret() -> str:
    """A fresh credential or admin token: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether listening on `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost).

    Anything else, a name included (it may resolve to a public address), counts as beyond loopback.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One trader: a name (the label of its events), the uid of its SYSTEM notices, and its credentials.

    Bitmusa needs both `bitmusa_api_key` and `bitmusa_auth_key`; Coinlocally accepts either credential (the
    `token` header or the `api-key` header). An account may live on one exchange only.
    `coinlocally_secret_key` signs the api key's REST requests (the snapshot endpoints); it needs the api key.
    The repr shows the name and uid only.
    """

    name: _Name
    uid: _Uid
    bitmusa_api_key: _Credential | None = None
    bitmusa_auth_key: _Credential | None = None
    coinlocally_api_key: _Credential | None = None
    coinlocally_token: _Credential | None = None
    coinlocally_secret_key: _Credential | None = None

    def __post_init__(self) -> None:
        where = f"account {self.name!r}"
        check_fields(self, spell=lambda key: f"{where}: key {key!r}")  # built by keyword: as if read
        for key in CREDENTIAL_KEYS:
            value = getattr(self, key)
            if isinstance(value, str) and (not value.isprintable() or value != value.strip()):
                raise ConfigurationError(
                    f"{where}: key {key!r} must be printable with no surrounding spaces "
                    "(it travels in an HTTP header)"
                )

    def __repr__(self) -> str:
        return f"Account(name={self.name!r}, uid={self.uid!r})"

    def holds(self, exchange: Exchange) -> bool:
        """Whether the account can stream on `exchange`: every credential it needs all of, and one of
        those it needs one of (the exchange registry's `credentials_required`, `credentials_one_of`)."""
        entry = spec(exchange)
        given = {
            name for name in _credentials(entry) if getattr(self, credential_key(exchange, name)) is not None
        }
        one_of = entry.credentials_one_of
        return set(entry.credentials_required) <= given and (not one_of or bool(given & set(one_of)))

    def credentials(self) -> dict[str, str]:
        """The credentials that are set, by key. For printing a generated demo account, nothing else."""
        values = {key: getattr(self, key) for key in CREDENTIAL_KEYS}
        return {key: value for key, value in values.items() if value is not None}


def demo_account(name: str = "demo", uid: int = 24005174) -> Account:
    """An account with freshly generated credentials on both exchanges (`serve` without --accounts)."""
    return Account(
        name=name,
        uid=uid,
        bitmusa_api_key=generate_secret(),
        bitmusa_auth_key=generate_secret(),
        coinlocally_api_key=generate_secret(),
        coinlocally_token=generate_secret(),
        coinlocally_secret_key=generate_secret(),
    )


class AccountsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An accounts file: one `[[accounts]]` table per account, and the `variants` the run answers with."""

    accounts: Annotated[tuple[Account, ...], Meta(min_length=1)]
    variants: tuple[str, ...] = ()


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of `userstream serve`. Durations are seconds; the defaults are the documents' values.

    `port=0` asks the OS for a free port (tests). `simulate_rate` is events per second across all accounts,
    or None for no simulated market. `max_send_queue` bounds each connection's outgoing frames: a client that
    falls that far behind is closed (CloseCode.SLOW_CONSUMER) rather than allowed to grow the server's memory.
    `redis_url` makes this node one of several sharing listenKeys and fan-out through Redis (docs/scaling.md):
    `node_id` names it, `redis_prefix` starts every key it uses, `fanout_maxlen` bounds the fan-out stream,
    `redis_check_interval` is how often Redis's health is checked; None runs alone, in memory.
    `max_connections_per_ip` bounds the WebSockets open at once from one address (more are refused with
    HTTP 429 at the handshake); None: 100 for other addresses, none for loopback (limits.py).
    `header_timeout`, `idle_timeout`, `max_tcp_connections` and `max_tcp_connections_per_ip` bound every TCP
    connection (limits.py, userstream.netguard; None: derived). `auth_failures_per_second` and
    `auth_failure_burst` throttle failed authentications per address (429 beyond). `tls_cert` and
    `tls_key` (PEM files, both or neither) serve HTTPS and WSS.
    `ledger` keeps the ledger of what was published and sent on each connection (ledger.py, off unless asked
    for: the chaos tests and userstream.testing ask); `ledger_events` is how many published events per
    account it keeps.
    `chaos_rate` fires random faults (faults.py) at about that many per second, of the kinds `chaos_faults`
    names (empty: every kind but `clear`), seeded from `seed`. `variants` (`NAME` or `NAME=VALUE`, see
    variants.py and docs/server.md) make the run answer what the documents leave open another plausible way.
    The repr hides `admin_token` and `redis_url` (which may hold a password).
    """

    accounts: tuple[Account, ...]
    host: str = "127.0.0.1"
    port: _Port = 8765
    admin_token: _Token = msgspec.field(default_factory=generate_secret)
    listen_key_ttl: Seconds = 3600.0
    heartbeat_timeout: Seconds = 40.0
    max_connection_age: Seconds = 86400.0
    rate_limit_per_second: Count = 8
    rate_limit_per_minute: Count = 200
    simulate_rate: _Rate | None = None
    seed: int | None = None
    max_send_queue: Count = 4096
    max_client_frame: Count = 64 * 1024
    max_ingest_body: Count = 16 * 1024 * 1024
    close_timeout: Seconds = 5.0
    redis_url: _RedisUrl | None = None  # may hold a password
    node_id: _NodeId | None = None
    redis_prefix: _Prefix = "userstream:serve"
    fanout_maxlen: Count = 100_000
    redis_check_interval: Seconds = 1.0
    max_connections_per_ip: Count | None = None
    header_timeout: Seconds = 10.0
    idle_timeout: Seconds = 60.0
    max_tcp_connections: Count | None = None
    max_tcp_connections_per_ip: Count | None = None
    auth_failures_per_second: Seconds = 20.0
    auth_failure_burst: Count = 100
    tls_cert: str | None = None
    tls_key: str | None = None
    ledger: bool = False
    ledger_events: Count = 10_000
    chaos_rate: _Rate | None = None
    chaos_faults: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_accounts(self.accounts)
        parse_variants(self.variants)  # ConfigurationError naming the variant at fault
        check_fields(self, spell=spell_setting)
        unknown_faults = sorted(set(self.chaos_faults) - _FAULT_KINDS)
        if unknown_faults:
            known = ", ".join(sorted(_FAULT_KINDS))
            raise ConfigurationError(f"unknown fault {unknown_faults[0]!r} (known: {known})")
        if not is_loopback(self.host):
            _check_admin_token(self.admin_token, self.host)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")

    @property
    def uses_tls(self) -> bool:
        return self.tls_cert is not None

    def account(self, name: str) -> Account | None:
        for account in self.accounts:
            if account.name == name:
                return account
        return None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name not in _HIDDEN
        )
        return f"ServerConfig({shown})"


#: What `ServerConfig`'s repr leaves out: the admin token, and a Redis URL that may hold a password.
_HIDDEN: Final = frozenset({"admin_token", "redis_url"})


def spell_setting(name: str) -> str:
    """How a refusal names a `ServerConfig` field: its key, or the words serve's refusals have always used
    (the two rates as the flags' help says them, "the admin token", "node id", "the Redis URL")."""
    return _SPELLED.get(name, name)


_SPELLED: Final = {
    "simulate_rate": "simulate rate",
    "chaos_rate": "chaos rate",
    "admin_token": "the admin token",
    "node_id": "node id",
    "redis_url": "the Redis URL",
}


#: An admin token reachable beyond loopback must carry at least this much entropy (estimated).
MIN_ADMIN_TOKEN_BITS = 128
_HEX = frozenset("0123456789abcdef")
_HEX_UPPER = frozenset("0123456789ABCDEF")


def token_bits(token: str) -> float:
    """A generous estimate of a token's entropy in bits: its length times log2 of the alphabet its
    characters suggest (16 for hex; else digits 10, lowercase 26, uppercase 26, other printable ASCII 33 and
    anything else 64, added up for the classes it uses). A token of fewer than 8 distinct characters counts
    log2(distinct) bits a character instead, and no token counts more than 8 bits per byte of its zlib
    compression (less the format's 6 bytes), so a repeated word is not taken for randomness either."""
    if not token:
        return 0.0
    chars = set(token)
    if chars <= _HEX or chars <= _HEX_UPPER:
        alphabet = 16
    else:
        alphabet = 0
        alphabet += 10 if any(c.isdigit() and c.isascii() for c in chars) else 0
        alphabet += 26 if any("a" <= c <= "z" for c in chars) else 0
        alphabet += 26 if any("A" <= c <= "Z" for c in chars) else 0
        alphabet += 33 if any(c.isascii() and not c.isalnum() for c in chars) else 0
        alphabet += 64 if any(not c.isascii() for c in chars) else 0
    per_char = math.log2(max(alphabet, 2))
    if len(chars) < 8:
        per_char = min(per_char, math.log2(len(chars)))
    compressed = 8.0 * max(0, len(zlib.compress(token.encode(), 9)) - 6)
    return min(len(token) * per_char, compressed)


def _check_admin_token(token: str, host: str) -> None:
    bits = token_bits(token)
    if bits < MIN_ADMIN_TOKEN_BITS:
        raise ConfigurationError(
            f"--host {host} makes the admin API reachable beyond this machine, and the admin token is too "
            f"weak for that: about {int(bits)} bits of entropy, at least {MIN_ADMIN_TOKEN_BITS} needed (for "
            "example 32 hex digits or 22 random URL-safe characters: `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )


def load_accounts(path: str | Path) -> tuple[Account, ...]:
    """Read an accounts file (TOML, one `[[accounts]]` table per account); ConfigurationError if it is bad."""
    return load_accounts_file(path)[0]


def load_accounts_file(path: str | Path) -> tuple[tuple[Account, ...], tuple[str, ...]]:
    """The accounts of an accounts file and its top-level `variants` list (docs/server.md, "Variants")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read accounts file {str(path)!r}: {exc.strerror}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"accounts file {str(path)!r} is not valid TOML: {exc}") from None
    parsed = _accounts_file(document, str(path))
    return parsed.accounts, parsed.variants


def parse_accounts(document: Mapping[str, Any], *, source: str = "accounts") -> tuple[Account, ...]:
    """Build accounts from a decoded accounts document, refusing anything doubtful with a precise message."""
    return _accounts_file(document, source).accounts


def _accounts_file(document: Mapping[str, Any], source: str) -> AccountsFile:
    """The one conversion of an accounts document (`msgspec.convert`), refused in this module's words."""
    try:
        parsed = msgspec.convert(document, AccountsFile)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{source}: {_file_refusal(exc, document)}") from None
    except ConfigurationError as exc:  # Account.__post_init__, which names its account
        raise ConfigurationError(f"{source}: {exc}") from None
    try:
        parse_variants(parsed.variants)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    _check_accounts(parsed.accounts, source=source)
    return parsed


def _file_refusal(error: msgspec.ValidationError, document: Mapping[str, Any]) -> str:
    """msgspec's refusal of an accounts document, said as the account and key at fault."""
    found = failure(error)
    path = found.key or ""
    if not path.startswith("accounts"):
        if found.unknown is not None:
            return f"unknown top-level key {found.unknown!r} (expected [[accounts]] tables and variants)"
        if path.startswith("variants"):
            return "'variants' must be a list of strings (variant names)"
        return "expected at least one [[accounts]] table"
    index_text, _, key = path.removeprefix("accounts[").partition("]")
    if not index_text.isdigit():
        return "expected at least one [[accounts]] table"
    index = int(index_text)
    key = key.removeprefix(".") or (found.missing or "")
    table = document["accounts"][index]
    where = f"accounts[{index}]"
    if not isinstance(table, Mapping):
        return f"{where} must be a table"
    name = table.get("name")
    if key != "name" and isinstance(name, str) and name.strip():
        where = f"account {name!r}"
    if found.unknown is not None:
        allowed = ", ".join(sorted(Account.__struct_fields__))
        return f"{where}: unknown key {found.unknown!r} (allowed: {allowed})"
    if found.missing is not None:
        return f"{where}: key {key!r} is missing"
    declared = field_wording(Account, key)
    if declared is None:
        return f"{where}: key {key!r}: {found.reason}"
    return f"{where}: key {key!r} must {declared.words}"


def _check_accounts(accounts: Iterable[Account], *, source: str = "accounts") -> None:
    """Refuse accounts that cannot be told apart: the server finds an account by name or by credential.
    Which credentials an exchange needs, and which find an account, is the exchange registry's."""
    names: set[str] = set()
    owner_of: dict[tuple[Exchange, str], str] = {}
    count = 0
    for account in accounts:
        count += 1
        where = f"{source}: account {account.name!r}"
        if account.name in names:
            raise ConfigurationError(f"{where}: duplicate name")
        names.add(account.name)
        _check_credentials(account, where)
        for entry in REGISTRY.values():
            # An exchange finds an account by any of these (Coinlocally's token and api key share one
            # namespace: either may be sent in the sub frame), so a repeated one would make ownership
            # ambiguous; the others are checked against the account they found.
            for credential in entry.credentials_identifying:
                key = credential_key(entry.exchange, credential)
                value = getattr(account, key)
                if value is None:
                    continue
                previous = owner_of.get((entry.exchange, value))
                if previous is not None:
                    raise ConfigurationError(
                        f"{where}: key {key!r} repeats a credential of account {previous!r}"
                    )
                owner_of[(entry.exchange, value)] = account.name
    if count == 0:
        raise ConfigurationError(f"{source}: at least one account is required")


def _check_credentials(account: Account, where: str) -> None:
    """The account holds every credential an exchange needs all of, once it holds any of that exchange's
    (`credentials_required`), the one a credential given besides goes with (`credentials_optional`), and
    the credentials of at least one exchange."""
    for entry in REGISTRY.values():
        keys = [credential_key(entry.exchange, credential) for credential in _credentials(entry)]
        required = [credential_key(entry.exchange, credential) for credential in entry.credentials_required]
        if any(getattr(account, key) is not None for key in keys):
            for key in required:
                if getattr(account, key) is None:
                    needs = "both keys" if len(required) == 2 else "all of " + ", ".join(required)
                    raise ConfigurationError(f"{where}: key {key!r} is missing ({entry.title} needs {needs})")
    for entry in REGISTRY.values():
        for credential, with_ in entry.credentials_optional:
            key, needed = (credential_key(entry.exchange, name) for name in (credential, with_))
            if getattr(account, key) is not None and getattr(account, needed) is None:
                raise ConfigurationError(f"{where}: key {needed!r} is missing ({key} signs its requests)")
    if not any(account.holds(exchange) for exchange in REGISTRY):
        ways = []
        for entry in REGISTRY.values():
            required = sorted(credential_key(entry.exchange, name) for name in entry.credentials_required)
            one_of = sorted(credential_key(entry.exchange, name) for name in entry.credentials_one_of)
            ways.append(" and ".join(required) if required else " or ".join(one_of))
        raise ConfigurationError(f"{where}: no credentials (set {', and/or '.join(ways)})")


def credential_key(exchange: Exchange, credential: str) -> str:
    """The accounts file's key of an exchange's credential (`connect()`'s argument): `bitmusa_api_key`."""
    return f"{exchange.value}_{credential}"


def _credentials(entry: ExchangeSpec) -> tuple[str, ...]:
    """Every credential an account of this exchange may hold, as the registry lists them."""
    optional = tuple(credential for credential, _ in entry.credentials_optional)
    return (*entry.credentials_required, *entry.credentials_one_of, *optional)
