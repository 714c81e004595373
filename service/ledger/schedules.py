"""Schedules in the ledger: what the API reads and writes, and `fire`, which turns a due
tick into one job, once, however many workers see it due.

A worker claims a tick with one conditional UPDATE (`next_run_at` moved on only if it is
still the tick the worker saw) and creates the tick's job in the same transaction: two
workers racing for the tick, one wins and the other's UPDATE matches no row. Nothing
expires, so a slow tick cannot be fired twice. The schedule's `last_job_id` is its last
job; with `overlap = 'skip'` a tick while that job is unfinished makes no job (`skipped_at`).
The job's creation is `service.jobs`' like every other's, with `metadata.schedule_id`.

The built-in schedules (pipelines/schedule.py) are rows too, named by `builtin` and owned
by the `SYSTEM_TENANT`, whose are also their jobs. Every worker that runs their kinds
upserts them at start (`seed`) from their `SCHEDULE_*` setting; the row remembers the
setting it was seeded from, so a changed setting is applied once, at the next start, and
otherwise what the admin changed through the API stands.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from service import jobs, ledger
from service.config import cadence_fields
from service.ledger import schedule_times
from service.ledger.schedule_times import Cadence
from service.ledger.tenants import Tenant, ensure_tenant

#: What a schedule's answer shows: its fields, its next tick, and its last job's status.
COLUMNS = """
s.id, s.name, s.kind, s.input, s.cron, s.every, s.timezone, s.overlap, s.paused, s.next_run_at,
s.last_run_at, s.last_job_id, s.skipped_at, s.created_at, s.updated_at, s.builtin, j.status AS last_status
"""
FROM = "schedules s LEFT JOIN jobs j ON j.id = s.last_job_id"
#: The fields a client sets (`POST`, `PATCH`).
FIELDS = ("name", "kind", "input", "cron", "every", "timezone", "overlap", "paused")
MAX_LISTED = 1000
#: The tenant that owns the built-in schedules and their jobs; the admin key acts as it.
SYSTEM_TENANT = "system"


def cadence(schedule: asyncpg.Record) -> Cadence:
    return Cadence(cron=schedule["cron"], every=schedule["every"], timezone=schedule["timezone"])


async def create(conn: asyncpg.Connection, tenant_id: uuid.UUID, fields: dict, next_run_at: datetime) -> asyncpg.Record:
    """Record a schedule of `FIELDS` (all given); its answer's row."""
    schedule_id = await conn.fetchval(
        f"""
        INSERT INTO schedules (tenant_id, next_run_at, {", ".join(FIELDS)})
        VALUES ($1, $2, {", ".join(f"${index}" for index in range(3, len(FIELDS) + 3))})
        RETURNING id
        """,
        tenant_id,
        next_run_at,
        *(fields[name] for name in FIELDS),
    )
    found = await get(conn, tenant_id, schedule_id)
    assert found is not None
    return found


async def get(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """A tenant's schedule; with `lock`, held until the transaction ends (for a change)."""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM {FROM} WHERE s.id = $1 AND s.tenant_id = $2 {'FOR UPDATE OF s' if lock else ''}",
        schedule_id,
        tenant_id,
    )


async def list_for(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    """A tenant's schedules, oldest first (at most `MAX_LISTED`)."""
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM {FROM} WHERE s.tenant_id = $1 ORDER BY s.created_at, s.id LIMIT {MAX_LISTED}",
        tenant_id,
    )


async def update(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, fields: dict, next_run_at: datetime | None
) -> asyncpg.Record | None:
    """Set `FIELDS` (all given) and, unless None, the next tick; what a worker writes when
    it fires (last_*) is left alone. The answer's row, or None if there is no such schedule."""
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(FIELDS, start=4))
    updated = await conn.fetchval(
        f"""
        UPDATE schedules SET {assignments}, next_run_at = coalesce($3, next_run_at), updated_at = now()
        WHERE id = $1 AND tenant_id = $2 RETURNING id
        """,
        schedule_id,
        tenant_id,
        next_run_at,
        *(fields[name] for name in FIELDS),
    )
    return None if updated is None else await get(conn, tenant_id, schedule_id)


