"""A worker's side of the ledger while a job runs: claim an attempt, start and finish its
stages, save checkpoints and progress. Every write is fenced by the attempt number."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from service.ledger.common import JOB_COLUMNS
from service.ledger.writes import StageEnd, StageStart, as_records, check_owned, fetch_fenced

# An attempt at each of the jobs `{chosen}` names (a condition on `jobs`; $2 the worker, $3
# the kind's stages) that is still to run, as the CTE `claimed`, with its stage rows.
CLAIMED = f"""
claimed AS (
    UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_id = $2,
                    started_at = coalesce(started_at, now()), updated_at = now(),
                    stage = CASE WHEN attempts = 0 THEN ($3::text[])[1] ELSE stage END
    WHERE {{chosen}} AND status IN ('queued', 'running') AND NOT cancel_requested
    RETURNING {JOB_COLUMNS}, (SELECT name FROM tenants WHERE tenants.id = jobs.tenant_id) AS tenant
), stages AS (
    INSERT INTO job_stages (job_id, name, position, status, attempt, started_at)
    SELECT claimed.id, s.name, s.position - 1,
           CASE WHEN first THEN 'running' ELSE 'queued' END,
           CASE WHEN first THEN 1 ELSE 0 END,
           CASE WHEN first THEN now() END
    FROM claimed, unnest($3::text[]) WITH ORDINALITY AS s(name, position),
         LATERAL (SELECT claimed.attempts = 1 AND s.position = 1 AS first) AS f
    ON CONFLICT DO NOTHING
)
"""


async def claim_many(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], worker_id: str, stage_names: Sequence[str]
) -> dict[uuid.UUID, asyncpg.Record]:
    """Start an attempt at each job: bump its attempt number (the fencing token), own it, and
    make sure its stage rows exist; one statement, so atomic without a transaction. A
    first attempt also starts its first stage (what `start_stage` would write next).

    Jobs missing from the answer have nothing to run: unknown, finished or cancelled. Each
    row also carries its tenant's name (`tenant`), which the job's stages are shown.
    """
    rows = await conn.fetch(
        f"WITH {CLAIMED.format(chosen='id = ANY($1::uuid[])')} SELECT * FROM claimed",
        list(job_ids),
        worker_id,
        list(stage_names),
    )
    return {row["id"]: row for row in rows}


async def claim(
    conn: asyncpg.Connection, job_id: uuid.UUID, worker_id: str, stage_names: Sequence[str]
) -> asyncpg.Record | None:
    """`claim_many` for one job: its row, or None when there is nothing to run."""
    return (await claim_many(conn, [job_id], worker_id, stage_names)).get(job_id)


async def finished_stages(conn: asyncpg.Connection, job_id: uuid.UUID) -> dict[str, dict]:
    """Checkpoints of every stage a previous attempt finished (or partly did), by name."""
    rows = await conn.fetch("SELECT name, status, checkpoint FROM job_stages WHERE job_id = $1", job_id)
    return {row["name"]: {"status": row["status"], "checkpoint": row["checkpoint"]} for row in rows}


async def start_stages(conn: asyncpg.Connection, starts: Sequence[StageStart]) -> set[uuid.UUID]:
    """Mark stages running (and their jobs' stage and progress); the ids whose attempt still
    owns its job. Fenced ones are left untouched."""
    rows = await conn.fetch(
        """
        WITH b AS (
            SELECT * FROM jsonb_to_recordset($1::jsonb) AS b(job_id uuid, attempt int, name text, progress real)
        ), job AS (
            UPDATE jobs j SET stage = b.name, progress = greatest(j.progress, b.progress), updated_at = now()
            FROM b WHERE j.id = b.job_id AND j.attempts = b.attempt AND j.status = 'running'
            RETURNING j.id, b.attempt, b.name
        )
        UPDATE job_stages s SET status = 'running', attempt = job.attempt, started_at = now(),
                                finished_at = NULL, error = NULL
        FROM job WHERE s.job_id = job.id AND s.name = job.name
        RETURNING s.job_id
        """,
        as_records(starts),
    )
    return {row["job_id"] for row in rows}


async def start_stage(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, name: str, progress: float) -> None:
    start = StageStart(job_id, attempt, name, progress)
    check_owned(await start_stages(conn, [start]), start)


async def finish_stages(conn: asyncpg.Connection, ends: Sequence[StageEnd]) -> set[uuid.UUID]:
    """Record how stages ended, with their checkpoints; the ids whose attempt still owns its job."""
    rows = await conn.fetch(
        """
        WITH b AS (
            SELECT * FROM jsonb_to_recordset($1::jsonb)
                AS b(job_id uuid, attempt int, name text, status text, checkpoint jsonb, error jsonb, progress real)
        ), job AS (
            UPDATE jobs j SET progress = greatest(j.progress, coalesce(b.progress, j.progress)), updated_at = now()
            FROM b WHERE j.id = b.job_id AND j.attempts = b.attempt AND j.status = 'running'
            RETURNING j.id, b.name, b.status, b.checkpoint, b.error
        )
        UPDATE job_stages s SET status = job.status, finished_at = now(), checkpoint = coalesce(job.checkpoint, s.checkpoint),
                                error = job.error, started_at = coalesce(s.started_at, now())
        FROM job WHERE s.job_id = job.id AND s.name = job.name
        RETURNING s.job_id
        """,
        as_records(ends),
    )
    return {row["job_id"] for row in rows}


async def finish_stage(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    attempt: int,
    name: str,
    status: str,
    *,
    checkpoint: dict | None = None,
    error: dict | None = None,
    progress: float | None = None,
) -> None:
    end = StageEnd(job_id, attempt, name, status, checkpoint, error, progress)
    check_owned(await finish_stages(conn, [end]), end)


async def save_checkpoint(
    conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, name: str, checkpoint: dict
) -> None:
    """Partial progress of a running stage (a Textract JobId, renditions uploaded so far)."""
    await fetch_fenced(
        conn,
        """
        UPDATE job_stages s SET checkpoint = $4
        FROM jobs j WHERE j.id = s.job_id AND s.job_id = $1 AND j.attempts = $2 AND j.status = 'running' AND s.name = $3
        RETURNING 1
        """,
        job_id,
        attempt,
        name,
        checkpoint,
    )


async def set_progress(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, progress: float) -> None:
    await fetch_fenced(
        conn,
        """
        UPDATE jobs SET progress = greatest(progress, $3), updated_at = now()
        WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1
        """,
        job_id,
        attempt,
        progress,
    )
