"""The Job resource as the contract shapes it, from ledger rows."""

from __future__ import annotations

from datetime import datetime

import asyncpg

VIEW_COLUMNS = """
    id, kind, status, progress, stage, attempts, error, result, metadata, created_at, updated_at, finished_at,
    workflow_id
"""
"""The job columns `job_view` shows: lists read only these (not, say, the jobs' inputs)."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def stage_view(row: asyncpg.Record) -> dict:
    return {
        "name": row["name"],
        "status": row["status"],
        "started_at": _time(row["started_at"]),
        "finished_at": _time(row["finished_at"]),
        **({"error": row["error"]} if row["error"] else {}),
    }


def job_view(row: asyncpg.Record, stages: list[asyncpg.Record] | None = None) -> dict:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "status": row["status"],
        "progress": round(float(row["progress"]), 4),
        "stage": row["stage"],
        "stages": [stage_view(stage) for stage in stages or ()],
        "attempts": row["attempts"],
        "error": row["error"],
        "result": row["result"],
        "metadata": row["metadata"],
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
        "finished_at": _time(row["finished_at"]),
        "workflow_id": str(row["workflow_id"]) if row.get("workflow_id") else None,
    }


def job_location(job_id: object) -> str:
    return f"/v1/jobs/{job_id}"
