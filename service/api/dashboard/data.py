"""What the dashboard shows, across all tenants: the same JSON feeds the page and its polls."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from urllib.parse import quote

from service import ledger
from service.api.files import file_name
from service.ledger.views import job_view
from service.telemetry import monitoring

JOB_LIST_LIMIT = 50
WORKFLOW_LIST_LIMIT = 20
JOBS_LINKED = 5  # of a step's jobs, linked from the workflow page (a fan-out may have thousands)


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
        workflows = await _workflows(conn, tenant=tenant)
    now = time.time()
    return {
        "queues": [asdict(queue) for queue in queues],
        "workers": [_worker(worker, now) for worker in workers],
        "hour": hour,
        "recent": recent,
        "failed": failed,
        "schedules": schedules,
        "workflows": workflows,
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


async def _workflows(conn, *, tenant: str | None) -> list[dict]:
    """The latest workflows (of the tenant the filter names), with how many of their steps succeeded."""
    rows = await conn.fetch(
        """
        SELECT w.id, w.status, w.created_at, w.finished_at, t.name AS tenant,
               (SELECT count(*) FROM workflow_steps s WHERE s.workflow_id = w.id) AS steps,
               (SELECT count(*) FROM workflow_steps s WHERE s.workflow_id = w.id AND s.status = 'succeeded') AS done
        FROM workflows w JOIN tenants t ON t.id = w.tenant_id
        WHERE $1::text IS NULL OR t.name = $1
        ORDER BY w.created_at DESC, w.id DESC LIMIT $2
        """,
        tenant,
        WORKFLOW_LIST_LIMIT,
    )
    return [
        {
            "id": str(row["id"]),
            "tenant": row["tenant"],
            "status": row["status"],
            "steps": f"{row['done']}/{row['steps']}",
            "created_at": _iso(row["created_at"]),
            "finished_at": _iso(row["finished_at"]),
        }
        for row in rows
    ]


async def workflow_detail(state, workflow_id: uuid.UUID) -> dict | None:
    """A workflow of any tenant as its page shows it: each step with its kind, `after`,
    status, error, how many jobs it has and the first JOBS_LINKED of them."""
    async with state.db.read() as conn:
        workflow = await conn.fetchrow(
            """SELECT w.id, w.status, w.metadata, w.created_at, w.finished_at, t.name AS tenant
               FROM workflows w JOIN tenants t ON t.id = w.tenant_id WHERE w.id = $1""",
            workflow_id,
        )
        if workflow is None:
            return None
        steps = await conn.fetch(
            """SELECT name, kind, after, status, error, cardinality(job_ids) AS job_count, job_ids[1:$2] AS job_ids
               FROM workflow_steps WHERE workflow_id = $1 ORDER BY position""",
            workflow_id,
            JOBS_LINKED,
        )
    return {
        "id": str(workflow["id"]),
        "tenant": workflow["tenant"],
        "status": workflow["status"],
        "metadata": workflow["metadata"],
        "created_at": _iso(workflow["created_at"]),
        "finished_at": _iso(workflow["finished_at"]),
        "steps": [
            {
                "name": step["name"],
                "kind": step["kind"],
                "after": list(step["after"]),
                "status": step["status"],
                "error": step["error"],
                "job_count": step["job_count"],
                "jobs": [str(job_id) for job_id in step["job_ids"]],
            }
            for step in steps
        ],
    }


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
        "workflow_step": row["workflow_step"],
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
