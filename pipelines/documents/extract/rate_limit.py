"""A token bucket in Redis, so every worker process together keeps to a provider's rate.

The bucket (tokens and the time of the last refill) lives in one Redis hash and is updated
by a Lua script, atomically, with Redis's own clock, so processes on hosts whose clocks
disagree still share one fair bucket.
"""

from __future__ import annotations

import asyncio
import random
import time

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from pipelines.errors import TransientError

# Refill by elapsed time, take one token if there is one; else answer how many ms until there is.
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return wait
"""


class RateLimiter:
    def __init__(
        self, redis: Redis, key: str, rate_per_minute: int, *, burst: int | None = None, max_wait: float = 30.0
    ) -> None:
        """`burst` tokens may go at once (default: one second's worth); then `rate_per_minute`."""
        self.key = key
        self.rate_per_minute = rate_per_minute
        self.burst = burst or max(1, rate_per_minute // 60)
        self.max_wait = max_wait
        self._take = redis.register_script(TAKE_TOKEN)

    async def acquire(self, *, max_wait: float | None = None) -> None:
        """Wait for a token; raises `TransientError("llm_rate_limited")` rather than wait longer
        than `max_wait` seconds (default: the limiter's)."""
        limit = self.max_wait if max_wait is None else max_wait
        started = time.monotonic()
        per_ms = self.rate_per_minute / 60_000
        while True:
            try:
                wait_ms = await self._take(keys=[self.key], args=[repr(per_ms), self.burst])
            except redis_errors.RedisError as exc:
                raise TransientError(f"the rate limiter's Redis is unavailable: {exc}", type="redis_unavailable") from exc
            if wait_ms == 0:
                return
            wait = wait_ms / 1000
            if time.monotonic() - started + wait > limit:
                raise TransientError(
                    f"over the rate of {self.rate_per_minute}/min for {self.key}", type="llm_rate_limited", retry_after=wait
                )
            await asyncio.sleep(wait * random.uniform(1.0, 1.2))  # jitter: waiters don't all wake at once
