"""The line of jobs waiting for a place under their concurrency key, in Redis.

A job the ledger refused (`ledger.concurrency`) joins its key's line, a sorted set ordered
by priority, then by when it was enqueued, and is parked in arq's queue out of every poll
window: waiting costs nothing while it waits. Whenever a job holding a place ends, however
it ends, it makes the head of its key's line due at once (`promote`). A waiting job is
also due again after `BACKSTOP_S` by itself, so a promotion lost with a killed worker or a
Redis outage delays it, never strands it. The ledger stays the judge: a promoted job is
claimed only if a place is free, and otherwise waits again, keeping its place in line.
"""

from __future__ import annotations

import time

from arq.constants import in_progress_key_prefix, retry_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.queue import BAND_MS, IMMEDIATE_LEAD_MS, rescheduled, wake_key

#: Seconds after which a waiting job looks at its key again if no promotion came.
BACKSTOP_S = 60.0
#: How long a key's line outlives its last newcomer (it is empty long before).
LINE_TTL_MS = 24 * 3600 * 1000

# Join the line (at ARGV[2], unless already in it), park the job in the queue until the
# backstop (ARGV[3]), give up the claim's in-progress key and its try (the job did not run).
WAIT = """
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('DECR', KEYS[4]) end
"""

# Make the line's head due now (ARGV[1], in its priority's band of ARGV[2] ms), skipping
# ids no longer in the queue (cancelled, expired), and wake an idle worker.
PROMOTE = """
while true do
  local head = redis.call('ZPOPMIN', KEYS[2])
  if #head == 0 then return 0 end
  local score = redis.call('ZSCORE', KEYS[1], head[1])
  if score then
    local band = math.floor(tonumber(score) / tonumber(ARGV[2])) * tonumber(ARGV[2])
    redis.call('ZADD', KEYS[1], 'XX', band + tonumber(ARGV[1]), head[1])
    redis.call('RPUSH', KEYS[3], '1')
    redis.call('LTRIM', KEYS[3], 0, 0)
    return 1
  end
end
"""


def line_key(queue: str, kind: str, key: str) -> str:
    return f"conveyor:waiting:{queue}:{kind}:{key}"


class Lines:
    """The waiting lines of one queue's keys."""

    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.queue = queue
        self._wait = redis.register_script(WAIT)
        self._promote = redis.register_script(PROMOTE)

    async def wait(self, job_id: str, kind: str, key: str, *, score: int, enqueued_ms: int) -> None:
        """Put a refused job in its key's line: its place there is its priority, then the
        moment it was first enqueued, however often it is refused."""
        await self._wait(
            keys=[
                self.queue,
                line_key(self.queue, kind, key),
                in_progress_key_prefix + job_id,
                retry_key_prefix + job_id,
            ],
            args=[
                job_id,
                rescheduled(score, enqueued_ms),
                rescheduled(score, _now_ms() + int(BACKSTOP_S * 1000)),
                LINE_TTL_MS,
            ],
        )

    async def promote(self, kind: str, key: str) -> bool:
        """Make the head of a key's line due now; False if nobody waits (or Redis is away:
        the backstop then brings it)."""
        try:
            promoted = await self._promote(
                keys=[self.queue, line_key(self.queue, kind, key), wake_key(self.queue)],
                args=[_now_ms() - IMMEDIATE_LEAD_MS, BAND_MS],
            )
        except (RedisError, OSError):
            return False
        return bool(promoted)


def _now_ms() -> int:
    return int(time.time() * 1000)
