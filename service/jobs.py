"""Making jobs: the one place a new job's tries, queue and priority are decided.

A kind's rules (how often its jobs are tried, how long one attempt may run, which queue
they go to) are declared once, with the kind, in `pipelines/` (or, later, by an app),
and reach the core as a `KindSpec` of plain values: the core never imports a kind's code,
so whoever creates a job (the API, a job's callback, the scheduler) passes the kind's spec,
and `new_job` reads tries and queue from it and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service import ledger, queue


@dataclass(frozen=True)
class KindSpec:
    """What the core knows of a kind: its name, tries, the limit on one attempt (seconds),
    and the queue its jobs go to, as the deployment's settings resolved it."""

    name: str
    tries: int
    timeout: float
    queue: str
    concurrency: int | None = None  # at most this many running jobs per concurrency key


#: The specs of every known kind, by name.
Kinds = Mapping[str, KindSpec]


def new_job(
    kind: KindSpec,
    tenant_id: uuid.UUID,
    *,
    job_id: uuid.UUID | None = None,
    payload: dict | None = None,
    metadata: dict | None = None,
    callback_url: str | None = None,
    run_at: datetime | None = None,
    priority: int = queue.PRIORITIES["normal"],
    traceparent: str | None = None,
    max_tries: int | None = None,
    timeout: float | None = None,
    concurrency_key: str | None = None,
    workflow: tuple[uuid.UUID, str] | None = None,
) -> ledger.NewJob:
    """A job of `kind` to record, on the kind's queue, tried as often as the kind says
    unless the job asks otherwise (`max_tries`, `timeout`); `workflow` names the workflow
    and step it is a job of."""
    return ledger.NewJob(
        job_id=job_id or ledger.new_job_id(),
        tenant_id=tenant_id,
        kind=kind.name,
        queue=kind.queue,
        priority=priority,
        max_tries=max_tries or kind.tries,
        payload=payload,
        metadata=metadata,
        callback_url=callback_url,
        run_at=run_at,
        traceparent=traceparent,
        timeout=timeout,
        concurrency_key=concurrency_key,
        workflow_id=workflow[0] if workflow else None,
        workflow_step=workflow[1] if workflow else None,
    )


async def create(conn: asyncpg.Connection, job: ledger.NewJob, *, once: bool = False) -> asyncpg.Record | None:
    """Record `job` in `conn`'s transaction (so it exists exactly when the caller's own
    writes do); its row. With `once`, a job whose id is already recorded is left alone
    and None comes back (ids derived from what made the job make its creation idempotent)."""
    return (await ledger.create_jobs(conn, [job], once=once)).get(job.job_id)


async def enqueue(redis, job: asyncpg.Record) -> None:
    """Hand a recorded job to arq once its transaction committed; if Redis is down the
    reconciler does it later (the ledger, not Redis, says the job exists)."""
    await enqueue_many(redis, [job])


async def enqueue_many(redis, jobs: Sequence[asyncpg.Record]) -> bool:
    """`enqueue` for several recorded jobs in one round trip to Redis; False if Redis was
    unreachable (the reconciler hands them over later). Handing over a job arq already
    holds does nothing (arq's job id is the ledger id): several processes may hand over
    the same job and it still runs once."""
    return await queue.enqueue_many(
        redis,
        [
            {
                "job_id": str(job["id"]),
                "kind": job["kind"],
                "queue": job["queue"],
                "priority": job["priority"],
                "run_at": job["run_at"],
            }
            for job in jobs
        ],
    )
