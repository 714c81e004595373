"""Creating notification jobs from a cron run, the way the API would.

Each job is recorded in the caller's transaction, together with the mark that says its
source was handled (a reminder's job_id, a membership's notified_at), so a tick that dies
half-way leaves nothing half-sent and the next tick finds the rest. Enqueueing happens
after commit; if Redis is down then, the reconciler enqueues the jobs later.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable

import asyncpg
from arq.connections import ArqRedis

from pipelines.resources import Resources
from service import ledger, queue
from service.config import Settings

KIND = "notification"
MAX_TRIES = 5
BATCH = 500

# Takes up to `batch` sources in the transaction it is given, creates their jobs and marks
# them handled; returns the jobs created.
TakeBatch = Callable[[asyncpg.Connection, int], Awaitable[list[asyncpg.Record]]]


async def create_notification(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: uuid.UUID,
    channel: str,
    to: list[str],
    template: str,
    data: dict,
    metadata: dict,
) -> asyncpg.Record:
    return await ledger.create_job(
        conn,
        job_id=ledger.new_job_id(),
        tenant_id=tenant_id,
        kind=KIND,
        queue=settings.queue_for(KIND),
        priority=queue.PRIORITIES["normal"],
        max_tries=MAX_TRIES,
        payload={"channel": channel, "to": to, "template": template, "data": data},
        metadata=metadata,
    )


async def enqueue_all(redis: ArqRedis, jobs: Iterable[asyncpg.Record]) -> None:
    for job in jobs:
        await queue.enqueue(redis, job_id=str(job["id"]), kind=job["kind"], queue=job["queue"],
                            priority=job["priority"])


async def drain(resources: Resources, take_batch: TakeBatch, batch: int = BATCH) -> int:
    """Run `take_batch` one transaction at a time until a batch comes back short; returns jobs created."""
    created = 0
    while True:
        async with resources.db.transaction() as conn:
            jobs = await take_batch(conn, batch)
        await enqueue_all(resources.redis, jobs)
        created += len(jobs)
        if len(jobs) < batch:
            return created
