"""Concurrency keys in the ledger: at most `limit` running jobs of a kind per key.

The ledger decides, because it alone knows which jobs run (a killed worker's job stays
`running` until the reconciler hands it back, and so keeps its place until then). A claim
of jobs whose kind has a limit takes a transaction-scoped advisory lock per key it
touches (in one order, so two workers cannot deadlock) and counts the key's running jobs
once it holds it, in a snapshot of its own (`conveyor_hold_key`, migration 0014): two
workers can never both take a key's last place. One statement, so one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.ledger.stages import CLAIMED

# Each claimable job, and whether it fits: the jobs of its key already running elsewhere
# (`held`, counted under the key's lock), plus those ahead of it in this claim (by
# priority, then age: as its key's line goes), stay under the limit ($4). A volatile
# function in the select list runs after the sort: the keys are locked in order. The jobs
# that fit are claimed (`CLAIMED`) in the same statement; the answer has a row per job
# claimed and per job that does not fit.
CLAIM_PLACES = f"""
WITH keys AS MATERIALIZED (
    SELECT kind, concurrency_key, conveyor_hold_key(kind, concurrency_key, $1::uuid[]) AS held
    FROM (SELECT DISTINCT kind, concurrency_key FROM jobs
          WHERE id = ANY($1::uuid[]) AND concurrency_key IS NOT NULL
          ORDER BY kind, concurrency_key) AS touched
), places AS (
    SELECT id, kind, concurrency_key,
           concurrency_key IS NULL OR
           (SELECT held FROM keys
            WHERE keys.kind = wanted.kind AND keys.concurrency_key = wanted.concurrency_key)
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
    claimed, the others come back as `Waiting` (untouched: no attempt is counted). Called outside
    a transaction, the keys' locks go when the statement ends."""
    rows = await conn.fetch(CLAIM_PLACES, list(job_ids), worker_id, list(stage_names), limit)
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
