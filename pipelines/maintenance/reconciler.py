"""The reconciler: the ledger is the truth, Redis is only a way to get jobs to workers.

It runs every `INTERVAL` seconds, once per tick across all workers (whoever takes the
tick's lock in Redis), as a background task of every worker, never behind the queue. It looks
at unfinished jobs nobody touched for a while:
- queued, but unknown to Redis (Redis restarted, flushed, or down when the job was
  accepted): enqueue it again;
- queued, but held by an in-progress marker of a worker that never claimed it: free it;
- running on a worker whose heartbeat stopped: hand it back to the queue at once, instead
  of waiting minutes for arq's in-progress key to expire (the crash watch,
  pipelines/maintenance/crash_watch.py, usually has already: this is its backstop);
- running on a live worker: note that it is fine (so it is not looked at again soon).
"""

from __future__ import annotations

import asyncio

import structlog
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.exceptions import RedisError

from pipelines.maintenance.handback import HEARTBEAT_STOPPED, hand_back
from pipelines.resources import Resources
from service import jobs, ledger, queue
from service.errors import DependencyUnavailable
from service.queue import heartbeats

log = structlog.get_logger("conveyor.reconciler")

INTERVAL = 2.0
LOCK_KEY = "conveyor:reconciler:tick"


async def reconcile_forever(resources: Resources, known_kinds: frozenset[str]) -> None:
    """Each tick, one worker of those serving these kinds on this queue reconciles; the
    lock expires before the next tick. Deployments sharing a Redis have queues of their
    own, so the queue is in the lock's name: each deployment's ledger gets reconciled."""
    lock = f"{LOCK_KEY}:{resources.settings.queue_name}:{','.join(sorted(known_kinds))}"
    while True:
        await asyncio.sleep(INTERVAL)
        try:
            if await resources.redis.set(lock, resources.worker_id, nx=True, px=int(INTERVAL * 900)):
                await reconcile(resources, known_kinds)
        except (RedisError, OSError) as exc:
            log.warning("reconciler could not take its tick", error=type(exc).__name__)


async def reconcile(resources: Resources, known_kinds: frozenset[str]) -> dict[str, int]:
    settings = resources.settings
    counts = {"enqueued": 0, "orphaned": 0, "freed": 0, "alive": 0}
    try:
        async with resources.db.read() as conn:
            stale = await ledger.stale_jobs(conn, settings.reconcile_after_seconds, known_kinds)
        if not stale:
            return counts
        redis = resources.redis
        ids = [str(job["id"]) for job in stale]
        in_redis = await redis.mget([job_key_prefix + job_id for job_id in ids])
        in_progress = await redis.mget([in_progress_key_prefix + job_id for job_id in ids])
        alive = await heartbeats.alive(redis, {job["worker_id"] for job in stale if job["worker_id"]})
        touched, orphaned = [], []
        for job, job_id, queued, held in zip(stale, ids, in_redis, in_progress, strict=True):
            if job["status"] == "running" and job["worker_id"] in alive:
                touched.append(job["id"])
                counts["alive"] += 1
            elif job["status"] == "running":
                orphaned.append(job)
            elif held is not None:
                await queue.release(redis, job_id=job_id, queue=job["queue"], priority=job["priority"])
                touched.append(job["id"])
                counts["freed"] += 1
            elif queued is None:
                await jobs.enqueue(redis, job)
                touched.append(job["id"])
                counts["enqueued"] += 1
            else:
                touched.append(job["id"])
        counts["orphaned"] = await hand_back(resources, orphaned, reason=HEARTBEAT_STOPPED)
        if touched:
            async with resources.db.transaction() as conn:
                await ledger.touch(conn, touched)
    except (RedisError, OSError, DependencyUnavailable) as exc:
        log.warning("reconciler could not run", error=type(exc).__name__)
        return counts
    if counts["enqueued"] or counts["orphaned"] or counts["freed"]:
        log.info("reconciled", **counts)
    return counts
