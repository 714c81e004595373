"""A job's `callback_url` gets one delivery when the job ends, whatever its outcome.

The delivery is itself a job (kind `callback`), recorded in the same transaction that
ends the job, with an id derived from the job and its attempt: it cannot be lost if a
process dies right after, and it cannot be recorded twice for the same ending.
"""

from __future__ import annotations

import uuid

import asyncpg

from service import jobs, queue

NAMESPACE = uuid.UUID("6f1f3c1e-8a7d-4c57-9d0e-6a8b2f0c1d21")
KIND = "callback"


def callback_job_id(job_id: uuid.UUID, attempt: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{job_id}:{attempt}")


def wanted(job: asyncpg.Record) -> bool:
    """Whether the job's ending gets a delivery (callbacks themselves get none)."""
    return bool(job["callback_url"]) and job["kind"] != KIND


async def record(conn: asyncpg.Connection, job: asyncpg.Record, kinds: jobs.Kinds) -> asyncpg.Record | None:
    """Record the ending's callback delivery (a job of the `callback` kind in `kinds`), if
    the job asked for one. Call inside the transaction that ends the job; enqueue the
    returned row after it commits."""
    if not wanted(job):
        return None
    payload = {"job_id": str(job["id"]), "kind": job["kind"], "status": job["status"], "type": f"job.{job['status']}"}
    delivery = jobs.new_job(
        kinds[KIND],
        job["tenant_id"],
        job_id=callback_job_id(job["id"], job["attempts"]),
        payload=payload,
        callback_url=job["callback_url"],
        priority=queue.PRIORITIES["high"],
    )
    return await jobs.create(conn, delivery, once=True)


async def enqueue(redis, row: asyncpg.Record | None) -> None:
    if row is not None:
        await jobs.enqueue(redis, row)
