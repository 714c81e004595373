"""Retention: finished jobs (with their stages, files and results), old events, spent
idempotency keys.

Every sweep works in batches of `cleanup_batch_size` rows, each its own short
transaction, so a large backlog never holds locks or a snapshot for long. A job's files
are deleted before its row: if the run dies in between, the row is still there and the
next run finds the files again; nothing is ever orphaned in the bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import structlog

from pipelines.resources import Resources
from service.databases.database import Database
from service.storage import Storage, job_prefix, tenant_prefix

log = structlog.get_logger("conveyor.cleanup")


def result_keys(result: object, tenant_id: uuid.UUID) -> Iterator[str]:
    """Storage keys a result points at (an export's CSV, say), only within the tenant's prefix."""
    if isinstance(result, dict):
        key = result.get("key")
        if isinstance(key, str) and key.startswith(tenant_prefix(tenant_id)):
            yield key
        for value in result.values():
            yield from result_keys(value, tenant_id)
    elif isinstance(result, list):
        for value in result:
            yield from result_keys(value, tenant_id)


# Finished more than $1 days ago, of tenant $2 (NULL: any tenant).
OLD_FINISHED = "finished_at < now() - make_interval(days => $1) AND ($2::uuid IS NULL OR tenant_id = $2)"


async def count_old_jobs(db: Database, older_than_days: int, tenant_id: uuid.UUID | None = None) -> dict[str, int]:
    """status -> how many jobs `delete_finished_jobs` would delete now (for a dry run)."""
    async with db.read() as conn:
        rows = await conn.fetch(
            f"SELECT status, count(*) FROM jobs WHERE {OLD_FINISHED} GROUP BY status ORDER BY status",
            older_than_days,
            tenant_id,
        )
    return {row["status"]: row["count"] for row in rows}


async def delete_finished_jobs(
    db: Database, storage: Storage, *, older_than_days: int, batch_size: int, tenant_id: uuid.UUID | None = None
) -> int:
    """Delete jobs finished more than `older_than_days` ago (of one tenant, or all), with
    their stages, files and results' files; how many went."""
    deleted = 0
    while True:
        async with db.read() as conn:
            jobs = await conn.fetch(
                f"SELECT id, tenant_id, result FROM jobs WHERE {OLD_FINISHED} ORDER BY finished_at LIMIT $3",
                older_than_days,
                tenant_id,
                batch_size,
            )
        for job in jobs:
            await storage.delete_prefix(job_prefix(job["tenant_id"], job["id"]))
            for key in set(result_keys(job["result"], job["tenant_id"])):
                await storage.delete(key)
        async with db.transaction() as conn:
            # A job retried meanwhile has no finished_at any more: it stays.
            status = await conn.execute(
                f"DELETE FROM jobs WHERE {OLD_FINISHED} AND id = ANY($3::uuid[])",
                older_than_days,
                tenant_id,
                [job["id"] for job in jobs],
            )
        deleted += int(status.split()[-1])
        if len(jobs) < batch_size:
            return deleted


async def delete_old_jobs(resources: Resources) -> int:
    """The retention sweep: every tenant's jobs past JOB_RETENTION_DAYS."""
    settings = resources.settings
    return await delete_finished_jobs(
        resources.db,
        resources.storage,
        older_than_days=settings.job_retention_days,
        batch_size=settings.cleanup_batch_size,
    )


async def _delete_in_batches(resources: Resources, statement: str, *args) -> int:
    """Run a DELETE whose last parameter is the batch size until it deletes a short batch."""
    batch = resources.settings.cleanup_batch_size
    deleted = 0
    while True:
        async with resources.db.transaction() as conn:
            status = await conn.execute(statement, *args, batch)
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            return deleted


async def cleanup(resources: Resources) -> dict[str, int]:
    settings = resources.settings
    counts = {
        "jobs": await delete_old_jobs(resources),
        "events": await _delete_in_batches(
            resources,
            """
            DELETE FROM events WHERE id = ANY(ARRAY(
                SELECT id FROM events WHERE ts < now() - make_interval(days => $1) LIMIT $2
            ))
            """,
            settings.event_retention_days,
        ),
        "idempotency_keys": await _delete_in_batches(
            resources,
            """
            DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1) LIMIT $2
            ))
            """,
            settings.idempotency_key_ttl_hours,
        ),
    }
    log.info("retention sweep done", **counts)
    return counts
