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


# Each event: XADD to its job's stream (trimmed to about KEEP_EVENTS), and a status event
# also renews the stream's expiry. One script for a whole batch: a pipeline of two commands
# an event costs the worker more CPU in the client than the events are worth.
PUBLISH = """
for i, key in ipairs(KEYS) do
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i * 2 + 2])
  if ARGV[i * 2 + 1] == '1' then redis.call('EXPIRE', key, ARGV[2]) end
end
"""


async def publish_many(redis: Redis, events: Sequence[tuple[object, dict]]) -> list[None]:
    """Several jobs' events in one round trip, in order; best effort too.

    A stream's expiry is set with its status events only: an attempt's first and last
    events are status events, so they bracket its stage and progress events.
    """
    keys: list[str] = []
    args: list[str | int] = [KEEP_EVENTS, KEEP_SECONDS]
    for job_id, event in events:
        keys.append(stream_key(job_id))
        args += ["1" if event.get("type") == "status" else "0", json.dumps(event, default=str)]
    try:
        await redis.register_script(PUBLISH)(keys=keys, args=args)
    except (RedisError, OSError):
        pass
    return [None] * len(events)


#: Events a worker may have waiting for Redis before its jobs wait for their events' writes.
MAX_UNSENT = 10_000
#: How long an event waits for others to share its round trip: a live view is that much later,
#: and a worker's jobs publish a few events each in one round trip instead of one each.
LINGER_SECONDS = 0.02


class Publisher:
    """A worker's publishes, combined across its jobs (`service.batching`): many jobs'
    events share one round trip. One job's events may share a batch too: a batch is
    written in the order its events were published.

    A job does not wait for its events to be written (they are best effort, and waiting
    would cost each job a round trip per event) unless Redis has fallen behind by
    `MAX_UNSENT` events: memory stays bounded. Events wait `LINGER_SECONDS` for company."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._batcher: Batcher[tuple[object, dict], None] = Batcher(
            lambda events: publish_many(redis, events), key=id, linger=LINGER_SECONDS
        )

    async def publish(self, job_id: object, event: dict) -> None:
        if self._batcher.unsent < MAX_UNSENT:
            self._batcher.post((job_id, event))
        else:
            await self._batcher.submit((job_id, event))

    async def aclose(self) -> None:
        """Once every event published so far is written."""
        await self._batcher.drain()
