"""The dashboard's hourly counts of ended jobs, as workers record them."""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis

from service.telemetry.monitoring import FinishedCounter, finished_last_hour


async def test_ended_jobs_recorded_concurrently_are_all_counted(redis_server):
    redis = Redis.from_url(redis_server.url)
    try:
        before = await finished_last_hour(redis)
        ended = [("count-a", "succeeded")] * 7 + [("count-b", "failed")] * 3 + [("count-a", "failed")]
        counter = FinishedCounter(redis)
        for kind, status in ended:
            counter.add(kind, status)
        await counter.aclose()
        assert await finished_last_hour(redis) - before == Counter(ended)
    finally:
        await redis.aclose()
