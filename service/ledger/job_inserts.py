"""New jobs, combined across concurrent requests into one INSERT (`service.batching`).

One INSERT and one commit per accepted upload makes the commits the API's ceiling under
load, and they share the cores with everything else; requests that arrive while an INSERT
is in flight go together in the next one, committed together. A request with an
Idempotency-Key records the key in the same transaction as its job, so it is not combined.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from service import ledger
from service.batching import ON_THE_WAY_IN_FLIGHT, Batcher
from service.databases import consistency
from service.databases.database import Database


def tracked(job: ledger.NewJob) -> tuple[str, str]:
    """What readers of a new job follow: the job, and its tenant's lists."""
    return f"job:{job.job_id}", f"tenant:{job.tenant_id}"


class JobInserts:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._batcher: Batcher[ledger.NewJob, tuple[asyncpg.Record, int | None]] = Batcher(
            self._insert_many, key=_job_id, split_on=(asyncpg.PostgresError,), in_flight=ON_THE_WAY_IN_FLIGHT
        )

    async def insert(self, job: ledger.NewJob) -> asyncpg.Record:
        """The job's row once it is committed; the request's consistency token covers it."""
        row, lsn = await self._batcher.submit(job)
        if lsn is not None:
            consistency.note_write(lsn)  # in this request's context, not the batch's
        return row

    async def _insert_many(self, jobs: Sequence[ledger.NewJob]) -> list[tuple[asyncpg.Record, int | None]]:
        track = tuple(dict.fromkeys(name for job in jobs for name in tracked(job)))
        async with self.db.write() as conn:
            rows = await ledger.create_jobs(conn, jobs)
            lsn = await self.db.remember(conn, track)
        return [(rows[job.job_id], lsn) for job in jobs]


def _job_id(job: ledger.NewJob) -> uuid.UUID:
    return job.job_id
