"""Account leases in Redis: which gateway instance streams which account, so each is streamed by one.

`LeaseCoordinator` is one task of the gateway's supervisor. Every `renew_interval` seconds it:

1. announces this instance (`{prefix}:instances`, a sorted set of member -> expiry) and reads the live ones;
2. renews the leases it holds (`{prefix}:lease:{account}` = this member, PEXPIRE lease_ttl, only if still
   ours: one Lua script); a lease found gone or taken is **lost**: that account's stream is stopped at once;
3. releases the accounts the live instances' rendezvous hash now gives to another member (a new instance
   joined), stopping the stream first;
4. takes the free accounts the hash gives to this member (`SET NX PX lease_ttl`) and starts their streams
   (which begin with a REST snapshot resync: the instance that held them may have died mid-stream).

Fencing: while Redis cannot be reached nothing is renewed, and every account whose last renewal was sent
more than `FENCE_FRACTION` of the TTL ago is stopped, before its lease can lapse and be taken: while a
lease holds, no account is streamed twice. A member is `<instance>/<random>`, so two processes started
with one instance name never share a lease. On a clean stop the gateway stops its streams and then
`release_all` deletes its leases, so the others take over at their next round rather than after the TTL.
The account streams themselves are the gateway's (start and stop are its callbacks); this module only
decides. redis-py's errors stay here: they become `problem` (shown by /healthz), never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from userstream.gateway.cluster import ClusterConfig, preferred_member
from userstream.logs import log_event, redacted_url

__all__ = ["LeaseCoordinator"]

_log = logging.getLogger("userstream.gateway.leases")

# KEYS[1] the live members; ARGV[1] this member, ARGV[2] now (ms), ARGV[3] TTL (ms). Returns the members.
_HEARTBEAT = """
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: leases; ARGV[1] this member, ARGV[2] TTL (ms). Returns 1 per lease still ours (renewed), else 0.
_RENEW = """
local renewed = {}
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('PEXPIRE', key, ARGV[2])
        renewed[i] = 1
    else
        renewed[i] = 0
    end
end
return renewed
"""

# KEYS: leases; ARGV[1] this member. Deletes the leases that are still ours; returns how many.
_RELEASE = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        redis.call('DEL', key)
        released = released + 1
    end
