"""Account leases (gateway/leases.py, gateway/cluster.py) against a real redis-server, in this process.

The coordinators get start/stop callbacks that record what they are told, the very calls a `Gateway` makes
into its supervisor: two coordinators share the accounts without overlap; a lease found taken is stopped at
once; without Redis every stream is stopped before its lease can lapse (fencing), and taken again when
Redis returns; a clean stop frees the leases. The spreading rule (rendezvous hashing) moves only a departed
member's accounts. The config's `[cluster]` table and the CLI flags are refused with precise messages.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio

from userstream.errors import ConfigurationError
from userstream.gateway import parse_config
from userstream.gateway.cluster import ClusterConfig, preferred_member
from userstream.gateway.leases import LeaseCoordinator

ACCOUNTS = tuple(f"account-{n}" for n in range(6))
WAIT = 10.0
TTL, RENEW = 0.9, 0.2


class Streams:
    """What a gateway would be streaming, as told by one coordinator's callbacks."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.stops: list[tuple[str, str]] = []

    def start(self, account: str) -> None:
        assert account not in self.running
        self.running.add(account)

    async def stop(self, account: str, reason: str) -> None:
        self.running.discard(account)
        self.stops.append((account, reason))


@pytest.fixture
async def coordinators(redis_server: Any) -> AsyncIterator[Callable[[str], tuple[LeaseCoordinator, Streams]]]:
    """`coordinators(instance)`: a running coordinator and its Streams; all stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    def make(instance: str) -> tuple[LeaseCoordinator, Streams]:
        config = ClusterConfig(
            redis_url=redis_server.url, instance=instance, lease_ttl=TTL, renew_interval=RENEW
        )
        streams = Streams()
        coordinator = LeaseCoordinator(config, ACCOUNTS, start=streams.start, stop=streams.stop)
        tasks.append(asyncio.create_task(coordinator.run()))
        return coordinator, streams

    try:
        yield make
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - the coordinators' sets have no change signal
            await asyncio.sleep(0.01)


async def test_two_instances_share_the_accounts_without_overlap(coordinators: Any, redis_server: Any) -> None:
    first, first_streams = coordinators("gw-1")
    second, second_streams = coordinators("gw-2")
    await until(
        lambda: (
            len(first.members) == len(second.members) == 2
            and set(first.held) | set(second.held) == set(ACCOUNTS)
            and not set(first.held) & set(second.held)
        )
    )
    assert first_streams.running == set(first.held)
    assert second_streams.running == set(second.held)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        for account in ACCOUNTS:
            owner = first if account in first.held else second
            assert await client.get(f"userstream:gateway:lease:{account}") == owner.member.encode()
            assert preferred_member(account, owner.members) == owner.member
    finally:
        await client.aclose()


async def test_a_lease_found_taken_stops_its_stream_at_once(coordinators: Any, redis_server: Any) -> None:
    coordinator, streams = coordinators("gw-1")
    await until(lambda: set(coordinator.held) == set(ACCOUNTS))
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.set("userstream:gateway:lease:account-3", "thief/0", px=60_000)
        await until(lambda: "account-3" not in streams.running)
        assert streams.stops == [("account-3", "its lease was lost")]
        assert (coordinator.lost, "account-3" in coordinator.held) == (1, False)
        await asyncio.sleep(3 * RENEW)  # rounds go by: the thief's lease holds, so it is not taken back
        assert streams.running == set(ACCOUNTS) - {"account-3"}
    finally:
        await client.aclose()


async def test_without_redis_streams_stop_before_their_leases_lapse_and_resume_after(
    coordinators: Any, redis_server: Any
) -> None:
    coordinator, streams = coordinators("gw-1")
    await until(lambda: set(coordinator.held) == set(ACCOUNTS))
    redis_server.stop()
    await until(lambda: not streams.running)
    assert sorted(streams.stops) == [(account, "its lease could not be renewed") for account in ACCOUNTS]
    assert coordinator.problem is not None
    assert coordinator.problem.startswith("Redis unreachable")
    redis_server.start()  # empty: every lease is free again
    await until(lambda: streams.running == set(ACCOUNTS) and coordinator.problem is None)


async def test_a_clean_stop_frees_the_leases(coordinators: Any, redis_server: Any) -> None:
    coordinator, _ = coordinators("gw-1")
    await until(lambda: set(coordinator.held) == set(ACCOUNTS))
    assert await coordinator.release_all() == len(ACCOUNTS)
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        keys = [f"userstream:gateway:lease:{account}" for account in ACCOUNTS]
        assert await client.mget(keys) == [None] * len(ACCOUNTS)
        members = await client.zrange("userstream:gateway:instances", 0, -1)
        assert coordinator.member.encode() not in members
    finally:
        await client.aclose()


def test_rendezvous_hashing_moves_only_the_departed_members_accounts() -> None:
    accounts = [f"account-{n}" for n in range(300)]
    members = ["gw-1/aa", "gw-2/bb", "gw-3/cc"]
    before = {account: preferred_member(account, members) for account in accounts}
    shares = {member: list(before.values()).count(member) for member in members}
    assert all(share > 60 for share in shares.values()), shares
    after = {account: preferred_member(account, members[1:]) for account in accounts}
    moved = {account for account in accounts if before[account] != after[account]}
    assert moved == {account for account in accounts if before[account] == "gw-1/aa"}
    assert preferred_member("account-1", []) is None


def document(**cluster: Any) -> dict[str, Any]:
    return {
        "accounts": [{"name": "a", "exchange": "coinlocally", "token_env": "A_TOKEN"}],
        "cluster": cluster,
    }


def test_the_cluster_table_is_read_and_checked() -> None:
    config = parse_config(
        document(redis_url="redis://127.0.0.1:6379/0", instance="gw-1", lease_ttl=6, renew_interval=2),
        source="g.toml",
    )
    assert config.cluster == ClusterConfig(
        redis_url="redis://127.0.0.1:6379/0", instance="gw-1", lease_ttl=6, renew_interval=2
    )
    assert config.cluster.fence_after == pytest.approx(4.8)
    refusals = {
        "g.toml: [cluster]: key 'redis_url' is missing": document(instance="gw-1"),
        "g.toml: [cluster]: unknown key 'ttl' "
        "(allowed: instance, lease_ttl, prefix, redis_url, renew_interval)": (
            document(redis_url="redis://r", ttl=3)
        ),
        "g.toml: [cluster]: redis_url must start with redis://, rediss:// or unix://": document(
            redis_url="http://r"
        ),
        "g.toml: [cluster]: renew_interval (5) must be at most a third of lease_ttl (10): an instance needs "
        "two chances to renew before its lease may lapse": document(
            redis_url="redis://r", lease_ttl=10, renew_interval=5
        ),
        "g.toml: [cluster]: instance must be 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit), "
        "not 'gw 1'": document(redis_url="redis://r", instance="gw 1"),
        "g.toml: [cluster]: lease_ttl must be a positive number of seconds, not 0": document(
            redis_url="redis://r", lease_ttl=0
        ),
    }
    for message, bad in refusals.items():
        with pytest.raises(ConfigurationError) as refused:
            parse_config(bad, source="g.toml")
        assert str(refused.value) == message


def test_the_gateway_flags_make_or_override_the_cluster() -> None:
    from userstream.gateway.command import _cluster  # noqa: PLC0415 - the CLI's own merge rule

    base = ClusterConfig(redis_url="redis://a/0", instance="gw-1", lease_ttl=15, renew_interval=5)
    flags = argparse.Namespace(redis=None, instance=None, lease_ttl=None, lease_renew=None)
    assert _cluster(None, flags) is None
    assert _cluster(base, flags) is base
    flags.instance, flags.lease_ttl, flags.lease_renew = "gw-9", 3.0, 1.0
    assert _cluster(base, flags) == ClusterConfig(
        redis_url="redis://a/0", instance="gw-9", lease_ttl=3.0, renew_interval=1.0
    )
    with pytest.raises(ConfigurationError, match="need --redis"):
        _cluster(None, flags)
    flags.redis = "redis://b/1"
    assert _cluster(None, flags) == ClusterConfig(
        redis_url="redis://b/1", instance="gw-9", lease_ttl=3.0, renew_interval=1.0
    )
