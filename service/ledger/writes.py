"""A worker's writes to the ledger as values (stage starts and ends, job ends), each fenced
by the attempt that makes it, so they can be batched across jobs."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg

from service.ledger.common import Fenced


@dataclass(frozen=True, slots=True)
class StageStart:
    job_id: uuid.UUID
    attempt: int
    name: str
    progress: float


@dataclass(frozen=True, slots=True)
class StageEnd:
    job_id: uuid.UUID
    attempt: int
    name: str
    status: str
    checkpoint: dict | None = None
    error: dict | None = None
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class JobEnd:
    """An attempt's end, with its last stage's end when that is still to be written (the
    runner folds the two into one write)."""

    job_id: uuid.UUID
    attempt: int
    status: str
    result: dict | None = None
    error: dict | None = None
    stage: str | None = None
    stage_status: str | None = None
    stage_checkpoint: dict | None = None
    progress: float | None = None  # what its finished stages make, when not succeeded (None: unchanged)


def as_records(writes: Sequence[StageStart | StageEnd | JobEnd]) -> list[dict]:
    """Writes as one jsonb array, unpacked by `jsonb_to_recordset` (a JSON null is NULL)."""
    return [
        {**{name: getattr(write, name) for name in write.__slots__}, "job_id": str(write.job_id)} for write in writes
    ]


async def fetch_fenced(conn: asyncpg.Connection, query: str, *args) -> None:
    """Run a fenced write whose query returns a row only if `args[1]`, the attempt, still owns job `args[0]`."""
    if await conn.fetchval(query, *args) is None:
        raise Fenced(f"job {args[0]} attempt {args[1]} no longer owns the job")


def fenced(write: StageStart | StageEnd | JobEnd) -> Fenced:
    return Fenced(f"job {write.job_id} attempt {write.attempt} no longer owns the job")


def check_owned(owned: Collection[uuid.UUID], write: StageStart | StageEnd | JobEnd) -> None:
    if write.job_id not in owned:
        raise fenced(write)
