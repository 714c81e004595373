"""Concurrency keys in the ledger: at most `limit` running jobs of a kind per key.

The ledger decides, because it alone knows which jobs run (a killed worker's job stays
`running` until the reconciler hands it back, and so keeps its place until then). A claim
of jobs whose kind has a limit first takes a transaction-scoped advisory lock per key it
touches (in one order, so two workers cannot deadlock), then counts in a new statement,
whose snapshot sees every claim committed before the lock was granted: two workers can
never both take a key's last place. Three round trips a batch of claims: BEGIN with the
locks, the count with the claim of the jobs that fit, COMMIT.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.ledger.stages import CLAIMED

# The advisory lock of a (kind, key): one 64-bit hash of both, apart from other locks'.
_KEY_LOCK = "hashtextextended(kind || chr(31) || concurrency_key, 7)"

# BEGIN, and the locks of the keys of the jobs `{ids}` (quoted UUIDs): one simple query,
# so one round trip. A volatile function in the select list runs after the sort: the locks
# are taken in order.
BEGIN_LOCKED = f"""
BEGIN;
SELECT pg_advisory_xact_lock(lock) FROM (
    SELECT DISTINCT {_KEY_LOCK} AS lock FROM jobs
    WHERE id = ANY(ARRAY[{{ids}}]::uuid[]) AND concurrency_key IS NOT NULL
) AS keys ORDER BY lock
"""

# Each claimable job, and whether it fits: the jobs of its key already running elsewhere,
# plus those ahead of it in this claim (by priority, then age: as its key's line goes),
# stay under the limit ($4). The jobs that fit are claimed (`CLAIMED`) in the same
# statement; the answer has a row per job claimed and per job that does not fit.
CLAIM_PLACES = f"""
WITH places AS (
    SELECT id, kind, concurrency_key,
           concurrency_key IS NULL OR
           (SELECT count(*) FROM jobs AS held
            WHERE held.kind = wanted.kind AND held.concurrency_key = wanted.concurrency_key
                  AND held.status = 'running' AND held.id <> ALL($1::uuid[]))
           + row_number() OVER (PARTITION BY kind, concurrency_key ORDER BY priority DESC, created_at, id) <= $4
           AS fits
    FROM jobs AS wanted
    WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'running') AND NOT cancel_requested
), {CLAIMED.format(chosen="id IN (SELECT id FROM places WHERE fits)")}
SELECT places.id AS wanted, places.fits, places.kind AS wanted_kind, places.concurrency_key AS wanted_key, claimed.*
FROM places LEFT JOIN claimed ON claimed.id = places.id
WHERE NOT places.fits OR claimed.id IS NOT NULL
"""


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job left `queued` by its claim: `limit` jobs of its kind with its key run already."""

    kind: str
    key: str
    limit: int


async def claim_within_limit(
    conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID], worker_id: str, stage_names: Sequence[str], limit: int
) -> dict[uuid.UUID, asyncpg.Record | Waiting]:
    """`claim_many` for jobs of a kind with a concurrency limit: the jobs that fit are
    claimed, the others come back as `Waiting` (untouched: no attempt is counted). In a
    transaction of its own."""
    ids = [uuid.UUID(str(job_id)) for job_id in job_ids]  # written into the query: UUIDs only
    try:
        await conn.execute(BEGIN_LOCKED.format(ids=",".join(f"'{job_id}'" for job_id in ids)))
        rows = await conn.fetch(CLAIM_PLACES, ids, worker_id, list(stage_names), limit)
    except asyncpg.PostgresError:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        raise  # any other error: the pool rolls back as it takes the connection back
    await conn.execute("COMMIT")
    return {
        row["wanted"]: row if row["fits"] else Waiting(row["wanted_kind"], row["wanted_key"], limit) for row in rows
    }


async def has_room(conn: asyncpg.Connection, waiting: Waiting) -> bool:
    """Whether a place under the waiting job's key is free by now."""
    running = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE kind = $1 AND concurrency_key = $2 AND status = 'running'",
        waiting.kind,
        waiting.key,
    )
    return running < waiting.limit
