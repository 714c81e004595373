"""A task talking to Redis stops when it is cancelled: redis-py's writes run under
`asyncio.wait_for`, which on Python 3.11 can swallow the cancellation (gh-86296); arq's
main loop would then poll on and a worker told to stop would never exit."""

import asyncio
import random

from service.queue import Housekeeping, connect

ATTEMPTS = 200


async def _housekeep_forever(redis) -> None:
    """What arq's main loop does between polls: count the queue, write the health key."""
    while True:
        await redis.zcard("cancel-test-queue")
        await redis.psetex("cancel-test-health", 1000, b"alive")


async def test_every_cancellation_stops_a_task_mid_command(redis_server):
    moments = random.Random(7)  # the same moments every run, without touching the global generator
    redis = connect(redis_server.url, ride_out=True, client=Housekeeping)
    kept_running = 0
    try:
        for _ in range(ATTEMPTS):
            task = asyncio.create_task(_housekeep_forever(redis))
            await asyncio.sleep(moments.uniform(0, 0.003))  # lands anywhere in a command
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            if not done:
                kept_running += 1
                task.cancel()
                await asyncio.wait({task}, timeout=2)
            assert task.done()
        # A connection given back after a cancelled command answers the next one, not the last.
        await redis.set("cancel-test-key", b"after")
        assert await redis.get("cancel-test-key") == b"after"
        assert await redis.zcard("cancel-test-queue") == 0
    finally:
        await redis.aclose()
    assert kept_running == 0, f"{kept_running} of {ATTEMPTS} cancellations were swallowed"
