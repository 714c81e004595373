"""What the dashboard shows, across all tenants: the same JSON feeds the page and its polls."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from urllib.parse import quote

from service import ledger, monitoring
from service.files import file_name
from service.views import job_view

JOB_LIST_LIMIT = 50


async def overview(state, *, status: str | None, kind: str | None, tenant: str | None) -> dict:
    redis, settings = state.redis, state.settings
    workers = await monitoring.live_workers(redis)
    queues = await monitoring.queue_states(redis, settings, workers)
    hour = monitoring.summarize_hour(await monitoring.finished_last_hour(redis))
    async with state.db.read() as conn:
        recent = await _jobs(conn, status=status, kind=kind, tenant=tenant)
        failed = await _jobs(conn, status="failed", kind=kind, tenant=tenant)
        kinds = [row["kind"] for row in await conn.fetch("SELECT DISTINCT kind FROM jobs ORDER BY kind LIMIT 50")]
        schedules = await _schedules(conn, kind=kind, tenant=tenant)
    now = time.time()
    return {
        "queues": [asdict(queue) for queue in queues],
        "workers": [_worker(worker, now) for worker in workers],
        "hour": hour,
        "recent": recent,
        "failed": failed,
        "schedules": schedules,
        "kinds": kinds,
        "filters": {"status": status, "kind": kind, "tenant": tenant},
    }


def _worker(state: dict, now: float) -> dict:
    return {
        "id": state["id"],
        "host": state.get("host"),
        "pid": state.get("pid"),
        "queue": state.get("queue"),
        "heartbeat_age": round(max(now - state["seen_at"], 0.0), 1),
        "up_seconds": round(max(now - state.get("started_at", now), 0.0)),
        "jobs": state.get("jobs", []),
    }


def _job_summary(row) -> dict:
    view = job_view(row)
    return {
        key: view[key]
        for key in ("id", "kind", "status", "progress", "stage", "attempts", "error", "created_at", "finished_at")
    } | {"tenant": row["tenant"]}


async def _jobs(conn, *, status: str | None, kind: str | None, tenant: str | None) -> list[dict]:
    rows = await conn.fetch(
        """
        SELECT j.id, j.kind, j.status, j.progress, j.stage, j.attempts, j.error, j.result, j.metadata,
               j.created_at, j.updated_at, j.finished_at, t.name AS tenant
        FROM jobs j JOIN tenants t ON t.id = j.tenant_id
        WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2)
              AND ($3::text IS NULL OR t.name = $3)
        ORDER BY j.created_at DESC, j.id DESC LIMIT $4
        """,
        status,
        kind,
        tenant,
        JOB_LIST_LIMIT,
    )
    return [_job_summary(row) for row in rows]


async def _schedules(conn, *, kind: str | None, tenant: str | None) -> list[dict]:
    """The schedules the filters match, the built-in ones (pipelines/schedule.py, the system
    tenant's) first and then the users' (`/v1/schedules`), each lot the soonest first, with
    their cadence and how their last tick went."""
    rows = await conn.fetch(
        """
        SELECT s.id, s.name, s.kind, s.cron, s.every, s.timezone, s.paused, s.next_run_at, s.last_run_at,
               j.status AS last_status, t.name AS tenant
        FROM schedules s JOIN tenants t ON t.id = s.tenant_id LEFT JOIN jobs j ON j.id = s.last_job_id
        WHERE ($1::text IS NULL OR s.kind = $1) AND ($2::text IS NULL OR t.name = $2)
        ORDER BY s.builtin IS NULL, s.paused, s.next_run_at, s.id LIMIT $3
        """,
        kind,
        tenant,
        JOB_LIST_LIMIT,
    )
    return [
        {
            "id": str(row["id"]),
            "tenant": row["tenant"],
            "name": row["name"],
            "kind": row["kind"],
            "cadence": f"cron {row['cron']}" if row["cron"] else f"every {row['every']:g} s",
            "timezone": row["timezone"],
            "paused": row["paused"],
            "next_run_at": None if row["paused"] else _iso(row["next_run_at"]),
            "last_run_at": _iso(row["last_run_at"]),
            "last_status": row["last_status"],
        }
        for row in rows
    ]


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


async def tenant_ids(state, name: str | None) -> list[uuid.UUID]:
    """The tenant named so, or every tenant."""
    async with state.db.read() as conn:
        rows = await conn.fetch("SELECT id FROM tenants WHERE $1::text IS NULL OR name = $1 ORDER BY id", name)
    return [row["id"] for row in rows]


async def count_jobs(state, tenant_id: uuid.UUID, where: ledger.JobFilter) -> int:
    async with state.db.read(follow=(f"tenant:{tenant_id}",)) as conn:
        return await ledger.count_jobs(conn, tenant_id, where)


async def job_tenant(state, job_id: uuid.UUID) -> uuid.UUID | None:
    async with state.db.read(follow=(f"job:{job_id}",)) as conn:
        return await conn.fetchval("SELECT tenant_id FROM jobs WHERE id = $1", job_id)


async def job_detail(state, job_id: uuid.UUID) -> dict | None:
    async with state.db.read(follow=(f"job:{job_id}",)) as conn:
        row = await conn.fetchrow(
            f"""SELECT {", ".join("j." + column.strip() for column in ledger.JOB_COLUMNS.split(","))},
                       t.name AS tenant
                FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE j.id = $1""",
            job_id,
        )
        if row is None:
            return None
        stages = (await ledger.get_stages(conn, [job_id])).get(job_id, [])
    return job_view(row, stages) | {
        "tenant": row["tenant"],
        "queue": row["queue"],
        "worker_id": row["worker_id"],
        "media": media(job_id, row["result"]),
    }


async def job_result(state, job_id: uuid.UUID) -> dict | None:
    async with state.db.read(follow=(f"job:{job_id}",)) as conn:
        return await conn.fetchval("SELECT result FROM jobs WHERE id = $1", job_id)


def to_second(value: str | None) -> str:
    """An ISO 8601 UTC time as people read it: to the second (`2026-05-03 12:00:07 UTC`)."""
    return f"{value[:19].replace('T', ' ')} UTC" if value else ""


def media(job_id: uuid.UUID, result: object) -> dict | None:
    """A video's thumbnail and renditions as the job page shows them, served by the
    dashboard itself (same origin, the admin's session; the API's links need the tenant's
    key); None for a result without renditions."""
    if not isinstance(result, dict) or not isinstance(result.get("renditions"), list):
        return None

    def link(entry: object) -> str | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            return None
        return f"/dashboard/jobs/{job_id}/files/{quote(file_name(entry['key']))}"

    renditions = [
        {
            "name": str(entry.get("name", "")),
            "width": entry.get("width"),
            "height": entry.get("height"),
            "bytes": entry.get("bytes"),
            "url": link(entry),
        }
        for entry in result["renditions"]
        if link(entry)
    ]
    return {"thumbnail": link(result.get("thumbnail")), "renditions": renditions}
