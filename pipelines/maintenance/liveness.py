"""A worker's heartbeat, and how it hears that one of its jobs was cancelled.

arq itself only notices a dead worker when the job's in-progress key expires (its
largest timeout + 10 s: minutes). Each worker instead refreshes a short-lived key every
`worker_heartbeat_seconds`; the reconciler treats a job whose worker's key is gone as
orphaned and hands it to the living within seconds. The heartbeat also registers the
worker with the crash watch (crash_watch.py), which notices a killed worker sooner still.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Sequence

import structlog
from redis.exceptions import RedisError

from pipelines.maintenance.session import registry_key
from pipelines.resources import Resources
from service.errors import DependencyUnavailable
from service.queue import SOCKET_TIMEOUT_SECONDS
from service.queue.events import CANCEL_CHANNEL
from service.queue.heartbeats import WORKERS_KEY, worker_key

log = structlog.get_logger("conveyor.liveness")

FORGET_AFTER_SECONDS = 24 * 3600
CANCEL_WAIT_SECONDS = SOCKET_TIMEOUT_SECONDS / 2


async def beat(resources: Resources, started_at: float, kind_queues: Sequence[str]) -> None:
    """Say this worker lives, which jobs it runs, and where the jobs of its kinds go (a
    kind's own queue is shown wherever queues are, even before a worker serves it)."""
    settings = resources.settings
    seen_at = time.time()
    state = {
        "id": resources.worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queue": settings.queue_name,
        "kind_queues": list(kind_queues),
        "started_at": started_at,
        "seen_at": seen_at,
        "jobs": sorted(resources.running),
    }
    async with resources.redis.pipeline(transaction=True) as pipe:
        pipe.set(worker_key(resources.worker_id), json.dumps(state), px=int(settings.worker_dead_after_seconds * 1000))
        pipe.zadd(WORKERS_KEY, {resources.worker_id: seen_at})
        pipe.zadd(registry_key(settings.queue_name), {resources.worker_id: seen_at})  # watched from now on
        await pipe.execute()


async def heartbeat_forever(resources: Resources, kind_queues: Sequence[str]) -> None:
    """Beat, and cancel any of our jobs whose cancel we may have missed on pub/sub."""
    started_at = time.time()
    while True:
        try:
            await beat(resources, started_at, kind_queues)
            await cancel_requested_jobs(resources)
        except (RedisError, OSError, DependencyUnavailable) as exc:
            log.warning("heartbeat failed", error=type(exc).__name__)
        await asyncio.sleep(resources.settings.worker_heartbeat_seconds)


async def cancel_requested_jobs(resources: Resources) -> None:
    if not resources.running:
        return
    async with resources.db.read() as conn:
        rows = await conn.fetch(
            "SELECT id::text FROM jobs WHERE id = ANY($1::uuid[]) AND cancel_requested",
            list(resources.running),
        )
    for row in rows:
        resources.cancel(row["id"])


async def listen_for_cancels(resources: Resources) -> None:
    """Cancels published by the API reach the worker running the job at once. Each wait for
    one is shorter than a command may take (`queue.SOCKET_TIMEOUT_SECONDS`), so a quiet
    channel is not mistaken for a lost connection; a lost one (Redis restarted, a Sentinel
    failover) is subscribed again, on whichever server is master then."""
    while True:
        pubsub = resources.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CANCEL_CHANNEL)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=CANCEL_WAIT_SECONDS)
                if message is None:
                    continue
                job_id = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                if resources.cancel(job_id):
                    log.info("cancelling at the user's request", job_id=job_id)
        except (RedisError, OSError) as exc:
            log.warning("cancel listener lost redis; reconnecting", error=type(exc).__name__)
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


async def forget(resources: Resources) -> None:
    """At a clean shutdown: this worker is gone, no need to wait for its key to expire."""
    try:
        await resources.redis.delete(worker_key(resources.worker_id))
        await resources.redis.zrem(WORKERS_KEY, resources.worker_id)
        await resources.redis.zrem(registry_key(resources.settings.queue_name), resources.worker_id)
    except (RedisError, OSError):
        pass


async def prune_workers(resources: Resources) -> int:
    """Killed workers never say goodbye: drop those unseen for a day from the roster."""
    return await resources.redis.zremrangebyscore(WORKERS_KEY, "-inf", time.time() - FORGET_AFTER_SECONDS)


async def live_workers(redis, worker_ids: set[str]) -> set[str]:
    ids = sorted(worker_ids)
    if not ids:
        return set()
    alive = await redis.mget([worker_key(worker_id) for worker_id in ids])
    return {worker_id for worker_id, state in zip(ids, alive, strict=True) if state is not None}