end
return released
"""

Clock = Callable[[], float]
StartAccount = Callable[[str], None]
StopAccount = Callable[[str, str], Awaitable[None]]


class LeaseCoordinator:
    """Holds, renews, releases and takes the leases of one instance; starts and stops streams to match."""

    def __init__(
        self,
        config: ClusterConfig,
        accounts: Sequence[str],
        *,
        start: StartAccount,
        stop: StopAccount,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.member = f"{config.instance}/{secrets.token_hex(4)}"
        self.accounts = tuple(accounts)
        self.held: dict[str, float] = {}  # account -> the clock() time it must stop streaming if not renewed
        self.members: tuple[str, ...] = ()
        self.problem: str | None = "not connected to Redis yet"
        self.acquired = 0  # leases taken (takeovers and the first ones alike)
        self.lost = 0  # leases found taken or gone at renewal, or fenced for want of renewal
        self.released = 0  # leases handed over to another instance
        self._start = start
        self._stop = stop
        self._clock = clock
        self._members_key = f"{config.prefix}:instances"
        self._client = redis.asyncio.Redis.from_url(
            config.redis_url,
            socket_timeout=max(0.5, config.renew_interval),
            socket_connect_timeout=max(0.5, config.renew_interval),
            retry=Retry(NoBackoff(), 1),  # a dead pooled connection is replaced once; outages are ours
        )
        self._heartbeat = self._client.register_script(_HEARTBEAT)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    def __repr__(self) -> str:
        return f"LeaseCoordinator(member={self.member!r}, held={sorted(self.held)!r})"

    def lease_key(self, account: str) -> str:
        return f"{self.config.prefix}:lease:{account}"

    def describe(self) -> dict[str, Any]:
        """The cluster's part of /healthz."""
        return {
            "instance": self.config.instance,
            "member": self.member,
            "redis": redacted_url(self.config.redis_url),
            "members": len(self.members),
            "held": sorted(self.held),
            "problem": self.problem,
            "acquired": self.acquired,
            "lost": self.lost,
            "released": self.released,
        }

    async def run(self) -> None:
        """Rounds every `renew_interval` seconds, and fencing in between, until cancelled."""
        log_event(
            _log,
            logging.INFO,
            "leases: joining",
            member=self.member,
            redis=redacted_url(self.config.redis_url),
            accounts=len(self.accounts),
        )
        try:
            while True:
                started = self._clock()
                await self._round(started)
                next_round = started + self.config.renew_interval
                while (now := self._clock()) < next_round:
                    await self._fence(now)
                    deadline = min([next_round, *self.held.values()])
                    await asyncio.sleep(max(0.0, deadline - now))
                await self._fence(self._clock())
        finally:
            await self._client.aclose()

    async def _round(self, sent: float) -> None:
        ttl_ms = max(1, round(self.config.lease_ttl * 1000))
        held = list(self.held)
        try:
            # a Redis that hangs must not keep this round past the moment a lease has to be given up
            async with asyncio.timeout(self._budget()):
                members = await self._heartbeat(
                    keys=[self._members_key], args=[self.member, time.time_ns() // 1_000_000, ttl_ms]
                )
                renewed = await self._renew(
                    keys=[self.lease_key(a) for a in held], args=[self.member, ttl_ms]
                )
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            self._trouble(f"Redis unreachable: {exc or type(exc).__name__}")
            return
        if self.problem is not None:
            log_event(_log, logging.INFO, "leases: Redis reachable", member=self.member)
            self.problem = None
        self.members = tuple(sorted(_text(member) for member in members))
        for account, ok in zip(held, renewed or (), strict=False):
            if account not in self.held:
                continue  # stopped meanwhile
            if int(ok):
                self.held[account] = sent + self.config.fence_after
            else:
                self.lost += 1
                del self.held[account]
                log_event(_log, logging.WARNING, "lease lost", account=account, member=self.member)
                await self._stop(account, "its lease was lost")
        for account in [a for a in self.held if preferred_member(a, self.members) != self.member]:
            await self._hand_over(account)
        await self._take(sent, ttl_ms)

    async def _hand_over(self, account: str) -> None:
        """Another live instance is now the one for `account`: stop streaming it, then free its lease."""
        del self.held[account]
        await self._stop(account, "handed over to another instance")
        try:
            await self._release(keys=[self.lease_key(account)], args=[self.member])
        except (redis.exceptions.RedisError, OSError) as exc:
            self._trouble(f"Redis unreachable: {exc or type(exc).__name__}")  # it lapses by itself
            return
        self.released += 1
        log_event(_log, logging.INFO, "lease released", account=account, member=self.member)

    async def _take(self, sent: float, ttl_ms: int) -> None:
        wanted = [
            account
            for account in self.accounts
            if account not in self.held and preferred_member(account, self.members) == self.member
        ]
        if not wanted:
            return
        try:
            async with asyncio.timeout(self._budget()), self._client.pipeline(transaction=False) as pipe:
                for account in wanted:
                    pipe.set(self.lease_key(account), self.member, nx=True, px=ttl_ms)
                replies = await pipe.execute()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            # some may have been taken: they lapse unrenewed, and are taken again at the next round
            self._trouble(f"Redis unreachable: {exc or type(exc).__name__}")
            return
        for account, taken in zip(wanted, replies, strict=True):
            if taken:
                self.held[account] = sent + self.config.fence_after
                self.acquired += 1
                log_event(_log, logging.INFO, "lease acquired", account=account, member=self.member)
                self._start(account)

    async def _fence(self, now: float) -> None:
        """Stop every account whose lease may lapse soon without a renewal: someone else may take it."""
        for account in [a for a, until in self.held.items() if until <= now]:
            del self.held[account]
            self.lost += 1
            log_event(_log, logging.WARNING, "lease not renewed in time", account=account, member=self.member)
            await self._stop(account, "its lease could not be renewed")

    def _budget(self) -> float:
        """Seconds a Redis call may take now: until the first held lease must be given up, at most a round."""
        now = self._clock()
        return max(0.0, min([now + self.config.renew_interval, *self.held.values()]) - now)

    def _trouble(self, problem: str) -> None:
        if self.problem is None:
            log_event(_log, logging.WARNING, "leases: Redis unavailable", member=self.member, error=problem)
        self.problem = problem

    async def release_all(self) -> int:
        """Free every lease still held (the gateway has stopped the streams) and leave the member set.
        Returns how many were freed; 0 when Redis cannot be reached (the leases then lapse by themselves)."""
        accounts = list(self.held)
        self.held.clear()
        client = redis.asyncio.Redis.from_url(
            self.config.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        try:
            keys = [self.lease_key(account) for account in accounts]
            async with client.pipeline(transaction=True) as pipe:
                pipe.eval(_RELEASE, len(keys), *keys, self.member)
                pipe.zrem(self._members_key, self.member)
                released = int((await pipe.execute())[0])
        except (redis.exceptions.RedisError, OSError) as exc:
            log_event(_log, logging.WARNING, "leases not released", member=self.member, error=str(exc))
            return 0
        finally:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await client.aclose()
        self.released += released
        log_event(_log, logging.INFO, "leases released", member=self.member, released=released)
        return released


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
