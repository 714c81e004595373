"""Due reminders become notification jobs, each exactly once.

Rows are taken with FOR UPDATE SKIP LOCKED and marked with their job in the same
transaction, so two runs at once (two workers, or a slow tick overlapping the next) split
the due reminders between them instead of both sending them.
"""

from __future__ import annotations

import asyncpg

from pipelines.resources import Resources
from pipelines.scheduled.notify import BATCH, create_notification, drain


async def send_due_reminders(resources: Resources, batch: int = BATCH) -> int:
    """Turn every reminder due by now into a notification job; returns how many."""

    async def take_batch(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
        due = await conn.fetch(
            """
            SELECT id, tenant_id, channel, recipients, template, data FROM reminders
            WHERE job_id IS NULL AND due_at <= now()
            ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
            """,
            limit,
        )
        jobs = [
            await create_notification(
                conn,
                resources.kinds,
                tenant_id=row["tenant_id"],
                channel=row["channel"],
                to=list(row["recipients"]),
                template=row["template"],
                data=row["data"],
                metadata={"reminder_id": str(row["id"])},
            )
            for row in due
        ]
        await conn.execute(
            """
            UPDATE reminders r SET job_id = sent.job_id
            FROM unnest($1::uuid[], $2::uuid[]) AS sent(id, job_id) WHERE r.id = sent.id
            """,
            [row["id"] for row in due],
            [job["id"] for job in jobs],
        )
        return jobs

    return await drain(resources, take_batch, batch)
