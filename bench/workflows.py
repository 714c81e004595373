"""What a workflow's fan-out costs over the same jobs submitted flat:
`python -m bench.workflows [--quick]`.

One run, one private PostgreSQL and Redis, the API in this process and one worker process
(`CONVEYOR_KINDS=testkit.sample_kinds`): first N `noop` jobs submitted flat through
`POST /v1/jobs/batch` (1,000 a request), timed from the first request until the ledger
has them all succeeded; then one workflow whose `for_each` step runs N `noop` jobs over
a list of N items (made by an `echo` step before it), followed by a join step whose
input is the list of their N results, timed from `POST /v1/workflows` until the workflow
has succeeded. N is 10,000 (quick: 500). The workflow's steps advance in the
transactions that end its jobs, one at a time per workflow (its row lock): the
overhead is that serialised bookkeeping, its two extra jobs, and the join's input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from bench.machine import host, load_average
from bench.report import RESULTS_PATH, Section, Table, rate, seconds, write_section
from service.config import Settings
from service.databases.database import Database
from service.databases.migrate import upgrade_async
from testkit import postgres
from testkit.processes import WorkerProcess, settings_env
from testkit.redis_server import RedisServer
from testkit.service import ApiServer, client, make_settings, new_tenant, until

KINDS = "testkit.sample_kinds"
BATCH = 1000
POLL_S = 0.05


async def succeeded_flat(db: Database) -> int:
    async with db.read() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE kind = 'noop' AND workflow_id IS NULL AND status = 'succeeded'"
        )


async def flat(http, db: Database, n: int) -> float:
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        body = {"jobs": [{"kind": "noop", "input": {}} for _ in range(min(BATCH, n - first))]}
        response = await http.post("/v1/jobs/batch", json=body)
        response.raise_for_status()
    while await succeeded_flat(db) < n:
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - started


async def workflow(http, n: int) -> float:
    steps = {
        "list": {"kind": "echo", "input": {"items": list(range(n))}},
        "each": {"kind": "noop", "input": {}, "after": ["list"], "for_each": {"$from": "list", "pointer": "/items"}},
        "join": {"kind": "noop", "input": {"results": {"$from": "each"}}, "after": ["each"]},
    }
    started = time.perf_counter()
    response = await http.post("/v1/workflows", json={"steps": steps})
    response.raise_for_status()
    location = response.headers["location"]
    while (status := (await http.get(location)).json()["status"]) == "running":
        await asyncio.sleep(POLL_S)
    if status != "succeeded":
        ended = (await http.get(location)).json()
        failed = (await http.get("/v1/jobs", params={"status": "failed", "limit": 3})).json()["items"]
        summary = {name: (step["status"], step.get("error")) for name, step in ended["steps"].items()}
        raise SystemExit(f"the workflow ended {status}: {summary}; failed jobs: {[job['error'] for job in failed]}")
    return time.perf_counter() - started


async def measure(n: int, work: Path) -> tuple[float, float]:
    name = await postgres.create_database("conveyor_bench")
    url = postgres.database_url(name)
    await upgrade_async(url)
    redis = RedisServer()
    redis.start()
    settings: Settings = make_settings(
        url,
        redis.url,
        work / "storage",
        queue_name="bench-workflows",
        conveyor_kinds=[KINDS],
        rate_limit_per_minute=100_000_000,
        tenant_max_queued_jobs=100_000_000,
    )
    worker = WorkerProcess(
        settings_env(settings, conveyor_kinds=KINDS), work / "worker.log", settings_path="worker.WorkerSettings"
    )
    db = Database(settings)
    try:
        worker.start()
        await db.open()
        _, key = await new_tenant(settings, "bench")
        async with ApiServer(settings) as api, client(api.url, key) as http:
            http.timeout = 120

            async def published() -> bool:
                kinds = {kind["kind"] for kind in (await http.get("/v1/kinds")).json()["items"]}
                return {"noop", "echo"} <= kinds

            await until(published, timeout=60)
            return await flat(http, db, n), await workflow(http, n)
    finally:
        await db.close()
        worker.stop()
        redis.stop()
        await postgres.drop_database(name)


def main(args: argparse.Namespace, command: str) -> None:
    n = 500 if args.quick else args.jobs
    with tempfile.TemporaryDirectory() as work, postgres.private_server():
        flat_s, workflow_s = asyncio.run(measure(n, Path(work)))
    table = Table(f"{n:,} noop jobs, one worker process", ["submitted as", "jobs", "wall s", "jobs/s"])
    table.rows.append(["POST /v1/jobs/batch (flat)", f"{n:,}", seconds(flat_s), rate(n / flat_s)])
    table.rows.append(["workflow: list → for_each → join", f"{n + 2:,}", seconds(workflow_s), rate(n / workflow_s)])
    overhead = workflow_s / flat_s - 1
    notes = [
        f"Overhead of the workflow over the flat batch: {overhead:+.0%} wall time"
        f" ({(workflow_s - flat_s) / n * 1e3:.2f} ms a job).",
        "jobs/s counts the N noop jobs only; the workflow's also include its list and join steps' jobs.",
        f"Load average at end: {load_average()}.",
    ]
    section = Section(
        "workflows",
        "Workflows: fan-out against flat jobs",
        command,
        time.strftime("%Y-%m-%d %H:%M %Z"),
        host(),
        [table],
        notes,
    )
    section.print(Console())
    write_section(section, args.results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.workflows", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000, help="N (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="N = 500")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    parsed = parser.parse_args()
    main(parsed, " ".join(["python -m bench.workflows", *sys.argv[1:]]))
