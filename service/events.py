"""A job's status, stage and progress changes as a Redis stream, written by workers.

Streams give increasing ids (the SSE event ids) and replay from any id (`Last-Event-ID`)
for as long as the stream is kept; clients that connect later still see the history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import Batcher

CANCEL_CHANNEL = "conveyor:cancel"  # job ids whose running attempt must stop
KEEP_EVENTS = 1000
KEEP_SECONDS = 24 * 3600


def stream_key(job_id: object) -> str:
    return f"conveyor:events:{job_id}"


async def publish(redis: Redis, job_id: object, event: dict) -> None:
    """Best effort: the ledger is the record, a lost event only delays a live view."""
    await publish_many(redis, [(job_id, event)])


async def publish_many(redis: Redis, events: Sequence[tuple[object, dict]]) -> list[None]:
    """Several jobs' events in one pipeline (one round trip), in order; best effort too.

    A stream's expiry is set with its status events only: an attempt's first and last
    events are status events, so they bracket its stage and progress events.
    """
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, event in events:
                key = stream_key(job_id)
                pipe.xadd(key, {"data": json.dumps(event, default=str)}, maxlen=KEEP_EVENTS, approximate=True)
                if event.get("type") == "status":
                    pipe.expire(key, KEEP_SECONDS)
            await pipe.execute()
    except (RedisError, OSError):
        pass
    return [None] * len(events)


class Publisher:
    """A worker's publishes, combined across its jobs (`service.batching`): each job's events
    keep their order, and many jobs' events share one round trip."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._batcher = Batcher(lambda events: publish_many(redis, events), key=lambda entry: entry[0])

    async def publish(self, job_id: object, event: dict) -> None:
        await self._batcher.submit((job_id, event))
