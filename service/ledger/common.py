"""What every part of the ledger shares: job statuses and columns, job ids, the stage
settling statement, and `Fenced`, the answer to a write by an attempt that lost its job."""

from __future__ import annotations

import uuid

FINISHED = ("succeeded", "failed", "cancelled")
UNFINISHED = ("queued", "running")

JOB_COLUMNS = """
    id, tenant_id, kind, status, queue, priority, progress, stage, attempts, max_tries,
    cancel_requested, worker_id, payload, metadata, callback_url, error, result,
    traceparent, run_at, created_at, updated_at, started_at, finished_at, timeout, concurrency_key,
    workflow_id, workflow_step
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