async def delete(conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    """Forget a schedule of a user's (its jobs stay); a built-in one stays."""
    await conn.execute(
        "DELETE FROM schedules WHERE id = $1 AND tenant_id = $2 AND builtin IS NULL", schedule_id, tenant_id
    )


async def system_tenant(conn: asyncpg.Connection) -> Tenant:
    """The `SYSTEM_TENANT`, made if new."""
    return await ensure_tenant(conn, SYSTEM_TENANT)


async def seed(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, builtin: str, kind: str, setting: str, now: datetime
) -> None:
    """Make the built-in schedule `builtin` (a job of `kind`) follow `setting` if it has not
    yet: recorded if new, its cadence replaced if the setting changed. `off` records
    nothing and pauses a row there is; any other setting resumes it."""
    fields = cadence_fields(setting)
    if fields is None:
        await conn.execute(
            """
            UPDATE schedules SET paused = true, setting = $2, updated_at = now()
            WHERE builtin = $1 AND setting IS DISTINCT FROM $2
            """,
            builtin,
            setting,
        )
        return
    cadence = Cadence(**fields)
    await conn.execute(
        """
        INSERT INTO schedules (tenant_id, builtin, setting, name, kind, cron, every, timezone, next_run_at)
        VALUES ($1, $2, $3, $2, $4, $5, $6, $7, $8)
        ON CONFLICT (builtin) DO UPDATE SET
            setting = excluded.setting, kind = excluded.kind, cron = excluded.cron, every = excluded.every,
            timezone = excluded.timezone, paused = false, next_run_at = excluded.next_run_at, updated_at = now()
        WHERE schedules.setting IS DISTINCT FROM excluded.setting
        """,
        tenant_id,
        builtin,
        setting,
        kind,
        cadence.cron,
        cadence.every,
        cadence.timezone,
        schedule_times.first(cadence, now),
    )


async def builtin_ticks(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, datetime | None]:
    """The next tick of each recorded built-in schedule of `names`, None where it is paused;
    one that no worker has recorded yet is missing."""
    rows = await conn.fetch(
        "SELECT builtin, next_run_at, paused FROM schedules WHERE builtin = ANY($1::text[])", list(names)
    )
    return {row["builtin"]: None if row["paused"] else row["next_run_at"] for row in rows}


async def due(conn: asyncpg.Connection, kinds: Sequence[str], now: datetime, limit: int) -> list[asyncpg.Record]:
    """Unpaused schedules of `kinds` whose tick has come by `now`, the most overdue first."""
    return await conn.fetch(
        """
        SELECT id, cron, every, timezone, next_run_at FROM schedules
        WHERE NOT paused AND next_run_at <= $2 AND kind = ANY($1::text[])
        ORDER BY next_run_at LIMIT $3
        """,
        list(kinds),
        now,
        limit,
    )


async def earliest(conn: asyncpg.Connection, kinds: Sequence[str]) -> datetime | None:
    """The next tick of any unpaused schedule of `kinds`."""
    return await conn.fetchval(
        "SELECT min(next_run_at) FROM schedules WHERE NOT paused AND kind = ANY($1::text[])", list(kinds)
    )


async def fire(
    conn: asyncpg.Connection, schedule: asyncpg.Record, following: datetime, kinds: jobs.Kinds
) -> asyncpg.Record | None:
    """In `conn`'s transaction: claim `schedule`'s due tick (moving it on to `following`)
    and create the tick's job, of one of `kinds`; the job's row, to hand to the queue once
    committed. None if another worker claimed the tick first, the schedule changed since
    it was read, or the tick is skipped (`overlap = 'skip'`, the last job unfinished)."""
    due_at = schedule["next_run_at"]
    claimed = await conn.fetchrow(
        """
        UPDATE schedules SET next_run_at = $3
        WHERE id = $1 AND next_run_at = $2 AND NOT paused AND kind = ANY($4::text[])
        RETURNING tenant_id, kind, input, overlap, last_job_id
        """,
        schedule["id"],
        due_at,
        following,
        list(kinds),
    )
    if claimed is None:
        return None
    if claimed["overlap"] == "skip" and claimed["last_job_id"] is not None:
        last_status = await conn.fetchval("SELECT status FROM jobs WHERE id = $1", claimed["last_job_id"])
        if last_status in ledger.UNFINISHED:
            await conn.execute("UPDATE schedules SET skipped_at = $2 WHERE id = $1", schedule["id"], due_at)
            return None
    metadata = {"schedule_id": str(schedule["id"]), "tick": due_at.isoformat()}
    job = await jobs.create(
        conn, jobs.new_job(kinds[claimed["kind"]], claimed["tenant_id"], payload=claimed["input"], metadata=metadata)
    )
    assert job is not None
    await conn.execute(
        "UPDATE schedules SET last_run_at = $2, last_job_id = $3 WHERE id = $1", schedule["id"], due_at, job["id"]
    )
    return job
