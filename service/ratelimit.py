"""Conveyor's one rate limiter: token buckets in Redis, shared by every process. The API's
per-key limits take from a `TokenBucket` directly; the notification channels and the LLM
client wait their turn through a `RateLimiter`.

One Lua script refills and takes a token atomically with Redis's own clock, so processes
on hosts with skewed clocks share one budget. A caller willing to wait reserves its token
and sleeps until it is due (callers are served in arrival order, one round trip each); a
caller that may not wait that long reserves nothing and is told how long to wait. The
takes of concurrent callers in one process share one script call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import Batcher
from service.errors import TransientError

# Many takes at once, in order: KEYS[i] the bucket, ARGV[3i-2..3i] its rate (tokens/s),
# capacity and max wait (s). Returns, for each in turn, flat: wait (s, as a string), tokens
# left (as a string), taken (1 or 0). A bucket named twice sees the first take's result.
TAKE_TOKENS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local answers = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[3 * i - 2])
  local capacity = tonumber(ARGV[3 * i - 1])
  local max_wait = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(state[1]) or capacity
  local at = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens < 1 then
    wait = (1 - tokens) / rate
  end
  local taken = 0
  if wait <= max_wait then
    tokens = tokens - 1
    taken = 1
    redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((capacity / rate + wait) * 1000) + 1000)
  end
  answers[#answers + 1] = tostring(wait)
  answers[#answers + 1] = tostring(tokens)
  answers[#answers + 1] = taken
end
return answers
"""


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")

    @classmethod
    def per_minute(cls, count: int, burst: int | None = None) -> Rate:
        return cls(count / 60, burst or max(1, count // 60))


@dataclass(frozen=True)
class Taken:
    wait: float  # seconds until the reserved token is due (0: now)
    remaining: int  # whole tokens left in the bucket
    taken: bool  # False: nothing reserved, `wait` is how long to come back after


@dataclass(frozen=True, eq=False)  # one take each, even of the same bucket
class _Take:
    key: str
    rate: Rate
    max_wait: float


class TokenBucket:
    """Buckets under one key prefix. Keep one per process: the takes of concurrent callers
    share one script (`service.batching`), in the order they arrived."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = prefix
        self._take_many = redis.register_script(TAKE_TOKENS)
        self._takes: Batcher[_Take, Taken] = Batcher(self._run_takes, key=lambda take: take)

    async def take(self, key: str, rate: Rate, *, max_wait: float = 0.0) -> Taken:
        return await self._takes.submit(_Take(key, rate, max_wait))

    async def _run_takes(self, takes: Sequence[_Take]) -> list[Taken]:
        answers = await self._take_many(
            keys=[self.prefix + take.key for take in takes],
            args=[value for take in takes for value in (take.rate.per_second, take.rate.burst, take.max_wait)],
        )
        return [
            Taken(float(wait), max(int(float(tokens)), 0), bool(taken))
            for wait, tokens, taken in zip(answers[0::3], answers[1::3], answers[2::3], strict=True)
        ]

    async def acquire(self, key: str, rate: Rate, *, max_wait: float) -> Taken:
        """Take a token, sleeping until it is due if that is within `max_wait`."""
        taken = await self.take(key, rate, max_wait=max_wait)
        if taken.taken and taken.wait:
            await asyncio.sleep(taken.wait)
        return taken


class RateLimiter:
    """Named rates (a channel, a provider) over one bucket prefix, for work that may wait:
    a caller reserves its token and sleeps until it is due (in arrival order); if that is
    more than `max_wait` away, nothing is reserved and a `TransientError` of `error_type`
    tells the job to come back later. Names without a rate are not limited."""

    def __init__(
        self,
        redis: Redis,
        rates: Mapping[str, Rate],
        *,
        prefix: str,
        max_wait: float = 60.0,
        error_type: str = "rate_limited",
    ) -> None:
        self.rates = dict(rates)
        self.prefix = prefix
        self.max_wait = max_wait
        self.error_type = error_type
        self.bucket = TokenBucket(redis, prefix)

    async def acquire(self, name: str, *, max_wait: float | None = None) -> float:
        """Wait for one token of `name`'s rate, at most `max_wait` seconds (default: the
        limiter's); returns the seconds waited."""
        rate = self.rates.get(name)
        if rate is None:
            return 0.0
        limit = self.max_wait if max_wait is None else max_wait
        try:
            taken = await self.bucket.acquire(name, rate, max_wait=limit)
        except RedisError as exc:
            raise TransientError("the rate limiter's Redis is unavailable", type="redis_unavailable") from exc
        if not taken.taken:
            raise TransientError(
                f"the {name} rate limit is saturated for the next {taken.wait:.0f} s",
                type=self.error_type,
                retry_after=taken.wait,
            )
        return taken.wait
