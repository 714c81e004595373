"""What the queues and workers look like right now, read from Redis.

/metrics (at scrape), /readyz and the dashboard all ask the same questions: how deep is
each queue, how old is its oldest waiting job, which workers are alive and what are they
running, how many jobs ended in the last hour. Redis answers them cheaply; the ledger
is left alone.

arq keeps a running job in its queue's sorted set until it ends, so "queued" is the
due members minus the ones the live workers report running in their heartbeats.

A queue's numbers have the same names everywhere they are shown (`conveyor queues`,
`conveyor watch`, the dashboard): queued, running, scheduled, oldest queued.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arq.constants import job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.batching import Batcher
from service.config import Settings
from service.queue import due_ranges
from service.queue.heartbeats import live_workers

FINISHED_KEY = "conveyor:finished:"  # + epoch minute: a hash of "kind:status" -> count
FINISHED_KEEP_SECONDS = 2 * 3600
HOUR_MINUTES = 60


def queue_names(settings: Settings, more: Iterable[str] = ()) -> list[str]:
    """Every arq queue this deployment uses: the default one, each per-kind route, and `more`."""
    routes = (route.partition("=")[2].strip() for route in settings.kind_queues)
    return list(dict.fromkeys(name for name in (settings.queue_name, *routes, *more) if name))


def queues_in_use(workers: Iterable[Mapping[str, Any]]) -> list[str]:
    """The queues live workers serve or send their kinds' jobs to (a kind declared with
    `queue=` goes to a queue no setting names), from their heartbeats."""
    return [name for worker in workers for name in (worker.get("queue", ""), *worker.get("kind_queues", ()))]


@dataclass(frozen=True)
class QueueState:
    name: str
    queued: int  # due now, waiting for a worker
    running: int
    scheduled: int  # queued too, but due later (send_at, retry backoff)
    oldest_age: float  # seconds since the oldest queued job was enqueued; 0 when none is queued


async def _enqueue_time(redis: Redis, job_id: str) -> float | None:
    raw = await redis.get(job_key_prefix + job_id)
    if raw is None:
        return None
    try:
        return float(json.loads(raw)["et"]) / 1000
    except (ValueError, KeyError, TypeError):
        return None


async def queue_state(redis: Redis, name: str, running_ids: set[str]) -> QueueState:
    """A queue's backlog. Running jobs stay in arq's queue: due until their worker parks
    them (pipelines/parking.py), scheduled for later once it has, so both counts leave them out."""
    now = time.time()
    now_ms = int(now * 1000)
    ranges = due_ranges(now_ms)
    running = sorted(running_ids)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(name)
        for low, high in ranges:
            pipe.zcount(name, low, high)
        if running:
            pipe.zmscore(name, running)
        total, *counts = await pipe.execute()
    due = sum(counts[: len(ranges)])
    scores = counts[len(ranges)] if running else []
    running_scores = [score for score in scores if score is not None]
    running_due = sum(1 for score in running_scores if any(low <= score <= high for low, high in ranges))
    queued = max(due - running_due, 0)
    scheduled = max(total - due - (len(running_scores) - running_due), 0)
    oldest_age = 0.0
    if queued:
        enqueued = [await _enqueue_time(redis, job_id) for job_id in await _heads(redis, name, ranges, running_ids)]
        known = [moment for moment in enqueued if moment]
        oldest_age = max(now - min(known), 0.0) if known else 0.0
    return QueueState(name, queued, len(running), scheduled, round(oldest_age, 3))


async def _heads(redis: Redis, name: str, ranges: Sequence[tuple[int, int]], running_ids: set[str]) -> list[str]:
    """The first waiting (not running) job of each priority's due jobs."""
    heads = []
    for low, high in ranges:
        ids = await redis.zrangebyscore(name, low, high, start=0, num=len(running_ids) + 1)
        texts = [raw.decode() if isinstance(raw, bytes) else raw for raw in ids]
        first = next((job_id for job_id in texts if job_id not in running_ids), None)
        if first is not None:
            heads.append(first)
    return heads


async def queue_states(
    redis: Redis, settings: Settings, workers: list[dict] | None = None, names: list[str] | None = None
) -> list[QueueState]:
    """The backlog of `names` (default: every queue of this deployment, those the live workers
    use included), with the jobs the live `workers` (default: from their heartbeats) run."""
    workers = await live_workers(redis) if workers is None else workers
    running: dict[str, set[str]] = {}
    for worker in workers:
        running.setdefault(worker.get("queue", settings.queue_name), set()).update(worker.get("jobs", ()))
    return [
        await queue_state(redis, name, running.get(name, set()))
        for name in names or queue_names(settings, queues_in_use(workers))
    ]


# -- jobs ended per minute: throughput and failure rate over the last hour ---------------


async def record_finished(redis: Redis, ended: Sequence[tuple[str, str]]) -> list[None]:
    """Count jobs that ended, as (kind, status) pairs, in this minute's bucket. Best effort:
    if Redis cannot take them, the dashboard's hourly numbers miss them; the ledger is the record."""
    key = f"{FINISHED_KEY}{int(time.time() // 60)}"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for field, count in Counter(f"{kind}:{status}" for kind, status in ended).items():
                pipe.hincrby(key, field, count)
            pipe.expire(key, FINISHED_KEEP_SECONDS)
            await pipe.execute()
    except (RedisError, OSError):
        pass
    return [None] * len(ended)


#: Counts are per minute: a batch may wait this long to gather a worker's endings.
COUNT_LINGER_SECONDS = 0.05


class FinishedCounter:
    """A worker's `record_finished`, combined across its jobs into one round trip a batch;
    a job does not wait for its count to be written."""

    def __init__(self, redis: Redis) -> None:
        # Every pair is counted, equal ones too: `id` keeps none of them apart.
        self._batcher: Batcher[tuple[str, str], None] = Batcher(
            lambda ended: record_finished(redis, ended), key=id, linger=COUNT_LINGER_SECONDS
        )

    def add(self, kind: str, status: str) -> None:
        self._batcher.post((kind, status))

    async def aclose(self) -> None:
        """Once every count added so far is written."""
        await self._batcher.drain()


async def finished_last_hour(redis: Redis) -> Counter:
    """(kind, status) -> jobs that ended in the last 60 minutes (this one included)."""
    minute = int(time.time() // 60)
    async with redis.pipeline(transaction=False) as pipe:
        for offset in range(HOUR_MINUTES):
            pipe.hgetall(f"{FINISHED_KEY}{minute - offset}")
        buckets = await pipe.execute()
    counts: Counter = Counter()
    for bucket in buckets:
        for field, value in bucket.items():
            kind, _, status = (field.decode() if isinstance(field, bytes) else field).rpartition(":")
            counts[(kind, status)] += int(value)
    return counts


def summarize_hour(counts: Counter) -> dict:
    """Throughput and failure rate (failed among succeeded + failed) for the dashboard."""
    by_status: Counter = Counter()
    for (_, status), count in counts.items():
        by_status[status] += count
    judged = by_status["succeeded"] + by_status["failed"]
    return {
        "finished": sum(by_status.values()),
        "succeeded": by_status["succeeded"],
        "failed": by_status["failed"],
        "cancelled": by_status["cancelled"],
        "per_minute": round(sum(by_status.values()) / HOUR_MINUTES, 2),
        "failure_rate": round(by_status["failed"] / judged, 4) if judged else 0.0,
    }
