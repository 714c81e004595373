"""The dashboard's hourly counts of ended jobs, as workers record them."""

from __future__ import annotations

import asyncio
from collections import Counter

from redis.asyncio import Redis

from service.monitoring import FinishedCounter, finished_last_hour


async def test_ended_jobs_recorded_concurrently_are_all_counted(redis_server):
    redis = Redis.from_url(redis_server.url)
    try:
        before = await finished_last_hour(redis)
        ended = [("count-a", "succeeded")] * 7 + [("count-b", "failed")] * 3 + [("count-a", "failed")]
        counter = FinishedCounter(redis)
        await asyncio.gather(*(counter.add(kind, status) for kind, status in ended))
        assert await finished_last_hour(redis) - before == Counter(ended)
    finally:
        await redis.aclose()
