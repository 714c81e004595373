"""Priority over real worker processes: while workers are busy, a waiting high job starts
before every waiting normal job, and normal before low, whenever they were enqueued; a
deferred job still waits for its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service import ledger, queue
from testkit.chaos import job_rows, wait_until_ended
from testkit.processes import WorkerProcess, settings_env
from testkit.service import client, publish_kinds

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUNDS = 4
ENQUEUED = ("low", "normal", "high")  # each round enqueues the lowest first


def due(score: int, now: int) -> bool:
    return any(low <= score <= high for low, high in queue.due_ranges(now))


def test_every_high_score_is_ahead_of_every_normal_one_whenever_enqueued():
    now = int(datetime.now(UTC).timestamp() * 1000)
    year = 366 * 24 * 3600 * 1000
    high_now = queue.in_band(queue.PRIORITIES["high"], now)
    normal_long_ago = queue.in_band(queue.PRIORITIES["normal"], now - year)
    low_long_ago = queue.in_band(queue.PRIORITIES["low"], now - year)
    assert high_now < normal_long_ago < queue.in_band(queue.PRIORITIES["normal"], now) < low_long_ago
    assert due(high_now, now) and due(normal_long_ago, now) and due(low_long_ago, now)
    later = queue.in_band(queue.PRIORITIES["high"], now + 60_000)
    assert not due(later, now) and due(later, now + 60_000)
    assert queue.rescheduled(later, now) == high_now  # a retry keeps its band


async def _start_order(database_url: str, job_ids: list[str]) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id::text FROM jobs WHERE id = ANY($1::uuid[]) ORDER BY started_at", job_ids)
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def test_under_a_backlog_high_runs_before_normal_before_low(api, settings, tenant, tmp_path):
    kind = f"ordered_{tmp_path.name.replace('-', '_')[-12:]}"
    await publish_kinds(
        settings,
        ledger.KindDescription(
            name=kind, description="", input_schema={}, stages=("run",), tries=3, timeout=30, queue=settings.queue_name
        ),
    )
    submitted: dict[str, list[str]] = {priority: [] for priority in ENQUEUED}
    async with client(api.url, tenant[1]) as http:

        async def submit(**options) -> str:
            response = await http.post("/v1/jobs", json={"kind": kind, "input": {}, **options})
            assert response.status_code == 202, response.text
            return response.json()["id"]

        for _ in range(ROUNDS):  # the backlog: no worker runs yet
            for priority in ENQUEUED:
                submitted[priority].append(await submit(priority=priority))
        deferred = await submit(priority="high", run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    ids = [job for jobs in submitted.values() for job in jobs]
    env = settings_env(settings, worker_max_jobs=1, test_kind=kind)
    worker = WorkerProcess(env, tmp_path / "worker.log", settings_path="testkit.ordered_worker.WorkerSettings").start()
    try:
        await wait_until_ended(settings.database_url, ids, timeout=60)
    finally:
        worker.stop()
    assert await _start_order(settings.database_url, ids) == submitted["high"] + submitted["normal"] + submitted["low"]
    assert (await job_rows(settings.database_url, [deferred]))[deferred]["status"] == "queued"
