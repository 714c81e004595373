"""How an attempt ends in the ledger (succeeded, failed, cancelled, or requeued for a retry),
and the reconciler's view of jobs whose worker stopped reporting."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

import asyncpg

from service.ledger.common import JOB_COLUMNS, qualified, settle_stages
from service.ledger.writes import JobEnd, as_records, check_owned, fetch_fenced

#: What an ending is acted on with (its metrics, callback, workflow step and log line). Not
#: the payload, result or metadata: the worker has them or needs them no more, and decoding
#: them again would be a good part of a short job's cost.
ENDED_COLUMNS = """
    id, tenant_id, kind, status, progress, attempts, callback_url, started_at, finished_at,
    workflow_id, workflow_step
"""


async def finish_jobs(conn: asyncpg.Connection, ends: Sequence[JobEnd]) -> dict[uuid.UUID, asyncpg.Record]:
    """End attempts: status, result or error, and the last stage's end where given; the rows
    (`ENDED_COLUMNS`) of the jobs their attempt still owned."""
    rows = await conn.fetch(
        f"""
        WITH b AS (
            SELECT * FROM jsonb_to_recordset($1::jsonb)
                AS b(job_id uuid, attempt int, status text, result jsonb, error jsonb,
                     stage text, stage_status text, stage_checkpoint jsonb, progress real)
        ), ended AS (
            UPDATE jobs SET status = b.status, result = b.result, error = b.error, stage = NULL, finished_at = now(),
                            updated_at = now(),
                            progress = CASE WHEN b.status = 'succeeded' THEN 1 ELSE coalesce(b.progress, jobs.progress) END
            FROM b WHERE jobs.id = b.job_id AND jobs.attempts = b.attempt AND jobs.status = 'running'
            RETURNING {qualified(ENDED_COLUMNS, "jobs")}, b.stage AS ended_stage, b.stage_status, b.stage_checkpoint
        ), stages AS (
            UPDATE job_stages s SET status = ended.stage_status, finished_at = now(), error = NULL,
                                    checkpoint = coalesce(ended.stage_checkpoint, s.checkpoint),
                                    started_at = coalesce(s.started_at, now())
            FROM ended WHERE s.job_id = ended.id AND s.name = ended.ended_stage
        ), later_stages AS ({settle_stages("ended", keep="s.name IS NOT DISTINCT FROM ended.ended_stage")})
        SELECT {ENDED_COLUMNS} FROM ended
        """,
        as_records(ends),
    )
    return {row["id"]: row for row in rows}


async def finish_job(conn: asyncpg.Connection, end: JobEnd) -> asyncpg.Record:
    """`finish_jobs` for one job: its row, or `Fenced`."""
    rows = await finish_jobs(conn, [end])
    check_owned(rows.keys(), end)
    return rows[end.job_id]


async def requeue(
    conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, error: dict, progress: float | None = None
) -> None:
    """A transient failure: back to `queued` (with the error shown) until the retry runs; its
    progress falls back to what its finished stages make (`progress`, when known)."""
    await fetch_fenced(
        conn,
        """
        UPDATE jobs SET status = 'queued', error = $3, stage = NULL, worker_id = NULL, updated_at = now(),
                        progress = coalesce($4, progress)
        WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1
        """,
        job_id,
        attempt,
        error,
        progress,
    )


async def cancel_running(
    conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int | None = None
) -> asyncpg.Record | None:
    """End a job whose cancel was requested (by its own attempt, or the reconciler's)."""
    return await conn.fetchrow(
        f"""
        WITH ended AS (
            UPDATE jobs SET status = 'cancelled', stage = NULL, finished_at = now(), updated_at = now()
            WHERE id = $1 AND status IN ('queued', 'running') AND cancel_requested
                  AND ($2::int IS NULL OR attempts = $2)
            RETURNING {JOB_COLUMNS}
        ), stages AS ({settle_stages("ended")})
        SELECT * FROM ended
        """,
        job_id,
        attempt,
    )


async def stale_jobs(
    conn: asyncpg.Connection, older_than_seconds: float, kinds: Collection[str], limit: int = 500
) -> list[asyncpg.Record]:
    """Unfinished jobs of `kinds` nobody has touched for a while: candidates for the
    reconciler of the workers that run those kinds (others' jobs must not crowd them out)."""
    return await conn.fetch(
        f"""
        SELECT {JOB_COLUMNS} FROM jobs
        WHERE status IN ('queued', 'running') AND updated_at < now() - make_interval(secs => $1)
              AND kind = ANY($3::text[])
        ORDER BY updated_at LIMIT $2
        """,
        older_than_seconds,
        limit,
        list(kinds),
    )


async def running_jobs_of(conn: asyncpg.Connection, worker_ids: Collection[str]) -> list[asyncpg.Record]:
    """The jobs these workers were running when they died, whatever their kind."""
    return await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'running' AND worker_id = ANY($1::text[])", list(worker_ids)
    )


async def hand_back(conn: asyncpg.Connection, jobs: Sequence[asyncpg.Record]) -> list[uuid.UUID]:
    """Dead workers' running jobs back to `queued`, each fenced on the attempt it was
    running (a job that moved on meanwhile is left alone); the ids that went back."""
    rows = await conn.fetch(
        """
        UPDATE jobs SET status = 'queued', worker_id = NULL, stage = NULL, updated_at = now()
        FROM unnest($1::uuid[], $2::int[]) AS dead(id, attempts)
        WHERE jobs.id = dead.id AND jobs.attempts = dead.attempts AND jobs.status = 'running'
        RETURNING jobs.id
        """,
        [job["id"] for job in jobs],
        [job["attempts"] for job in jobs],
    )
    return [row["id"] for row in rows]


async def touch(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute("UPDATE jobs SET updated_at = now() WHERE id = ANY($1::uuid[])", list(job_ids))
