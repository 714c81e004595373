"""Per-channel send rates shared by every worker, on the shared Redis token bucket.

A sender that would wait reserves its token and sleeps until it is due (senders are served
in arrival order); if the wait would exceed `max_wait`, nothing is reserved and a
TransientError tells the job to come back later.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from pipelines.errors import TransientError
from service.ratelimit import Rate, TokenBucket

__all__ = ["DEFAULT_RATES", "Rate", "RateLimiter", "configured_rates"]

# Conservative provider defaults: Twilio long codes take ~1 SMS/s; the rest are generous.
DEFAULT_RATES: dict[str, Rate] = {
    "email": Rate(10, 20),
    "sms": Rate(1, 5),
    "push": Rate(100, 200),
    "webhook": Rate(50, 100),
}


def configured_rates(overrides: Mapping[str, tuple[float, int | None]]) -> dict[str, Rate]:
    """DEFAULT_RATES with the operator's (per second, burst) overrides; no burst keeps the default's."""
    rates = dict(DEFAULT_RATES)
    for channel, (per_second, burst) in overrides.items():
        default = DEFAULT_RATES.get(channel)
        rates[channel] = Rate(per_second, burst or (default.burst if default else 1))
    return rates


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        rates: Mapping[str, Rate] = DEFAULT_RATES,
        *,
        prefix: str = "conveyor:ratelimit:",
        max_wait: float = 60.0,
    ) -> None:
        self.rates = dict(rates)
        self.max_wait = max_wait
        self.bucket = TokenBucket(redis, prefix)

    async def acquire(self, channel: str) -> float:
        """Wait for one token of `channel`'s budget; returns the seconds waited.

        Channels without a configured rate are not limited.
        """
        rate = self.rates.get(channel)
        if rate is None:
            return 0.0
        taken = await self.bucket.acquire(channel, rate, max_wait=self.max_wait)
        if not taken.taken:
            raise TransientError(f"the {channel} rate limit is saturated for the next {taken.wait:.0f}s",
                                 type="rate_limited", retry_after=taken.wait)
        return taken.wait
