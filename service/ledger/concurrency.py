"""Concurrency keys in the ledger: at most `limit` running jobs of a kind per key.

The ledger decides, because it alone knows which jobs run (a killed worker's job stays
`running` until the reconciler hands it back, and so keeps its place until then). A claim
of jobs whose kind has a limit first takes a transaction-scoped advisory lock per key it
touches (in one order, so two workers cannot deadlock), then counts in a new statement,
whose snapshot sees every claim committed before the lock was granted: two workers can
never both take a key's last place.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.ledger.stages import claim_many

# The advisory lock of a (kind, key): one 64-bit hash of both, apart from other locks'.
_KEY_LOCK = "hashtextextended(kind || chr(31) || concurrency_key, 7)"

# A volatile function in the select list runs after the sort: the locks are taken in order.
LOCK_KEYS = f"""
SELECT pg_advisory_xact_lock(lock) FROM (
    SELECT DISTINCT {_KEY_LOCK} AS lock FROM jobs
    WHERE id = ANY($1::uuid[]) AND concurrency_key IS NOT NULL
) AS keys ORDER BY lock
"""

# Each claimable job, and whether it fits: the jobs of its key already running elsewhere,
# plus those ahead of it in this claim (by priority, then age: as its key's line goes),
# stay under the limit.
PLACES = """
SELECT id, kind, concurrency_key,
       concurrency_key IS NULL OR
       (SELECT count(*) FROM jobs AS held
        WHERE held.kind = wanted.kind AND held.concurrency_key = wanted.concurrency_key
              AND held.status = 'running' AND held.id <> ALL($1::uuid[]))
       + row_number() OVER (PARTITION BY kind, concurrency_key ORDER BY priority DESC, created_at, id) <= $2 AS fits
FROM jobs AS wanted
WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'running') AND NOT cancel_requested
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
    async with conn.transaction():
        await conn.execute(LOCK_KEYS, list(job_ids))
        places = await conn.fetch(PLACES, list(job_ids), limit)
        claimed: dict[uuid.UUID, asyncpg.Record | Waiting] = dict(
            await claim_many(conn, [place["id"] for place in places if place["fits"]], worker_id, stage_names)
        )
    for place in places:
        if not place["fits"]:
            claimed[place["id"]] = Waiting(place["kind"], place["concurrency_key"], limit)
    return claimed


async def has_room(conn: asyncpg.Connection, waiting: Waiting) -> bool:
    """Whether a place under the waiting job's key is free by now."""
    running = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE kind = $1 AND concurrency_key = $2 AND status = 'running'",
        waiting.kind,
        waiting.key,
    )
    return running < waiting.limit
