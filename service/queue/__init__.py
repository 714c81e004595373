"""Handing jobs to arq: connection, a JSON serializer, per-kind queues and priorities.

arq only ever carries a ledger id: the job itself lives in PostgreSQL. Payloads are JSON,
never pickle, so whoever can write to Redis cannot run code in a worker. arq serves one
queue per worker and has no priorities, so priority is folded into the score arq sorts
its queue by: each priority has its own band of scores, `BAND_MS` wide (wider than every
moment in milliseconds until 2109), `normal`'s being arq's own (a score is the moment a
job is due). A `high` job is due at `moment - BAND_MS`, a `low` one at `moment + BAND_MS`;
the dispatcher claims the due jobs of each band in turn (`due_ranges`), so a waiting high
job starts before every waiting normal job, however long that one has waited, and a
deferred job still waits for its time, then joins its band's due jobs.

Fairness across tenants is folded into the moment: a job counts as enqueued
`BACKLOG_STEP` later for every job its tenant already has queued, so one tenant's flood
cannot make another tenant's new job wait for the whole flood. Jobs due now are dated
`IMMEDIATE_LEAD_MS` back and the penalty stays below that, so every immediate score
stays in the past: it only reorders jobs that are due, never delays a job while workers are idle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import EqualJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from service.batching import ON_THE_WAY_IN_FLIGHT, Batcher
from service.queue.cancel_safe import CancelSafe, cancel_safe

log = logging.getLogger("conveyor.queue")

PRIORITIES = {"low": 0, "normal": 1, "high": 2}
BAND_MS = 2**42
IMMEDIATE_LEAD_MS = 10 * 60 * 1000
BACKLOG_STEP_MS = 1000
MAX_BACKLOG_PENALTY_MS = IMMEDIATE_LEAD_MS - 1000

# arq's main loop catches nothing: one failed heartbeat or poll while Redis is unreachable
# (a restart, a failover, a network partition) would end the worker and every job it holds.
# A worker's connections (`connect(..., ride_out=True)`) instead retry connecting for about
# a minute, backing off with jitter so a fleet of workers does not reconnect in step, and
# behind Sentinel each attempt asks the sentinels again, so it reaches a promoted replica as
# soon as they name it. A command cut off mid-flight is not sent again (it may have run: a
# claim script twice would lose the first one's jobs). arq's own loop gets a client that
# never raises (`Housekeeping`).
OUTAGE_RETRIES = 30
OUTAGE_BACKOFF = EqualJitterBackoff(cap=2.0, base=0.05)

# arq's `enqueue_job` as one script: the same keys, job format and rule (nothing is done
# if the job or its result already exists), in one round trip instead of three (WATCH,
# EXISTS, then MULTI/PSETEX/ZADD/EXEC), for any number of jobs: job i has KEYS 4i-3..4i
# (job, result, queue, the queue's wake-up list) and ARGV 5i-4..5i (expiry, job, score,
# id, '1' if it is due now). A job due now leaves one token on the wake-up list, so a
# waiting worker claims it at once instead of at its next poll.
ENQUEUE = """
for i = 0, #KEYS / 4 - 1 do
  local k, a = i * 4, i * 5
  if redis.call('exists', KEYS[k + 1], KEYS[k + 2]) == 0 then
    redis.call('psetex', KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
    redis.call('zadd', KEYS[k + 3], ARGV[a + 3], ARGV[a + 4])
    if ARGV[a + 5] == '1' then
      redis.call('rpush', KEYS[k + 4], '1')
      redis.call('ltrim', KEYS[k + 4], 0, 0)
    end
  end
end
"""


def serialize(value: Any) -> bytes:
    return json.dumps(value, default=repr, separators=(",", ":")).encode()


def deserialize(data: bytes) -> Any:
    return json.loads(data)


def redis_settings(url: str) -> RedisSettings:
    """arq's settings for `redis://`, `rediss://`, `unix://` or `redis+sentinel://h:p,h:p/master`
    (what `arq --check` connects with; workers hand arq a client of ours, `Housekeeping`)."""
    parts = urlsplit(url)
    if parts.scheme == "redis+sentinel":
        hosts, master, password = _sentinels(url)
        return RedisSettings(host=hosts, sentinel=True, sentinel_master=master, password=password)
    return RedisSettings.from_dsn(url)


def _sentinels(url: str) -> tuple[list[tuple[str, int]], str, str | None]:
    """The sentinels' addresses, the master's name and its password in a `redis+sentinel://` URL."""
    parts = urlsplit(url)
    hosts = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        name, _, port = host.partition(":")
        hosts.append((name, int(port or 26379)))
    return hosts, parts.path.strip("/") or "mymaster", unquote(parts.password) if parts.password else None


#: The longest a command may wait for its answer; a blocking read must block for less.
SOCKET_TIMEOUT_SECONDS = 5.0


class FollowingConnection(CancelSafe, SentinelManagedConnection):
    """A connection to the server the sentinels name master at the moment it connects.
    redis-py's own would retry a refused connect to the same (dead) address before asking
    them again; this one asks before every attempt, backing off as `outage_retry` says."""

    def __init__(self, *, outage_retry: Retry, **kwargs: Any) -> None:
        self.outage_retry = outage_retry
        super().__init__(**kwargs)

    async def connect(self) -> None:
        await self.outage_retry.call_with_retry(self._attempt, self._failed)

    async def _attempt(self) -> None:
        if not self.is_connected:
            await self.connect_to(await self.connection_pool.get_master_address())

    async def _failed(self, error: Exception) -> None:
        await self.disconnect()


def connect(
    url: str, *, ride_out: bool = False, client: type[ArqRedis] = ArqRedis, client_name: str | None = None
) -> ArqRedis:
    """A lazy client: nothing is dialled until first use, so a process starts with Redis down.
    Behind Sentinel (`redis+sentinel://`) each new connection goes to the master the
    sentinels name then: after a failover, commands reach the promoted replica (a connection
    to the old master fails once, or answers READONLY, and is made again). With `ride_out`
    (workers) a connection that cannot be made is tried again for about a minute
    (`OUTAGE_RETRIES`); without it (the API) the command fails at once, and the caller
    answers 503 or leaves the job to the reconciler. With `client_name`, each of its
    connections names itself (CLIENT SETNAME) as it connects: the crash watch looks for it."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": 15,
        "client_name": client_name,
    }
    retry = Retry(OUTAGE_BACKOFF, OUTAGE_RETRIES if ride_out else 0)
    if urlsplit(url).scheme == "redis+sentinel":
        hosts, master, password = _sentinels(url)
        sentinel = Sentinel(hosts, password=password, **options)
        redis = sentinel.master_for(
            master, redis_class=client, connection_class=FollowingConnection, outage_retry=retry
        )
    else:
        # OSError is what a refused, unroutable or timed-out connect raises (ECONNREFUSED,
        # EHOSTUNREACH); a broken command surfaces as redis's ConnectionError, not retried.
        if ride_out:
            options.update(retry=retry, retry_on_error=[OSError])
        redis = client.from_url(url, **options)
        redis.connection_pool.connection_class = cancel_safe(redis.connection_pool.connection_class)
    # from_url passes options to the connection pool, not to ArqRedis: without this the
    # client would fall back to arq's default, pickle.
    redis.job_serializer = serialize
    redis.job_deserializer = deserialize
    return redis


