"""What the fault tests share: submitting many jobs, waiting on the ledger, reading it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from .files import multipart_file, text_pdf

_PDF = text_pdf("fault test")


def numbered_pdf(number: int) -> bytes:
    """A valid PDF whose bytes (and so hash) differ per job: a trailing comment."""
    return _PDF + f"%job {number}\n".encode()


async def submit(http: httpx.AsyncClient, number: int, **data: str) -> httpx.Response:
    return await http.post("/v1/documents", files=multipart_file(numbered_pdf(number)), data=data or None)


async def submit_many(
    http: httpx.AsyncClient, count: int, *, concurrency: int = 8, first: int = 0, **data: str
) -> list[str]:
    """Submit `count` documents numbered from `first`; every answer must be a 202. Returns the job ids."""
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> str:
        async with gate:
            response = await submit(http, number, **data)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    return list(await asyncio.gather(*(one(n) for n in range(first, first + count))))


async def _fetch(database_url: str, query: str, job_ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, [uuid.UUID(job_id) for job_id in job_ids])
    finally:
        await conn.close()


async def job_rows(database_url: str, job_ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await _fetch(
        database_url,
        "SELECT id::text, status, attempts, worker_id, error, result::text FROM jobs WHERE id = ANY($1::uuid[])",
        job_ids,
    )
    return {row["id"]: row for row in rows}


async def stage_rows(database_url: str, job_ids: list[str]) -> dict[tuple[str, str], asyncpg.Record]:
    """(job, stage) → its row; `attempt` is the attempt that last started (and finished) it."""
    rows = await _fetch(
        database_url,
        "SELECT job_id::text, name, status, attempt FROM job_stages WHERE job_id = ANY($1::uuid[])",
        job_ids,
    )
    return {(row["job_id"], row["name"]): row for row in rows}


async def wait_until_ended(database_url: str, job_ids: list[str], timeout: float, on_tick=None) -> dict:
    """Poll the ledger until every job has ended; `on_tick` runs each round (supervision)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await job_rows(database_url, job_ids)
        unfinished = [row for row in rows.values() if row["status"] in ("queued", "running")]
        if not unfinished and len(rows) == len(job_ids):
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"{len(unfinished)} jobs still unfinished after {timeout}s: {unfinished[:3]}")
        if on_tick is not None:
            on_tick()
        await asyncio.sleep(0.3)


async def busy_worker_pids(database_url: str, queue: str) -> set[int]:
    """Pids of worker processes that run a job of this queue right now (worker ids are host:pid:…)."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = await conn.fetch("SELECT DISTINCT worker_id FROM jobs WHERE queue = $1 AND status = 'running'", queue)
    finally:
        await conn.close()
    return {int(row["worker_id"].split(":")[1]) for row in ids if row["worker_id"]}


async def wait_until_busy(database_url: str, queue: str, timeout: float = 20, explain=lambda: "") -> set[int]:
    """Wait until some worker runs a job of this queue; its pids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (pids := await busy_worker_pids(database_url, queue)):
        if loop.time() > deadline:
            raise AssertionError(f"no worker started a job within {timeout}s\n{explain()}")
        await asyncio.sleep(0.1)
    return pids


async def assert_each_stage_ran_once(database_url: str, counter, job_ids: list[str], stage_names) -> None:
    """Every stage's side effect was accepted once at the (idempotent) server, and once a
    stage had finished in the ledger no later attempt ran it again: every report comes from
    the attempt that finished the stage, or from an earlier one that was cut short."""
    assert set(counter.accepted) == {(job, stage) for job in job_ids for stage in stage_names}
    stages = await stage_rows(database_url, job_ids)
    for job in job_ids:
        reports = counter.for_job(job)
        for stage in stage_names:
            row = stages[(job, stage)]
            attempts = [report.attempt for report in reports if report.stage == stage]
            assert row["status"] == "succeeded", (job, stage, row["status"])
            assert attempts.count(row["attempt"]) == 1 and max(attempts) == row["attempt"], (job, stage, attempts)
