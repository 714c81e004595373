"""Reading workflows from the ledger: one with its steps, a page of a tenant's (newest
first, keyset-paginated as `GET /v1/jobs` is), which jobs are of no cancelled workflow,
and a step's result as REFs see it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

WORKFLOW_COLUMNS = (
    "id, tenant_id, status, cancel_requested, metadata, callback_url, created_at, updated_at, finished_at"
)


async def get(conn: asyncpg.Connection, tenant_id: uuid.UUID, workflow_id: uuid.UUID):
    """The workflow and its steps in the order they were given, or None."""
    workflow = await conn.fetchrow(
        f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1 AND tenant_id = $2", workflow_id, tenant_id
    )
    if workflow is None:
        return None
    steps = await conn.fetch("SELECT * FROM workflow_steps WHERE workflow_id = $1 ORDER BY position", workflow_id)
    return workflow, steps


async def page(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
    """Up to `limit` of the tenant's workflows, newest first, from after the cursor's
    position (created_at, id), each with its steps."""
    workflows = await conn.fetch(
        f"""
        SELECT {WORKFLOW_COLUMNS} FROM workflows
        WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
          AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
        ORDER BY created_at DESC, id DESC LIMIT $5
        """,
        tenant_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    steps: dict[uuid.UUID, list[asyncpg.Record]] = {row["id"]: [] for row in workflows}
    for step in await conn.fetch(
        "SELECT * FROM workflow_steps WHERE workflow_id = ANY($1::uuid[]) ORDER BY workflow_id, position",
        list(steps),
    ):
        steps[step["workflow_id"]].append(step)
    return [(row, steps[row["id"]]) for row in workflows]


async def outside_cancelled(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Those of the jobs that belong to no cancelled workflow (a bulk retry passes over the others)."""
    rows = await conn.fetch(
        """
        SELECT j.id FROM jobs j LEFT JOIN workflows w ON w.id = j.workflow_id
        WHERE j.id = ANY($1::uuid[]) AND w.cancel_requested IS NOT TRUE
        """,
        list(job_ids),
    )
    return [row["id"] for row in rows]


async def step_result(conn: asyncpg.Connection, workflow_id: uuid.UUID, name: str) -> Any:
    """A step's result: its job's, or the list of its jobs' results in order (for_each)."""
    step = await conn.fetchrow(
        "SELECT job_ids, for_each IS NOT NULL AS many FROM workflow_steps WHERE workflow_id = $1 AND name = $2",
        workflow_id,
        name,
    )
    assert step is not None, name  # a REF names a step of its workflow (judged at submit)
    rows = await conn.fetch("SELECT id, result FROM jobs WHERE id = ANY($1::uuid[])", step["job_ids"])
    found = {row["id"]: row["result"] for row in rows}
    results = [found.get(job_id) for job_id in step["job_ids"]]
    return results if step["many"] else (results[0] if results else None)
