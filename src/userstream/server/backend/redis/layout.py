"""Where a multi-node `serve` keeps its state in Redis: the key names under `{prefix}`, and the Lua scripts.

    {prefix}:account:{account}  -> the account's active listenKey (PX: the key's TTL)
    {prefix}:key:{key}          -> the key's account (PX: the key's TTL)
    {prefix}:keys               a sorted set account -> expiry (ms): only counts active keys
    {prefix}:fanout             the fan-out stream: `seq, type=events, account, events, node, batch` or
                                `seq, type=close, account, key, code, node`
    {prefix}:fanout:seq         the counter `seq` comes from, incremented by the script that appends

Each listenKey operation is one script, so two nodes answering POST at once return the same key, and a
close removes the key and appends its close to the fan-out atomically. docs/scaling.md explains why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["CHECK", "CLOSE", "CREATE", "EXTEND", "PUBLISH", "Layout", "text", "wall_ms"]


@dataclass(frozen=True, slots=True)
class Layout:
    """The Redis key names of one deployment (every node of it uses the same `prefix`)."""

    prefix: str

    def account_key(self, account: str) -> str:
        return f"{self.prefix}:account:{account}"

    @property
    def key_prefix(self) -> str:
        return f"{self.prefix}:key:"

    @property
    def index(self) -> str:
        return f"{self.prefix}:keys"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:fanout"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:fanout:seq"


def text(value: bytes | str) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else value


def wall_ms() -> int:
    """Wall-clock milliseconds: the clock of the expiry index (shared by every node)."""
    return time.time_ns() // 1_000_000


# KEYS[1] account -> key, KEYS[2] the count index; ARGV[1] a fresh key, ARGV[2] TTL ms, ARGV[3] the prefix of
# key -> account, ARGV[4] the account, ARGV[5] now (ms). Returns {key, 1 if created else 0}.
CREATE = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[3] .. current) == 1 then
    return {current, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', ARGV[3] .. ARGV[1], ARGV[4], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[2]), ARGV[4])
return {ARGV[1], 1}
"""

# KEYS[1] account -> key, KEYS[2] the count index; ARGV[1] TTL ms, ARGV[2] key prefix, ARGV[3] the account,
# ARGV[4] now (ms). Returns the extended key, or nil when the account has no active key.
EXTEND = """
local current = redis.call('GET', KEYS[1])
if not current then
    return false
end
if redis.call('PEXPIRE', ARGV[2] .. current, ARGV[1]) == 0 then
    return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[1]), ARGV[3])
return current
"""

# KEYS[1] account -> key, KEYS[2] the count index, KEYS[3] the fan-out stream, KEYS[4] its seq counter;
# ARGV[1] key prefix, ARGV[2] the account, ARGV[3] the close code, ARGV[4] maxlen, ARGV[5] this node.
# Removes the account's active key and appends the close to the fan-out, atomically: every node closes the
# key's streams after the events published before it. Returns the key, or nil when there was none.
CLOSE = """
local current = redis.call('GET', KEYS[1])
if not current then
    return false
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('DEL', ARGV[1] .. current) == 0 then
    return false
end
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'type', 'close',
           'account', ARGV[2], 'key', current, 'code', ARGV[3], 'node', ARGV[5])
return current
"""

# KEYS[1] the fan-out stream, KEYS[2] its seq counter; ARGV[1] maxlen, then the entry's fields and values.
PUBLISH = """
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, unpack(ARGV, 2))
return seq
"""

# KEYS[1] the count index, KEYS[2] the seq counter; ARGV[1] now (ms). The health check: active keys, and
# the fan-out's seq (lower than what this node read: Redis came back without its data).
CHECK = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return {redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
