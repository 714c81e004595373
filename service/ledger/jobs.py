"""The API's side of the ledger: create jobs, read and list them, cancel and retry them."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.ledger.common import JOB_COLUMNS, settle_stages


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
    timeout: float | None = None  # one attempt's limit, when the job asks for other than its kind's
    concurrency_key: str | None = None
    workflow_id: uuid.UUID | None = None  # a step of this workflow (service/ledger/workflows.py)
    workflow_step: str | None = None


async def create_jobs(
    conn: asyncpg.Connection, jobs: Sequence[NewJob], *, once: bool = False
) -> dict[uuid.UUID, asyncpg.Record]:
    """Insert jobs in one statement (committed together); their rows by id. With `once`,
    jobs whose id is already recorded are skipped (and absent from the rows)."""
    columns = [
        [job.job_id for job in jobs],
        [job.tenant_id for job in jobs],
        [job.kind for job in jobs],
        [job.queue for job in jobs],
        [job.priority for job in jobs],
        [job.max_tries for job in jobs],
        [job.payload or {} for job in jobs],
        [job.metadata or {} for job in jobs],
        [job.callback_url for job in jobs],
        [job.run_at for job in jobs],
        [job.traceparent for job in jobs],
        [job.timeout for job in jobs],
        [job.concurrency_key for job in jobs],
        [job.workflow_id for job in jobs],
        [job.workflow_step for job in jobs],
    ]
    rows = await conn.fetch(
        f"""
        INSERT INTO jobs (id, tenant_id, kind, queue, priority, max_tries, payload, metadata,
                          callback_url, run_at, traceparent, timeout, concurrency_key,
                          workflow_id, workflow_step)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::int[],
                             $7::jsonb[], $8::jsonb[], $9::text[], $10::timestamptz[], $11::text[],
                             $12::float8[], $13::text[], $14::uuid[], $15::text[])
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
    return await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2", job_id, tenant_id)


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
    return await _newest_first(conn, columns, conditions, args, after=after, limit=limit)


async def _newest_first(
    conn: asyncpg.Connection,
    columns: str,
    conditions: list[str],
    args: list,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` jobs `conditions` match, newest first, after the keyset position
    `after` (created_at, id): no gaps or repeats from one page to the next."""
    if after is not None:
        args.extend(after)
        conditions.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    return await conn.fetch(
        f"""
        SELECT {columns} FROM jobs WHERE {" AND ".join(conditions)}
        ORDER BY created_at DESC, id DESC LIMIT ${len(args)}
        """,
        *args,
    )


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which of a tenant's jobs a bulk action is about; None matches anything."""

    statuses: Sequence[str]
    kind: str | None = None
    error_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def _filter_conditions(tenant_id: uuid.UUID, where: JobFilter) -> tuple[list[str], list]:
    conditions = ["tenant_id = $1", "status = ANY($2::text[])"]
    args: list = [tenant_id, list(where.statuses)]
    for condition, value in (
        ("kind = ${}", where.kind),
        ("error->>'type' = ${}", where.error_type),
        ("created_at > ${}", where.created_after),
        ("created_at < ${}", where.created_before),
    ):
        if value is not None:
            args.append(value)
            conditions.append(condition.format(len(args)))
    return conditions, args


async def count_jobs(conn: asyncpg.Connection, tenant_id: uuid.UUID, where: JobFilter) -> int:
    conditions, args = _filter_conditions(tenant_id, where)
    return await conn.fetchval(f"SELECT count(*) FROM jobs WHERE {' AND '.join(conditions)}", *args)


async def find_jobs(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    where: JobFilter,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """Up to `limit` of the jobs `where` matches (id, created_at), newest first, after the
    position `after` (keyset, as `list_jobs`): a bulk action walks them chunk by chunk."""
    conditions, args = _filter_conditions(tenant_id, where)
    return await _newest_first(conn, "id, created_at", conditions, args, after=after, limit=limit)


async def request_cancel(conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID) -> asyncpg.Record | None:
    """A queued job ends `cancelled` now; a running one is flagged and stopped by its worker."""
    rows = await request_cancels(conn, tenant_id, [job_id])
    return rows[0] if rows else None


async def request_cancels(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    """`request_cancel` for many jobs in one statement; the rows of those it applied to."""
    return await conn.fetch(
        f"""
        WITH ended AS (
            UPDATE jobs SET
                cancel_requested = true,
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
                stage = CASE WHEN status = 'queued' THEN NULL ELSE stage END,
                updated_at = now()
            WHERE id = ANY($1::uuid[]) AND tenant_id = $2 AND status IN ('queued', 'running')
            RETURNING {JOB_COLUMNS}
        ), stages AS ({settle_stages("ended")})
        SELECT * FROM ended
        """,
        list(job_ids),
        tenant_id,
    )


async def retry_job(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, job_id: uuid.UUID, extra_tries: int
) -> asyncpg.Record | None:
    """A failed or cancelled job is queued again; finished stages keep their checkpoints, and
    stages skipped because the job ended before them (never started) run this time."""
    rows = await retry_jobs(conn, tenant_id, [job_id], extra_tries)
    return rows[0] if rows else None


async def retry_jobs(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID], extra_tries: int
) -> list[asyncpg.Record]:
    """`retry_job` for many jobs; the rows of those it applied to."""
    rows = await conn.fetch(
        f"""
        UPDATE jobs SET status = 'queued', cancel_requested = false, error = NULL, result = NULL,
                        finished_at = NULL, stage = NULL, worker_id = NULL,
                        max_tries = attempts + $3, updated_at = now()
        WHERE id = ANY($1::uuid[]) AND tenant_id = $2 AND status IN ('failed', 'cancelled')
        RETURNING {JOB_COLUMNS}
        """,
        list(job_ids),
        tenant_id,
        extra_tries,
    )
    if rows:
        await conn.execute(
            """
            UPDATE job_stages SET status = 'queued', error = NULL, started_at = NULL, finished_at = NULL
            WHERE job_id = ANY($1::uuid[])
              AND (status NOT IN ('succeeded', 'skipped') OR (status = 'skipped' AND started_at IS NULL))
            """,
            [row["id"] for row in rows],
        )
    return rows
