"""Counts of events per tenant, type and UTC day, recomputed for a window of days.

Each run recomputes its window from `events` and makes `event_counts` match it exactly:
counts are set (not added), and counts for a (tenant, type, day) that no longer has
events are removed. Running it twice, or two runs overlapping, gives the same table.
The hourly run keeps today and yesterday fresh; the daily run sweeps the last
`aggregate_recent_days` days for late events backdated by their `ts`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from service.databases.database import Database

STATEMENT_TIMEOUT = 600.0  # seconds; a week of events is more than the API's 15 s budget


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def aggregate(db: Database, first_day: date, last_day: date) -> dict[str, int]:
    """Recompute the counts of UTC days `first_day`..`last_day` (both included)."""
    async with db.transaction() as conn:
        await conn.execute(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}")
        row = await conn.fetchrow(
            """
            WITH fresh AS (
                SELECT tenant_id, type, (ts AT TIME ZONE 'UTC')::date AS day, count(*) AS count
                FROM events WHERE ts >= $1 AND ts < $2
                GROUP BY 1, 2, 3
            ), written AS (
                INSERT INTO event_counts AS c (tenant_id, type, day, count) SELECT * FROM fresh
                ON CONFLICT (tenant_id, type, day) DO UPDATE SET count = excluded.count
                WHERE c.count <> excluded.count
                RETURNING 1
            ), removed AS (
                DELETE FROM event_counts c WHERE c.day BETWEEN $3 AND $4 AND NOT EXISTS (
                    SELECT 1 FROM fresh f WHERE (f.tenant_id, f.type, f.day) = (c.tenant_id, c.type, c.day)
                )
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM fresh) AS counts, (SELECT count(*) FROM written) AS written,
                   (SELECT count(*) FROM removed) AS removed
            """,
            day_start(first_day),
            day_start(last_day + timedelta(days=1)),
            first_day,
            last_day,
            timeout=STATEMENT_TIMEOUT,
        )
    assert row is not None  # a SELECT without FROM: always one row
    return dict(row)


def today() -> date:
    return datetime.now(UTC).date()


async def aggregate_recent(db: Database, days: int) -> dict[str, int]:
    """The last `days` UTC days up to today."""
    last_day = today()
    return await aggregate(db, last_day - timedelta(days=days - 1), last_day)
