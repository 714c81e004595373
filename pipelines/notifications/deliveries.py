"""The delivery log (table `deliveries`): what was handed to a provider, per recipient.

Each step is its own small transaction so that what the provider accepted is on record
at once: `claim` (pending, fenced by the job's attempt) → the send → `mark_sent`. Only a
crash between the provider's answer and `mark_sent` leaves a `pending` row behind; the
next attempt sends it again with the same idempotency key. A delivery that failed only
because its tries ran out (`last_error.retryable`) is tried again if the job is retried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from service.databases.database import Database
from service.errors import JobError, PermanentError
from service.ledger import Fenced

from .channels import Delivery


@dataclass(frozen=True)
class Recorded:
    """A recipient whose delivery already ended (`sent` or `failed`) in an earlier attempt."""

    status: str
    delivery: Delivery | None
    error: JobError | None


def _recorded(channel: str, row: asyncpg.Record) -> Recorded:
    if row["status"] == "sent":
        delivery = Delivery(
            channel=channel,  # type: ignore[arg-type]  # the column holds only the channels' names
            provider=row["provider"] or "",
            recipient=row["recipient"],
            message_id=row["provider_message_id"] or "",
        )
        return Recorded("sent", delivery, None)
    error = row["last_error"] or {}
    return Recorded("failed", None, PermanentError(error.get("message", "failed earlier"), type=error.get("type")))


async def ended(db: Database, job_id: uuid.UUID, channel: str) -> dict[str, Recorded]:
    """The job's recipients on `channel` that need nothing more, by recipient: sent, or
    failed for a reason no retry can fix."""
    async with db.transaction() as conn:
        rows = await conn.fetch(
            """
            SELECT recipient, status, provider, provider_message_id, last_error FROM deliveries
            WHERE job_id = $1 AND channel = $2
              AND (status = 'sent' OR (status = 'failed' AND NOT coalesce((last_error->>'retryable')::boolean, false)))
            """,
            job_id,
            channel,
        )
    return {row["recipient"]: _recorded(channel, row) for row in rows}


async def claim(db: Database, job_id: uuid.UUID, attempt: int, channel: str, recipient: str) -> Recorded | None:
    """Mark the recipient `pending` before sending; None means go ahead and send.

    Returns what was recorded if the delivery already ended (a concurrent or earlier
    attempt did it). Raises Fenced if `attempt` no longer owns the job: a worker that was
    presumed dead and comes back stops before sending anything more.
    """
    async with db.transaction() as conn:
        # FOR SHARE: a newer attempt's claim of the job (an UPDATE) waits for this, and this
        # waits for it, so no send starts under an attempt that has been superseded.
        owned = await conn.fetchval(
            "SELECT 1 FROM jobs WHERE id = $1 AND attempts = $2 AND status = 'running' FOR SHARE", job_id, attempt
        )
        if owned is None:
            raise Fenced(f"job {job_id} attempt {attempt} no longer owns the job")
        row = await conn.fetchrow(
            """
            INSERT INTO deliveries AS d (job_id, channel, recipient, attempts) VALUES ($1, $2, $3, 1)
            ON CONFLICT (job_id, channel, recipient) DO UPDATE
                SET status = 'pending', attempts = d.attempts + 1, updated_at = now()
                WHERE d.status = 'pending' OR (d.status = 'failed' AND coalesce((d.last_error->>'retryable')::boolean, false))
            RETURNING status
            """,
            job_id,
            channel,
            recipient,
        )
        if row is not None:
            return None
        existing = await conn.fetchrow(
            """
            SELECT recipient, status, provider, provider_message_id, last_error FROM deliveries
            WHERE job_id = $1 AND channel = $2 AND recipient = $3
            """,
            job_id,
            channel,
            recipient,
        )
    assert existing is not None  # the insert above found it there
    return _recorded(channel, existing)


async def mark_sent(db: Database, job_id: uuid.UUID, delivery: Delivery) -> None:
    """Not fenced: the provider accepted it, so it is on record whoever owns the job now."""
    async with db.transaction() as conn:
        await conn.execute(
            """
            UPDATE deliveries SET status = 'sent', provider = $4, provider_message_id = $5, last_error = NULL,
                                  sent_at = now(), updated_at = now()
            WHERE job_id = $1 AND channel = $2 AND recipient = $3
            """,
            job_id,
            delivery.channel,
            delivery.recipient,
            delivery.provider,
            delivery.message_id,
        )


async def mark_error(
    db: Database, job_id: uuid.UUID, channel: str, recipient: str, error: JobError, *, final: bool
) -> None:
    """Record a failed try: `failed` for good when `final`, else still `pending` for a retry."""
    async with db.transaction() as conn:
        await conn.execute(
            """
            UPDATE deliveries SET status = CASE WHEN $5 THEN 'failed' ELSE status END, last_error = $4, updated_at = now()
            WHERE job_id = $1 AND channel = $2 AND recipient = $3 AND status = 'pending'
            """,
            job_id,
            channel,
            recipient,
            {**error.as_dict(), "retryable": error.retryable},
            final,
        )
