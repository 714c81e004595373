"""Running jobs kept out of arq's poll window.

arq leaves a running job in its queue until it ends, and every poll (each
`WORKER_POLL_DELAY`) reads the queue's due ids and, for each one, checks its in-progress
key: four round trips per running job per poll. A worker holding a hundred documents that
wait seconds on Textract spends most of its CPU re-checking its own jobs, and with more
running jobs than a poll reads (`queue_read_limit`), the jobs behind them are never seen.

So a job that outlives `WORKER_PARK_AFTER` (0.25 s) is parked: its score becomes the moment its
in-progress key expires. It is out of every poll's window, yet due again by itself if its
worker dies without a word, exactly when arq would have run it again (the reconciler hands
it back sooner, with `service.queue.release`). A job going back to arq unfinished (a retry, a shutdown) first
gets its enqueue score back, because arq re-scores a retry relative to it.

Shorter jobs are not parked: for them parking costs the worker more than the skips it saves
(the queue benchmark's 0–50 ms jobs ran ~20 % slower when every job past 20 ms was parked),
and jobs that young fill the window only with many workers' worth of slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import structlog
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import Batcher

log = structlog.get_logger("conveyor.parking")

PARK_LINGER = 0.02

# For each running job whose in-progress key is still there: score it for when that key
# expires (XX: a job that has already ended and left the queue is not put back).
PARK = """
local now = tonumber(ARGV[1])
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > 0 then redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i]) end
end
"""


class Parking:
    """Parks this worker's running jobs in its queue, several jobs a round trip."""

    def __init__(self, redis: Redis, queue: str, *, after: float) -> None:
        self.redis = redis
        self.queue = queue
        self.after = after
        self._script = redis.register_script(PARK)
        self._batcher: Batcher[str, None] = Batcher(self._park_many, key=lambda job_id: job_id, linger=PARK_LINGER)

    def park(self, job_id: str) -> ParkedJob:
        """Park a job that has just started, once it has run for `after` seconds; parks
        then wait `PARK_LINGER` for company, to share a round trip. The job never waits
        for its park."""
        return ParkedJob(self, job_id)

    def send(self, job_id: str) -> asyncio.Future:
        """Park it now (with the parks sent meanwhile); the future says when it has landed."""
        return self._batcher.post(job_id)

    async def aclose(self) -> None:
        await self._batcher.drain()

    async def _park_many(self, job_ids: Sequence[str]) -> list[None]:
        keys = [self.queue] + [in_progress_key_prefix + job_id for job_id in job_ids]
        try:
            await self._script(keys=keys, args=[int(time.time() * 1000), *job_ids])
        except (RedisError, OSError) as exc:
            log.warning("could not park running jobs", jobs=len(job_ids), error=type(exc).__name__)
        return [None] * len(job_ids)


class ParkedJob:
    """One running job's park: due after `Parking.after`, dropped if the job ends first."""

    def __init__(self, parking: Parking, job_id: str) -> None:
        self.parking = parking
        self.job_id = job_id
        self._posted: asyncio.Future | None = None
        self._timer = asyncio.get_running_loop().call_later(parking.after, self._post)

    def _post(self) -> None:
        self._posted = self.parking.send(self.job_id)

    def ended(self) -> None:
        """The job ended (however): a park not yet posted is not needed any more."""
        self._timer.cancel()

    async def unpark(self, score: int) -> None:
        """Before the job goes back to arq unfinished: its enqueue `score` back, once its park
        (if posted) has landed; completed even if the job's task is cancelled meanwhile."""
        self._timer.cancel()
        if self._posted is not None:
            await asyncio.shield(self._unpark(self._posted, score))

    async def _unpark(self, posted: asyncio.Future, score: int) -> None:
        with contextlib.suppress(BaseException):
            await posted
        try:
            await self.parking.redis.zadd(self.parking.queue, {self.job_id: score}, xx=True)
        except (RedisError, OSError) as exc:
            # Still due when its in-progress key expires, or once the reconciler hands it back.
            log.warning("could not unpark a job", job_id=self.job_id, error=type(exc).__name__)