class Housekeeping(ArqRedis):
    """The client arq's own `Worker` loop is handed (its `redis_pool`) in a worker, where it
    only keeps the health key and enqueues the cron ticks (the dispatcher claims the jobs,
    on a client of its own). Made by `connect(..., ride_out=True, client=Housekeeping)`, it
    waits out an outage or a failover like the worker's other connections. arq catches
    nothing there: a command that still fails (cut off mid-flight, a longer outage) would
    end the worker. Here it is logged and answered None instead, and the loop goes on: the
    health key is written at its next turn, and every worker enqueues every cron tick, so
    one worker missing one loses nothing."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)
        except (RedisError, OSError) as exc:
            log.warning("arq's %s skipped: redis unavailable (%s)", args[0], type(exc).__name__)
            return None

    async def enqueue_job(self, function: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().enqueue_job(function, *args, **kwargs)
        except (RedisError, OSError) as exc:
            log.warning("arq's enqueue of %s skipped: redis unavailable (%s)", function, type(exc).__name__)
            return None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Handoff:
    """One ledger job as arq's queue takes it: its keys and arguments in `ENQUEUE`."""

    keys: tuple[str, str, str, str]
    args: tuple[int, bytes, int, str, str]


def handoff(
    *,
    job_id: str,
    kind: str,
    queue: str,
    priority: int = PRIORITIES["normal"],
    run_at: datetime | None = None,
    backlog: int = 0,
) -> Handoff:
    """A ledger job for its arq queue, behind `backlog` (its tenant's queued jobs)."""
    now = _ms(datetime.now(UTC))
    due = _ms(run_at) if run_at is not None else _immediately(now, backlog)
    score = in_band(priority, due)
    job = serialize_job(kind, (job_id,), {}, None, now, serializer=serialize)
    return Handoff(
        (job_key_prefix + job_id, result_key_prefix + job_id, queue, wake_key(queue)),
        (max(due - now, 0) + expires_extra_ms, job, score, job_id, "1" if due <= now else "0"),
    )


