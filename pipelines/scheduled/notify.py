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

from pipelines.notifications.pipeline import NOTIFICATION_PIPELINE
from pipelines.resources import Resources
from service import jobs
from service.jobs import Kinds

BATCH = 500

# Takes up to `batch` sources in the transaction it is given, creates their jobs and marks
# them handled; returns the jobs created.
TakeBatch = Callable[[asyncpg.Connection, int], Awaitable[list[asyncpg.Record]]]


async def create_notification(
    conn: asyncpg.Connection,
    kinds: Kinds,
    *,
    tenant_id: uuid.UUID,
    channel: str,
    to: list[str],
    template: str,
    data: dict,
    metadata: dict,
) -> asyncpg.Record:
    """A notification job, with the same tries and queue as one the API creates."""
    job = jobs.new_job(
        kinds[NOTIFICATION_PIPELINE.name],
        tenant_id,
        metadata=metadata,
        payload={"channel": channel, "to": to, "template": template, "data": data},
    )
    row = await jobs.create(conn, job)
    assert row is not None  # without `once`, the new row always comes back
    return row


async def enqueue_all(redis: ArqRedis, created: Iterable[asyncpg.Record]) -> None:
    for job in created:
        await jobs.enqueue(redis, job)


async def drain(resources: Resources, take_batch: TakeBatch, batch: int = BATCH) -> int:
    """Run `take_batch` one transaction at a time until a batch comes back short; returns jobs created."""
    created = 0
    while True:
        async with resources.db.transaction() as conn:
            made = await take_batch(conn, batch)
        await enqueue_all(resources.redis, made)
        created += len(made)
        if len(made) < batch:
            return created
