"""A sharded gateway's settings: the `[cluster]` table and `--redis`/`--instance`, and who should stream what.

Several `userstream gateway` instances given the same config and the same Redis share its accounts: each
account is leased in Redis to exactly one instance at a time (leases.py runs that). This module owns the
settings (`ClusterConfig`: where Redis is, this instance's name, the lease's TTL and renew interval, the key
prefix) and `preferred_member`, the pure rule that spreads accounts over the live instances (rendezvous
hashing: each account goes to the instance with the highest hash of (account, instance), so when an
instance joins or leaves only the accounts it gains or held move). It imports no Redis client: a gateway
without `[cluster]` never needs redis-py.

`ClusterConfig` is a frozen msgspec Struct, the one definition of the settings: each field's type declares
its constraint and the words of its refusal (`userstream.validation`), its default is the one the
command's flags show. The `[cluster]` table becomes one by `msgspec.convert` (`parse_cluster`), the flags by
keyword (gateway/command.py), whose `__post_init__` holds them to the same declarations; the one rule
between two settings (the renew interval against the TTL) is there too.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from userstream.errors import ConfigurationError
from userstream.validation import Seconds, check_fields, failure, field_wording, must

__all__ = ["CLUSTER_KEYS", "ClusterConfig", "default_instance", "parse_cluster", "preferred_member"]

_NOT_INSTANCE = re.compile(r"[^A-Za-z0-9._-]")
#: An instance that cannot renew stops streaming this far into the TTL after its last renewal was sent,
#: before anyone else may take the lease: the rest is a margin for clocks that run at different speeds.
FENCE_FRACTION = 0.8

#: A Redis URL (quiet: it may hold a password).
_RedisUrl = Annotated[
    str,
    Meta(
        pattern=r"^(redis|rediss|unix)://",
        extra=must("start with redis://, rediss:// or unix://", quiet=True),
    ),
]
_Instance = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
        extra=must("be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)"),
    ),
]
_Prefix = Annotated[str, Meta(pattern=r"^\S+\Z", extra=must("be non-empty without spaces"))]


def default_instance() -> str:
    """`<host>-<pid>`: distinct for every process of one machine, readable in logs."""
    host = _NOT_INSTANCE.sub("-", socket.gethostname())[:40].strip("-._") or "gateway"
    return f"{host}-{os.getpid()}"


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the leases live and how long they hold (seconds).

    `lease_ttl`: how long a lease lasts without renewal, so the longest an account is unstreamed after its
    instance dies (plus one `renew_interval` and the time to connect). `renew_interval`: how often the
    leases are renewed and the free ones sought; at most a third of the TTL, so an instance gets two
    chances to renew before it must stop. `prefix` starts every Redis key (one per shared config). The
    repr leaves out `redis_url`, which may hold a password.
    """

    redis_url: _RedisUrl
    instance: _Instance = msgspec.field(default_factory=default_instance)
    lease_ttl: Seconds = 15.0
    renew_interval: Seconds = 5.0
    prefix: _Prefix = "userstream:gateway"

    def __post_init__(self) -> None:
        check_fields(self)  # built by keyword (the flags): as if converted
        if self.renew_interval * 3 > self.lease_ttl:
            raise ConfigurationError(
                f"renew_interval ({self.renew_interval:g}) must be at most a third of lease_ttl "
                f"({self.lease_ttl:g}): an instance needs two chances to renew before its lease may lapse"
            )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name != "redis_url"
        )
        return f"ClusterConfig({shown})"

    @property
    def fence_after(self) -> float:
        """Seconds after a renewal was sent until an instance that could not renew since must stop."""
        return self.lease_ttl * FENCE_FRACTION


#: The `[cluster]` table's keys: `ClusterConfig`'s fields.
CLUSTER_KEYS: Final = frozenset(ClusterConfig.__struct_fields__)


def parse_cluster(table: Mapping[str, Any], where: str) -> ClusterConfig:
    """The `[cluster]` table, by `msgspec.convert` (`where` names it in messages)."""
    try:
        return msgspec.convert(table, ClusterConfig)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{where}: {_refusal(exc, table)}") from None
    except ConfigurationError as exc:  # __post_init__: the rule between two settings
        raise ConfigurationError(f"{where}: {exc}") from None


def _refusal(error: msgspec.ValidationError, table: Mapping[str, Any]) -> str:
    """msgspec's refusal of a `[cluster]` table, naming the key: unknown, missing, or a declared wording."""
    found = failure(error)
    if found.unknown is not None:
        return f"unknown key {found.unknown!r} (allowed: {', '.join(sorted(CLUSTER_KEYS))})"
    if found.missing is not None:
        return f"key {found.missing!r} is missing"
    key = found.key
    declared = None if key is None else field_wording(ClusterConfig, key)
    if key is None or declared is None or key not in table:
        return found.reason if key is None else f"{key}: {found.reason}"
    return declared.refuse(key, table[key])


def _score(account: str, member: str) -> int:
    digest = hashlib.blake2b(f"{account}\n{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred_member(account: str, members: Iterable[str]) -> str | None:
    """The live member that should stream `account` (rendezvous hashing), None when there is none."""
    return max(members, key=lambda member: (_score(account, member), member), default=None)
