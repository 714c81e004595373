"""The job ledger: PostgreSQL is the system of record for every job and its stages.

arq only carries a job id from the API to a worker; status, progress, stages, their
checkpoints, errors and results live here, for weeks. Every write a worker makes is
fenced by the attempt number it claimed, so a worker that was presumed dead and comes
back can never overwrite what a newer attempt wrote (`Fenced`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

FINISHED = ("succeeded", "failed", "cancelled")
UNFINISHED = ("queued", "running")

JOB_COLUMNS = """
    id, tenant_id, kind, status, queue, priority, progress, stage, attempts, max_tries,
    cancel_requested, worker_id, payload, metadata, callback_url, error, result,
    traceparent, run_at, created_at, updated_at, started_at, finished_at
"""


class Fenced(Exception):
    """This attempt no longer owns the job: a newer attempt or a cancel took it over."""


def qualified(columns: str, table: str) -> str:
    """`JOB_COLUMNS` prefixed with a table name, for statements that join another relation."""
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


def new_job_id() -> uuid.UUID:
    """122 random bits (UUIDv4): unguessable, so an id alone grants nothing."""
    return uuid.uuid4()


def parse_job_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


# -- the API side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    queue: str
    priority: int = 0
    max_tries: int = 5
    payload: dict | None = None
    metadata: dict | None = None
    callback_url: str | None = None
    run_at: datetime | None = None
    traceparent: str | None = None


async def create_jobs(
    conn: asyncpg.Connection, jobs: Sequence[NewJob], *, once: bool = False
) -> dict[uuid.UUID, asyncpg.Record]:
    """Insert jobs in one statement (committed together); their rows by id. With `once`,
    jobs whose id is already recorded are skipped (and absent from the rows)."""
    columns = [
        [job.job_id for job in jobs], [job.tenant_id for job in jobs], [job.kind for job in jobs],
        [job.queue for job in jobs], [job.priority for job in jobs], [job.max_tries for job in jobs],
        [job.payload or {} for job in jobs], [job.metadata or {} for job in jobs],
        [job.callback_url for job in jobs], [job.run_at for job in jobs], [job.traceparent for job in jobs],
    ]
    rows = await conn.fetch(
        f"""
        INSERT INTO jobs (id, tenant_id, kind, queue, priority, max_tries, payload, metadata,
                          callback_url, run_at, traceparent)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::int[],
                             $7::jsonb[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::text[])
        {"ON CONFLICT (id) DO NOTHING" if once else ""}
        RETURNING {JOB_COLUMNS}
        """,
        *columns,
    )
    return {row["id"]: row for row in rows}


async def create_job(conn: asyncpg.Connection, **job) -> asyncpg.Record:
    """Insert one job (`NewJob`'s fields as keywords); its row."""
    new = NewJob(**job)
    return (await create_jobs(conn, [new]))[new.job_id]


async def get_job(conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2", job_id, tenant_id
    )


async def get_stages(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list]:
    rows = await conn.fetch(
        """
        SELECT job_id, name, status, attempt, started_at, finished_at, error
        FROM job_stages WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, position
        """,
        list(job_ids),
    )
    stages: dict[uuid.UUID, list] = {}
    for row in rows:
        stages.setdefault(row["job_id"], []).append(row)
    return stages


def encode_cursor(row: asyncpg.Record) -> str:
    raw = json.dumps([row["created_at"].isoformat(), str(row["id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for anything that is not a cursor this API gave out."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), uuid.UUID(job_id)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


async def list_jobs(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    kind: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: tuple[datetime, uuid.UUID] | None = None,
    columns: str = JOB_COLUMNS,
    ids: tuple[uuid.UUID, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """A tenant's jobs newest first; keyset pagination on (created_at, id), no gaps or repeats.
    `ids` keeps those whose id lies in a range, both ends included (what an id prefix matches)."""
    conditions = ["tenant_id = $1"]
    args: list = [tenant_id]
    for column, value in (("kind", kind), ("status", status)):
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if ids is not None:
        args.extend(ids)
        conditions.append(f"id BETWEEN ${len(args) - 1} AND ${len(args)}")
    if after is not None:
        args.extend(after)
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    return await conn.fetch(
        f"""
        SELECT {columns} FROM jobs WHERE {' AND '.join(conditions)}
        ORDER BY created_at DESC, id DESC LIMIT ${len(args)}
        """,
        *args,
    )


def settle_stages(ended: str, *, keep: str = "false") -> str:
    """SQL updating the unfinished stages of the jobs in the relation `ended` (`id`, `status`)
    that end failed or cancelled: a stage that had started takes the job's status, one that
    never started is `skipped` (the stage rows `keep` names are left to the caller)."""
    return f"""
        UPDATE job_stages s SET status = CASE WHEN s.started_at IS NULL THEN 'skipped' ELSE {ended}.status END,
                                finished_at = CASE WHEN s.started_at IS NULL THEN NULL ELSE coalesce(s.finished_at, now()) END
        FROM {ended} WHERE s.job_id = {ended}.id AND s.status IN ('queued', 'running')
              AND {ended}.status IN ('failed', 'cancelled') AND NOT ({keep})
    """


async def request_cancel(conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID) -> asyncpg.Record | None:
    """A queued job ends `cancelled` now; a running one is flagged and stopped by its worker."""
    return await conn.fetchrow(
        f"""
        WITH ended AS (
            UPDATE jobs SET
                cancel_requested = true,
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                stage = CASE WHEN status = 'queued' THEN NULL ELSE stage END,
                updated_at = now()
            WHERE id = $1 AND tenant_id = $2 AND status IN ('queued', 'running')
            RETURNING {JOB_COLUMNS}
        ), stages AS ({settle_stages("ended")})
        SELECT * FROM ended
        """,
        job_id, tenant_id,
    )


async def retry_job(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID, extra_tries: int
) -> asyncpg.Record | None:
    """A failed or cancelled job is queued again; finished stages keep their checkpoints, and
    stages skipped because the job ended before them (never started) run this time."""
    row = await conn.fetchrow(
        f"""
        UPDATE jobs SET status = 'queued', cancel_requested = false, error = NULL, result = NULL,
                        finished_at = NULL, stage = NULL, worker_id = NULL,
                        max_tries = attempts + $3, updated_at = now()
        WHERE id = $1 AND tenant_id = $2 AND status IN ('failed', 'cancelled')
        RETURNING {JOB_COLUMNS}
        """,
        job_id, tenant_id, extra_tries,
    )
    if row is not None:
        await conn.execute(
            """
            UPDATE job_stages SET status = 'queued', error = NULL, started_at = NULL, finished_at = NULL
            WHERE job_id = $1 AND (status NOT IN ('succeeded', 'skipped') OR (status = 'skipped' AND started_at IS NULL))
            """,
            job_id,
        )
    return row


# -- the worker side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageStart:
    job_id: uuid.UUID
    attempt: int
    name: str
    progress: float


@dataclass(frozen=True, slots=True)
class StageEnd:
    job_id: uuid.UUID
    attempt: int
    name: str
    status: str
    checkpoint: dict | None = None
    error: dict | None = None
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class JobEnd:
    """An attempt's end, with its last stage's end when that is still to be written (the
    runner folds the two into one write)."""

    job_id: uuid.UUID
    attempt: int
    status: str
    result: dict | None = None
    error: dict | None = None
    stage: str | None = None
    stage_status: str | None = None
    stage_checkpoint: dict | None = None
    progress: float | None = None  # what its finished stages make, when not succeeded (None: unchanged)


def _records(writes: Sequence[StageStart | StageEnd | JobEnd]) -> list[dict]:
    """Writes as one jsonb array, unpacked by `jsonb_to_recordset` (a JSON null is NULL)."""
    return [{**{name: getattr(write, name) for name in write.__slots__}, "job_id": str(write.job_id)} for write in writes]


async def claim_many(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], worker_id: str, stage_names: Sequence[str]
) -> dict[uuid.UUID, asyncpg.Record]:
    """Start an attempt at each job: bump its attempt number (the fencing token), own it, and
    make sure its stage rows exist; one statement, so atomic without a transaction. A
    first attempt also starts its first stage (what `start_stage` would write next).

    Jobs missing from the answer have nothing to run: unknown, finished or cancelled.
    """
    rows = await conn.fetch(
        f"""
        WITH claimed AS (
            UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_id = $2,
                            started_at = coalesce(started_at, now()), updated_at = now(),
                            stage = CASE WHEN attempts = 0 THEN ($3::text[])[1] ELSE stage END
            WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'running') AND NOT cancel_requested
            RETURNING {JOB_COLUMNS}
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
        SELECT * FROM claimed
        """,
        list(job_ids), worker_id, list(stage_names),
    )
    return {row["id"]: row for row in rows}


async def claim(
    conn: asyncpg.Connection, job_id: uuid.UUID, worker_id: str, stage_names: Sequence[str]
) -> asyncpg.Record | None:
    """`claim_many` for one job: its row, or None when there is nothing to run."""
    return (await claim_many(conn, [job_id], worker_id, stage_names)).get(job_id)


async def finished_stages(conn: asyncpg.Connection, job_id: uuid.UUID) -> dict[str, dict]:
    """Checkpoints of every stage a previous attempt finished (or partly did), by name."""
    rows = await conn.fetch(
        "SELECT name, status, checkpoint FROM job_stages WHERE job_id = $1", job_id
    )
    return {row["name"]: {"status": row["status"], "checkpoint": row["checkpoint"]} for row in rows}


async def _fenced(conn: asyncpg.Connection, query: str, *args) -> None:
    if await conn.fetchval(query, *args) is None:
        raise Fenced(f"job {args[0]} attempt {args[1]} no longer owns the job")


def fenced(write: StageStart | StageEnd | JobEnd) -> Fenced:
    return Fenced(f"job {write.job_id} attempt {write.attempt} no longer owns the job")


def _check_owned(owned: Collection[uuid.UUID], write: StageStart | StageEnd | JobEnd) -> None:
    if write.job_id not in owned:
        raise fenced(write)


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
        _records(starts),
    )
    return {row["job_id"] for row in rows}


async def start_stage(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, name: str, progress: float) -> None:
    start = StageStart(job_id, attempt, name, progress)
    _check_owned(await start_stages(conn, [start]), start)


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
        _records(ends),
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
    _check_owned(await finish_stages(conn, [end]), end)


async def save_checkpoint(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, name: str, checkpoint: dict) -> None:
    """Partial progress of a running stage (a Textract JobId, renditions uploaded so far)."""
    await _fenced(
        conn,
        """
        UPDATE job_stages s SET checkpoint = $4
        FROM jobs j WHERE j.id = s.job_id AND s.job_id = $1 AND j.attempts = $2 AND j.status = 'running' AND s.name = $3
        RETURNING 1
        """,
        job_id, attempt, name, checkpoint,
    )


async def set_progress(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, progress: float) -> None:
    await _fenced(
        conn,
        """
        UPDATE jobs SET progress = greatest(progress, $3), updated_at = now()
        WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1
        """,
        job_id, attempt, progress,
    )


async def finish_jobs(conn: asyncpg.Connection, ends: Sequence[JobEnd]) -> dict[uuid.UUID, asyncpg.Record]:
    """End attempts: status, result or error, and the last stage's end where given; the rows
    of the jobs their attempt still owned."""
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
            RETURNING {qualified(JOB_COLUMNS, "jobs")}, b.stage AS ended_stage, b.stage_status, b.stage_checkpoint
        ), stages AS (
            UPDATE job_stages s SET status = ended.stage_status, finished_at = now(), error = NULL,
                                    checkpoint = coalesce(ended.stage_checkpoint, s.checkpoint),
                                    started_at = coalesce(s.started_at, now())
            FROM ended WHERE s.job_id = ended.id AND s.name = ended.ended_stage
        ), later_stages AS ({settle_stages("ended", keep="s.name IS NOT DISTINCT FROM ended.ended_stage")})
        SELECT {JOB_COLUMNS} FROM ended
        """,
        _records(ends),
    )
    return {row["id"]: row for row in rows}


async def finish_job(conn: asyncpg.Connection, end: JobEnd) -> asyncpg.Record:
    """`finish_jobs` for one job: its row, or `Fenced`."""
    rows = await finish_jobs(conn, [end])
    _check_owned(rows.keys(), end)
    return rows[end.job_id]


async def requeue(
    conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int, error: dict, progress: float | None = None
) -> None:
    """A transient failure: back to `queued` (with the error shown) until the retry runs; its
    progress falls back to what its finished stages make (`progress`, when known)."""
    await _fenced(
        conn,
        """
        UPDATE jobs SET status = 'queued', error = $3, stage = NULL, worker_id = NULL, updated_at = now(),
                        progress = coalesce($4, progress)
        WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1
        """,
        job_id, attempt, error, progress,
    )


async def cancel_running(conn: asyncpg.Connection, job_id: uuid.UUID, attempt: int | None = None) -> asyncpg.Record | None:
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
        job_id, attempt,
    )


async def stale_jobs(conn: asyncpg.Connection, older_than_seconds: float, limit: int = 500) -> list[asyncpg.Record]:
    """Unfinished jobs nobody has touched for a while: candidates for the reconciler."""
    return await conn.fetch(
        f"""
        SELECT {JOB_COLUMNS} FROM jobs
        WHERE status IN ('queued', 'running') AND updated_at < now() - make_interval(secs => $1)
        ORDER BY updated_at LIMIT $2
        """,
        older_than_seconds, limit,
    )


async def touch(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute("UPDATE jobs SET updated_at = now() WHERE id = ANY($1::uuid[])", list(job_ids))