def wake_key(queue: str) -> str:
    """The list a queue's idle workers wait on between polls (see `ENQUEUE`)."""
    return f"conveyor:wake:{queue}"


async def enqueue(redis: ArqRedis, **job) -> bool:
    """Put a ledger job on its arq queue (`handoff`'s arguments). False if Redis is
    unreachable: the job stays `queued` in the ledger and the reconciler enqueues it once
    Redis is back."""
    return await enqueue_many(redis, [job])


async def enqueue_many(redis: ArqRedis, jobs: Sequence[Mapping[str, Any]]) -> bool:
    """`enqueue` for several jobs (each `handoff`'s arguments) in one round trip."""
    if not jobs:
        return True
    return all(await _enqueue_many(redis.register_script(ENQUEUE), [handoff(**job) for job in jobs]))


class Enqueuer:
    """`enqueue` for the API's hot path: the hand-offs of concurrent requests share one
    script, up to `ON_THE_WAY_IN_FLIGHT` scripts in flight (the next batch gathers meanwhile)."""

    def __init__(self, redis: ArqRedis) -> None:
        self._script = redis.register_script(ENQUEUE)
        self._batcher: Batcher[Handoff, bool] = Batcher(
            lambda handoffs: _enqueue_many(self._script, handoffs),
            key=lambda handoff: handoff.keys[0],
            in_flight=ON_THE_WAY_IN_FLIGHT,
        )

    async def enqueue(self, **job) -> bool:
        return await self._batcher.submit(handoff(**job))

    async def enqueue_many(self, jobs: Sequence[dict[str, Any]]) -> bool:
        """Jobs submitted together (`handoff`'s arguments each), in one script call."""
        return all(await _enqueue_many(self._script, [handoff(**job) for job in jobs]))


async def _enqueue_many(script: AsyncScript, handoffs: Sequence[Handoff]) -> list[bool]:
    try:
        await script(
            keys=[key for handoff in handoffs for key in handoff.keys],
            args=[arg for handoff in handoffs for arg in handoff.args],
        )
    except (RedisError, OSError) as exc:
        log.warning(
            "%d enqueue(s) deferred to the reconciler: redis unavailable (%s)", len(handoffs), type(exc).__name__
        )
        return [False] * len(handoffs)
    return [True] * len(handoffs)


def _immediately(now: int, backlog: int = 0) -> int:
    """The moment a job due now is dated, behind `backlog` jobs of its tenant."""
    return now - IMMEDIATE_LEAD_MS + min(backlog * BACKLOG_STEP_MS, MAX_BACKLOG_PENALTY_MS)


def _offset(priority: int) -> int:
    return (PRIORITIES["normal"] - priority) * BAND_MS


def in_band(priority: int, moment_ms: int) -> int:
    """The score of a job of `priority` due at `moment_ms`."""
    return moment_ms + _offset(priority)


def rescheduled(score: float, moment_ms: int) -> int:
    """The score of a job now scored `score` (in its priority's band) once it is due again
    at `moment_ms` (a retry's backoff): it keeps its band."""
    return moment_ms + int(score // BAND_MS) * BAND_MS


def due_ranges(now_ms: int) -> list[tuple[int, int]]:
    """The scores of the jobs due at `now_ms`, one range per priority, highest first: the
    order the dispatcher claims them in. Scores below a band's range are another band's."""
    return [(_offset(priority), now_ms + _offset(priority)) for priority in sorted(PRIORITIES.values(), reverse=True)]


async def release(redis: ArqRedis, *, job_id: str, queue: str, priority: int = PRIORITIES["normal"]) -> None:
    """Make a job that a dead worker held due again at once: its in-progress marker goes,
    and if it was running, parked out of the poll window (pipelines/parking.py), it gets a
    due score back. A job no longer on the queue is left to `enqueue`."""
    await release_many(redis, [{"id": job_id, "queue": queue, "priority": priority}])


async def release_many(redis: ArqRedis, jobs: Sequence[Mapping[str, Any]]) -> None:
    """`release` for several jobs (each with its ledger `id`, `queue` and `priority`) in one round trip."""
    now = _immediately(_ms(datetime.now(UTC)))
    async with redis.pipeline(transaction=True) as pipe:
        for job in jobs:
            pipe.delete(in_progress_key_prefix + str(job["id"]))
            pipe.zadd(job["queue"], {str(job["id"]): in_band(job["priority"], now)}, xx=True)
        await pipe.execute()


async def dequeue(redis: ArqRedis, *, job_id: str, queue: str) -> None:
    """Take a job that has not started off its queue (a cancelled send_at, say)."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue, job_id)
            pipe.delete(f"arq:job:{job_id}")
            await pipe.execute()
    except (RedisError, OSError):
        pass  # the worker checks the ledger before running anything
