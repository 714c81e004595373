"""Handing dead workers' running jobs back to the queue, saying why.

The crash watch does it the moment a worker's connections close (pipelines/maintenance/
crash_watch.py), or once its heartbeat stops; the reconciler is the backstop. The ledger
write is fenced on each job's attempt, so a job that moved on meanwhile is left alone, and
a worker presumed dead that comes back has its late writes refused (docs/design.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import asyncpg
import structlog

from pipelines.resources import Resources
from service import jobs, ledger, queue

log = structlog.get_logger("conveyor.handback")

#: Why a worker was found dead: the reasons its hand-backs are logged with.
CONNECTIONS_CLOSED = "its database session and Redis connection closed"
HEARTBEAT_STOPPED = "its heartbeat stopped"


async def hand_back(resources: Resources, running: Sequence[asyncpg.Record], *, reason: str) -> int:
    """Dead workers' `running` jobs back to `queued`, due at once in Redis; how many went."""
    if not running:
        return 0
    track = tuple(f"job:{job['id']}" for job in running)
    async with resources.db.write(track=track) as conn:  # one statement
        returned = set(await ledger.hand_back(conn, running))
    back = [job for job in running if job["id"] in returned]
    await queue.release_many(resources.redis, [dict(job) for job in back])
    await jobs.enqueue_many(resources.redis, back)  # a job arq still holds is left as it is
    for worker, count in Counter(job["worker_id"] for job in back).items():
        log.warning("handed a dead worker's jobs back to the queue", worker=worker, jobs=count, reason=reason)
    return len(back)
