"""Memberships about to expire: one `membership_expiry` email each, before the day.

A membership is notified once per expiry date: `notified_at` is set in the transaction
that creates the email job (rows taken FOR UPDATE SKIP LOCKED, so overlapping runs
split them), and the API clears it when the expiry date changes (a renewal), so the next
expiry is announced in its turn.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from pipelines.resources import Resources
from pipelines.scheduled.notify import BATCH, create_notification, drain

EXPIRY_TEMPLATE = "membership_expiry"


def template_data(data: dict, expires_at: datetime) -> dict:
    """The email's data: what the tenant gave, and the expiry date (UTC) for the reader."""
    return {**data, "expires_on": expires_at.date().isoformat()}


async def notify_expiring_memberships(resources: Resources, batch: int = BATCH) -> int:
    """Email every member whose membership expires within `membership_notice_days`; returns how many."""
    notice_days = resources.settings.membership_notice_days

    async def take_batch(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
        expiring = await conn.fetch(
            """
            SELECT tenant_id, member, email, data, expires_at FROM memberships
            WHERE notified_at IS NULL AND expires_at > now() AND expires_at <= now() + make_interval(days => $1)
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
            """,
            notice_days,
            limit,
        )
        jobs = [
            await create_notification(
                conn,
                resources.kinds,
                tenant_id=row["tenant_id"],
                channel="email",
                to=[row["email"]],
                template=EXPIRY_TEMPLATE,
                data=template_data(row["data"], row["expires_at"]),
                metadata={"member": row["member"], "expires_at": row["expires_at"].isoformat()},
            )
            for row in expiring
        ]
        await conn.execute(
            """
            UPDATE memberships m SET notified_at = now()
            FROM unnest($1::uuid[], $2::text[]) AS sent(tenant_id, member)
            WHERE (m.tenant_id, m.member) = (sent.tenant_id, sent.member)
            """,
            [row["tenant_id"] for row in expiring],
            [row["member"] for row in expiring],
        )
        return jobs

    return await drain(resources, take_batch, batch)
