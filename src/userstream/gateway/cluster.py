"""A sharded gateway's settings: the `[cluster]` table and `--redis`/`--instance`, and who should stream what.

Several `userstream gateway` instances given the same config and the same Redis share its accounts: each
account is leased in Redis to exactly one instance at a time (leases.py runs that). This module owns the
settings (`ClusterConfig`: where Redis is, this instance's name, the lease's TTL and renew interval, the key
prefix), their validation, and `preferred_member`, the pure rule that spreads accounts over the live
instances (rendezvous hashing: each account goes to the instance with the highest hash of (account,
instance), so when an instance joins or leaves only the accounts it gains or held move). It imports no
Redis client: a gateway without `[cluster]` never needs redis-py.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from userstream.errors import ConfigurationError

__all__ = ["CLUSTER_KEYS", "ClusterConfig", "default_instance", "parse_cluster", "preferred_member"]

CLUSTER_KEYS = frozenset({"redis_url", "instance", "lease_ttl", "renew_interval", "prefix"})
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NOT_INSTANCE = re.compile(r"[^A-Za-z0-9._-]")
#: An instance that cannot renew stops streaming this far into the TTL after its last renewal was sent,
#: before anyone else may take the lease: the rest is a margin for clocks that run at different speeds.
FENCE_FRACTION = 0.8


def default_instance() -> str:
    """`<host>-<pid>`: distinct for every process of one machine, readable in logs."""
    host = _NOT_INSTANCE.sub("-", socket.gethostname())[:40].strip("-._") or "gateway"
    return f"{host}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where the leases live and how long they hold (seconds).

    `lease_ttl`: how long a lease lasts without renewal, so the longest an account is unstreamed after its
    instance dies (plus one `renew_interval` and the time to connect). `renew_interval`: how often the
    leases are renewed and the free ones sought; at most a third of the TTL, so an instance gets two
    chances to renew before it must stop. `prefix` starts every Redis key (one per shared config).
    """

    redis_url: str = field(repr=False)  # may hold a password
    instance: str = field(default_factory=default_instance)
    lease_ttl: float = 15.0
    renew_interval: float = 5.0
    prefix: str = "userstream:gateway"

    def __post_init__(self) -> None:
        if not isinstance(self.redis_url, str) or not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigurationError("redis_url must start with redis://, rediss:// or unix://")
        if not isinstance(self.instance, str) or not _INSTANCE.fullmatch(self.instance):
            raise ConfigurationError(
                f"instance must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit), "
                f"not {self.instance!r}"
            )
        for key in ("lease_ttl", "renew_interval"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{key} must be a positive number of seconds, not {value!r}")
        if self.renew_interval * 3 > self.lease_ttl:
            raise ConfigurationError(
                f"renew_interval ({self.renew_interval:g}) must be at most a third of lease_ttl "
                f"({self.lease_ttl:g}): an instance needs two chances to renew before its lease may lapse"
            )
        if not isinstance(self.prefix, str) or not self.prefix or any(c.isspace() for c in self.prefix):
            raise ConfigurationError(f"prefix must be non-empty without spaces, not {self.prefix!r}")

    @property
    def fence_after(self) -> float:
        """Seconds after a renewal was sent until an instance that could not renew since must stop."""
        return self.lease_ttl * FENCE_FRACTION


def parse_cluster(table: Mapping[str, Any], where: str) -> ClusterConfig:
    """The `[cluster]` table (`where` names it in messages)."""
    unknown = sorted(set(table) - CLUSTER_KEYS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(CLUSTER_KEYS))})"
        )
    if "redis_url" not in table:
        raise ConfigurationError(f"{where}: key 'redis_url' is missing")
    try:
        return ClusterConfig(**table)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _score(account: str, member: str) -> int:
    digest = hashlib.blake2b(f"{account}\n{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred_member(account: str, members: Iterable[str]) -> str | None:
    """The live member that should stream `account` (rendezvous hashing), None when there is none."""
    return max(members, key=lambda member: (_score(account, member), member), default=None)
