"""An LLM provider's rate, kept by every worker process together: a provider's limit is per
account, not per process.

It is the shared Redis token bucket (`service.ratelimit`): a call that would wait reserves
its token and sleeps until it is due, so callers are served in arrival order; one that would
wait longer than it may reserves nothing and fails as transient, to come back later.
"""

from __future__ import annotations

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from pipelines.errors import TransientError
from service.ratelimit import Rate, TokenBucket


class RateLimiter:
    def __init__(
        self, redis: Redis, key: str, rate_per_minute: int, *, burst: int | None = None, max_wait: float = 30.0
    ) -> None:
        """`burst` tokens may go at once (default: one second's worth); then `rate_per_minute`."""
        self.key = key
        self.rate_per_minute = rate_per_minute
        self.rate = Rate.per_minute(rate_per_minute, burst)
        self.max_wait = max_wait
        self._bucket = TokenBucket(redis, "")

    async def acquire(self, *, max_wait: float | None = None) -> None:
        """Wait for a token; raises `TransientError("llm_rate_limited")` rather than wait longer
        than `max_wait` seconds (default: the limiter's)."""
        limit = self.max_wait if max_wait is None else max_wait
        try:
            taken = await self._bucket.acquire(self.key, self.rate, max_wait=limit)
        except redis_errors.RedisError as exc:
            raise TransientError("the rate limiter's Redis is unavailable", type="redis_unavailable") from exc
        if not taken.taken:
            raise TransientError(
                f"over the rate of {self.rate_per_minute}/min for {self.key}", type="llm_rate_limited",
                retry_after=taken.wait,
            )
