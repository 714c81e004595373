"""Claiming due jobs from arq's queue, many a round trip, and running them.

arq's own worker starts a job with four round trips (WATCH, EXISTS, ZSCORE, then
MULTI/PSETEX/EXEC), one job after another, reads it and bumps its try counter in a fifth
and ends it in a sixth: per job, that is all of bare arq's cost, before Conveyor's ledger
comes on top. The dispatcher speaks arq's protocol (the same queue, job, in-progress and
retry keys, the same job format, `Retry`, timeouts, tries and kept results), but claims as many due jobs as it has free slots in one script,
and ends the jobs that finish together in one more. An idle dispatcher waits on its
queue's wake-up list, so a job enqueued through Conveyor starts at once; `poll_delay` only
bounds how late a deferred job, a retry or a job from arq's own client is seen.

arq's `Worker` still runs the process (signals and the health-check key) with no job
slots of its own, so it never competes for the queue: see `pipelines/lifecycle.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from arq.jobs import DeserializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime
from arq.worker import Function, Retry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import Batcher
from service.queue import due_ranges, rescheduled, wake_key

log = structlog.get_logger("conveyor.dispatch")

#: arq's default timeout for a function that names none, and its in-progress margin.
DEFAULT_TIMEOUT_S = 300.0
IN_PROGRESS_MARGIN_S = 10.0
#: How long arq keeps a job's try counter.
RETRY_KEY_TTL_S = 88_400
#: Seconds to wait before claiming again after Redis failed.
REDIS_BACKOFF_S = 1.0

# Up to ARGV[1] due jobs whose in-progress key is free, the score ranges ARGV[5..] names
# (`service.queue.due_ranges`: one per priority, highest first) taken in turn: each gets
# that key (for ARGV[2] ms), its try counter bumped, and comes back as id, score, try, job
# (false if the job expired). ARGV[3] bounds how many ids one range reads.
CLAIM = """
local slots = tonumber(ARGV[1])
local claimed = {}
for r = 5, #ARGV, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[r], ARGV[r + 1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
  for i = 1, #due, 2 do
    local id = due[i]
    local running = 'arq:in-progress:' .. id
    if redis.call('EXISTS', running) == 0 then
      redis.call('PSETEX', running, ARGV[2], '1')
      local retry = 'arq:retry:' .. id
      local try = redis.call('INCR', retry)
      redis.call('EXPIRE', retry, ARGV[4])
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = due[i + 1]
      claimed[#claimed + 1] = try
      claimed[#claimed + 1] = redis.call('GET', 'arq:job:' .. id)
      if #claimed >= slots * 4 then return claimed end
    end
  end
end
return claimed
"""


# arq's `finish_job` for many jobs: six ARGV each (id, ms to keep the in-progress key or '',
# retry at (ms) or '', '1' if done, its result or '', ms to keep that or '').
END = """
for i = 1, #ARGV, 5 do
  local id, at, done, result, result_ms = unpack(ARGV, i, i + 4)
  redis.call('DEL', 'arq:in-progress:' .. id)
  if done == '1' then
    if result ~= '' then
      if result_ms ~= '' then
        redis.call('SET', 'arq:result:' .. id, result, 'PX', result_ms)
      else
        redis.call('SET', 'arq:result:' .. id, result)
      end
    end
    redis.call('DEL', 'arq:retry:' .. id, 'arq:job:' .. id)
    redis.call('ZREM', KEYS[1], id)
  elseif at ~= '' then
    redis.call('ZADD', KEYS[1], 'XX', at, id)
  end
end
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: str
    score: int
    job_try: int
    raw: bytes | None  # None: the job's key expired before it ran


@dataclass(frozen=True, slots=True)
class Ending:
    """What happens to a job's keys when its run ends: `done` (it leaves the queue), a retry
    `at` a moment (ms), or neither (a shutdown: due again at once, elsewhere)."""

    job_id: str
    done: bool = False
    at: int | None = None
    result: bytes | None = None  # arq's result record, for functions that keep one
    result_ms: int | None = None  # how long to keep it (None: forever)

    def args(self) -> tuple:
        """Its five arguments in `END`."""
        return (
            self.job_id,
            _blank(self.at),
            "1" if self.done else "0",
            _blank(self.result),
            _blank(self.result_ms),
        )


class PutBack(Exception):
    """Raised by a job that did not run and has put itself back on the queue (a job waiting
    for its concurrency key's place): the dispatcher ends nothing and counts nothing."""


class Dispatcher:
    """Runs up to `max_jobs` of `queue`'s due jobs at once with `functions`."""

    def __init__(
        self,
        redis: Redis,
        ctx: dict[str, Any],
        functions: Iterable[Function],
        *,
        queue: str,
        max_jobs: int,
        poll_delay: float,
        read_limit: int,
        serializer: Callable[[Any], bytes],
        deserializer: Callable[[bytes], Any],
        max_tries: int,
        keep_result_s: float = 0,
    ) -> None:
        self.redis = redis
        self.ctx = ctx
        self.functions = {function.name: function for function in functions}
        self.queue = queue
        self.max_jobs = max_jobs
        self.poll_delay = poll_delay
        self.read_limit = read_limit
        self.serializer = serializer
        self.deserializer = deserializer
        self.max_tries = max_tries  # for functions that name none
        self.keep_result_s = keep_result_s  # likewise
        longest = max((f.timeout_s or DEFAULT_TIMEOUT_S for f in self.functions.values()), default=DEFAULT_TIMEOUT_S)
        self.in_progress_ms = int((longest + IN_PROGRESS_MARGIN_S) * 1000)
        self.complete = self.failed = self.retried = 0
        self._claim = redis.register_script(CLAIM)
        self._end = redis.register_script(END)
        self._wake = wake_key(queue)
        self._endings: Batcher[Ending, None] = Batcher(self._end_many, key=lambda ending: ending.job_id)
        self.tasks: set[asyncio.Task] = set()  # the running jobs
        self.claimer: asyncio.Task | None = None
        self._freed = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        self.claimer = asyncio.create_task(self._claim_forever())

    async def stop(self, grace: float) -> None:
        """Claim no more; give running jobs `grace` seconds, then hand the rest back to the
        queue (due again at once, for another worker) and write every ending."""
        self._stopping = True
        if self.claimer is not None:
            self.claimer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.claimer
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._endings.drain()

    def hand_back_now(self) -> None:
        """While `stop` waits for running jobs, stop waiting: they go back to the queue now,
        to resume from their last finished stage at the next start."""
        if self._stopping:
            for task in self.tasks:
                task.cancel()

    async def _claim_forever(self) -> None:
        while True:
            _raise_if_cancelled()
            free = self.max_jobs - len(self.tasks)
            if free <= 0:
                self._freed.clear()
                await self._freed.wait()
                await asyncio.sleep(0)  # the jobs ending in the same turn of the loop free their slots too
                continue
            try:
                claimed = await self.claim(free)
            except (RedisError, OSError) as exc:
                log.warning("could not claim jobs", error=type(exc).__name__)
                await asyncio.sleep(REDIS_BACKOFF_S)
                continue
            except Exception:  # a reply it cannot read must not stop the worker claiming for good
                log.exception("claiming jobs failed")
                await asyncio.sleep(REDIS_BACKOFF_S)
                continue
            for job in claimed:
                task = asyncio.create_task(self._run(job))
                self.tasks.add(task)
                task.add_done_callback(self._ended)
            if len(claimed) < free:
                await self._wait_for_work()  # nothing more is due yet

    async def _wait_for_work(self) -> None:
        """Until a job due now is enqueued (`service.queue.ENQUEUE` leaves a token), or for
        `poll_delay` at most: deferred jobs, retries and jobs enqueued by arq's own client
        come due without a token."""
        try:
            # redis-py types blpop for its sync and async clients at once, and its timeout as
            # whole seconds: Redis 6 and later take a fraction.
            await self.redis.blpop([self._wake], timeout=self.poll_delay)  # type: ignore[misc, arg-type]
        except (RedisError, OSError):
            await asyncio.sleep(self.poll_delay)

    def _ended(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self._freed.set()

    async def claim(self, slots: int) -> list[Claimed]:
        reply = await self._claim(
            keys=[self.queue],
            args=[
                slots,
                self.in_progress_ms,
                self.read_limit,
                RETRY_KEY_TTL_S,
                *(bound for due in due_ranges(_now_ms()) for bound in due),
            ],
        )
        return [
            Claimed(_text(reply[i]), int(float(reply[i + 1])), int(reply[i + 2]), reply[i + 3])
            for i in range(0, len(reply), 4)
        ]

    async def _run(self, job: Claimed) -> None:
        try:
            ending = await self._outcome(job)
        except PutBack:
            return
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            ending = Ending(job.job_id)  # shut down mid-run: due again at once, elsewhere
            self.retried += 1
        self._endings.post(ending)

    async def _outcome(self, job: Claimed) -> Ending:
        if job.raw is None:
            log.warning("job expired before it ran", job_id=job.job_id)
            return self._failed(job)
        try:
            name, args, kwargs, enqueued_try, enqueued_ms = deserialize_job_raw(job.raw, deserializer=self.deserializer)
        except DeserializationError:
            log.error("job could not be read", job_id=job.job_id)
            return self._failed(job)
        function = self.functions.get(name)
        if function is None:
            log.warning("job names no function of this worker", job_id=job.job_id, function=name)
            return self._failed(job)
        job_try = max(job.job_try, enqueued_try or 0)
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            log.warning("job used up its tries", job_id=job.job_id, function=name, tries=max_tries)
            return self._failed(job)
        ctx = {
            **self.ctx,
            "job_id": job.job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueued_ms),
            "score": job.score,
        }
        started_ms = _now_ms()
        try:
            async with asyncio.timeout(function.timeout_s or DEFAULT_TIMEOUT_S):
                result, success = await function.coroutine(ctx, *args, **kwargs), True
        except Retry as retry:
            self.retried += 1
            return Ending(job.job_id, at=rescheduled(job.score, _now_ms() + (retry.defer_score or 0)))
        except (asyncio.CancelledError, PutBack):
            raise
        except Exception as exc:  # as arq: a job's failure ends that job, never the worker
            log.exception("job failed", job_id=job.job_id, function=name)
            self.failed += 1
            result, success = exc, False
        else:
            self.complete += 1
        ending = Ending(job.job_id, done=True)
        keep_s = function.keep_result_s if function.keep_result_s is not None else self.keep_result_s
        if function.keep_result_forever or keep_s:
            data = serialize_result(
                name,
                args,
                kwargs,
                job_try,
                enqueued_ms,
                success,
                result,
                started_ms,
                _now_ms(),
                f"{job.job_id}:{name}",
                self.queue,
                job.job_id,
                serializer=self.serializer,
            )
            ending = replace(
                ending, result=data, result_ms=None if function.keep_result_forever else int(keep_s * 1000)
            )
        return ending

    def _failed(self, job: Claimed) -> Ending:
        self.failed += 1
        return Ending(job.job_id, done=True)

    async def _end_many(self, endings: Sequence[Ending]) -> list[None]:
        try:
            await self._end(keys=[self.queue], args=[arg for ending in endings for arg in ending.args()])
        except (RedisError, OSError) as exc:
            # Their in-progress keys expire and arq's rules run them again; the ledger
            # knows they ended and the runner does not repeat them.
            log.warning("could not record ended jobs", jobs=len(endings), error=type(exc).__name__)
        return [None] * len(endings)


def _blank(value: object) -> object:
    return "" if value is None else value


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raise_if_cancelled() -> None:
    """End the claim loop once it was cancelled, even if the cancellation was swallowed on
    the way (a blocked BLPOP cut short may surface as a connection error, which the loop
    rides out): a worker told to stop, or crashed in a test, must not claim on forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
