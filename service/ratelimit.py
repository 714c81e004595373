"""Token buckets in Redis, shared by every process: per-key API limits, provider limits.

One Lua script refills and takes a token atomically with Redis's own clock, so processes
on hosts with skewed clocks share one budget. A caller willing to wait reserves its token
and sleeps until it is due (callers are served in arrival order, one round trip each); a
caller that may not wait that long reserves nothing and is told how long to wait.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1] the bucket; ARGV: rate (tokens/s), capacity, max wait (s).
# Returns {wait (s, as a string), tokens left (as a string), taken (1 or 0)}.
TAKE_TOKEN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
end
if wait > max_wait then
  return {tostring(wait), tostring(tokens), 0}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity / rate + wait) * 1000) + 1000)
return {tostring(wait), tostring(tokens), 1}
"""


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")

    @classmethod
    def per_minute(cls, count: int, burst: int | None = None) -> "Rate":
        return cls(count / 60, burst or max(1, count // 60))


@dataclass(frozen=True)
class Taken:
    wait: float  # seconds until the reserved token is due (0: now)
    remaining: int  # whole tokens left in the bucket
    taken: bool  # False: nothing reserved, `wait` is how long to come back after


class TokenBucket:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = prefix
        self._take = redis.register_script(TAKE_TOKEN)

    async def take(self, key: str, rate: Rate, *, max_wait: float = 0.0) -> Taken:
        wait, tokens, taken = await self._take(keys=[self.prefix + key], args=[rate.per_second, rate.burst, max_wait])
        return Taken(float(wait), max(int(float(tokens)), 0), bool(taken))

    async def acquire(self, key: str, rate: Rate, *, max_wait: float) -> Taken:
        """Take a token, sleeping until it is due if that is within `max_wait`."""
        taken = await self.take(key, rate, max_wait=max_wait)
        if taken.taken and taken.wait:
            await asyncio.sleep(taken.wait)
        return taken
