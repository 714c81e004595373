"""How the document pipeline overlaps work: N documents through API, one worker and the
paid services at realistic latencies, each in its own process.

    python -m bench.documents [--quick]      # N = 10, 100 (and 1000 without --quick)

Every document is a two-page scan (no text layer), so each goes store → text → Textract
(3 s until SUCCEEDED, two pages of lines) → OpenAI-compatible extraction (1.5 s) →
persist. S3 is moto behind a proxy adding 50 ms to each PUT (10 ms to other requests).
The LLM rate limit is set to 6,000 requests a minute (a paid tier's), so the shared token
bucket is not what is measured.

Printed per N: makespan (first upload to last job finished, from the ledger's clock),
against the ideal (one document alone: its critical path) and against running the same
documents one after another (N × that); worker CPU per document (the `arq` process's
user+system, and separately its child processes: the page readers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import boto3
import httpx
import psutil

from service.config import load_settings
from service.migrate import upgrade_async
from tests.support import postgres
from tests.support.documents import scanned_pdf
from tests.support.llm_servers import API_KEY
from tests.support.net import free_port, wait_for_port
from tests.support.redis_server import RedisServer
from tests.support.s3_server import CREDENTIALS, S3Server
from tests.support.service import new_tenant

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "conveyor-bench"
UPLOADS_AT_ONCE = 32
FINISHED = ("succeeded", "failed", "cancelled")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def spawn_server(kind: str, *options: str) -> tuple[subprocess.Popen, str]:
    """One of bench.servers in its own process, and the URL it printed."""
    process = spawn([sys.executable, "-m", "bench.servers", kind, *options], {**os.environ, **CREDENTIALS})
    return process, process.stdout.readline().strip()


class Stack:
    """PostgreSQL database, Redis, S3 (+ latency proxy), Textract, LLM, the API and one worker."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.redis = RedisServer()
        self.s3 = S3Server()
        self.database: str | None = None

    async def start(self) -> None:
        self.redis.start()
        self.s3.start()
        os.environ.update(CREDENTIALS)
        boto3.client("s3", endpoint_url=self.s3.endpoint_url).create_bucket(Bucket=BUCKET)
        self.database = await postgres.create_database("conveyor_bench")
        self.database_url = postgres.database_url(self.database)
        await upgrade_async(self.database_url)
        proxy, proxy_url = self._server("s3-proxy", "--upstream", self.s3.endpoint_url, "--put-latency", "0.05",
                                        "--latency", "0.01")
        _, textract_url = self._server("textract", "--s3", self.s3.endpoint_url, "--seconds", "3")
        _, llm_url = self._server("llm", "--latency", "1.5")
        self.env = {
            **os.environ, **CREDENTIALS,
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "STORAGE_URL": f"s3://{BUCKET}/documents", "S3_ENDPOINT_URL": proxy_url,
            "OCR_PROVIDER": "textract", "TEXTRACT_ENDPOINT_URL": textract_url, "REGION": "us-east-1",
            "LLM_PROVIDER": "openai", "LLM_BASE_URL": llm_url, "LLM_API_KEY": API_KEY, "LLM_MODEL": "bench",
            "LLM_RATE_PER_MINUTE": "6000", "LOG_LEVEL": "WARNING", "TENANT_MAX_QUEUED_JOBS": "100000",
            "RATE_LIMIT_PER_MINUTE": "1000000",
        }
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.processes.append(spawn([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
                                     "--log-level", "warning"], self.env))
        wait_for_port(port, timeout=30)
        self.worker = spawn([sys.executable, "-m", "arq", "worker.WorkerSettings"], self.env)
        self.processes.append(self.worker)
        self.worker_process = psutil.Process(self.worker.pid)
        settings = load_settings(database_url=self.database_url, redis_url=self.redis.url)
        _, self.key = await new_tenant(settings, "bench")

    def _server(self, kind: str, *options: str) -> tuple[subprocess.Popen, str]:
        process, url = spawn_server(kind, *options)
        self.processes.append(process)
        return process, url

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.s3.stop()
        self.redis.stop()
        if self.database:
            await postgres.drop_database(self.database)


async def run_batch(stack: Stack, http: httpx.AsyncClient, conn: asyncpg.Connection, count: int, pdf: bytes) -> dict:
    slots = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def upload(n: int) -> str:
        async with slots:
            files = {"file": (f"scan-{n}.pdf", pdf, "application/pdf")}
            response = await http.post("/v1/documents", files=files)
            response.raise_for_status()
            return response.json()["id"]

    cpu = stack.worker_process.cpu_times()
    started = datetime.now(timezone.utc)
    ids = await asyncio.gather(*(upload(n) for n in range(count)))
    while True:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = ANY($2::text[])) AS finished,
                   count(*) FILTER (WHERE status = 'succeeded') AS succeeded, max(finished_at) AS last
            FROM jobs WHERE id = ANY($1::uuid[])
            """,
            ids, list(FINISHED),
        )
        if row["finished"] == count:
            break
        await asyncio.sleep(0.1)
    after = stack.worker_process.cpu_times()
    return {
        "n": count,
        "succeeded": row["succeeded"],
        "makespan": (row["last"] - started).total_seconds(),
        "cpu": (after.user + after.system - cpu.user - cpu.system) / count,
        "children_cpu": (after.children_user + after.children_system - cpu.children_user - cpu.children_system)
        / count,
        "ids": ids,
    }


async def stage_times(conn: asyncpg.Connection, ids: list[str]) -> str:
    """Mean wall time of each stage over these jobs, and of the wait before the first one."""
    rows = await conn.fetch(
        """
        SELECT 'queued' AS name, -1 AS position, avg(extract(epoch FROM started_at - created_at)) AS seconds
        FROM jobs WHERE id = ANY($1::uuid[])
        UNION ALL
        SELECT name, position, avg(extract(epoch FROM finished_at - started_at))
        FROM job_stages WHERE job_id = ANY($1::uuid[]) GROUP BY name, position
        ORDER BY position
        """,
        ids,
    )
    return ", ".join(f"{row['name']} {row['seconds']:.2f}s" for row in rows)


async def main(quick: bool) -> None:
    sizes = (10, 100) if quick else (10, 100, 1000)
    pdf = scanned_pdf("Jane Doe jane.doe@example.com", "Skills: Python, PostgreSQL")
    stack = Stack()
    try:
        await stack.start()
        conn = await asyncpg.connect(stack.database_url)
        headers = {"Authorization": f"Bearer {stack.key}"}
        limits = httpx.Limits(max_connections=UPLOADS_AT_ONCE)
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=120, limits=limits) as http:
            await run_batch(stack, http, conn, 1, pdf)  # warm-up: pools, clients, imports
            single = await run_batch(stack, http, conn, 1, pdf)
            ideal = single["makespan"]
            print(f"one document alone (the ideal): {ideal:.2f}s — {await stage_times(conn, single['ids'])}")
            print(f"{'N':>5} {'ok':>5} {'makespan':>9} {'× ideal':>8} {'sequential':>11} {'speed-up':>9} "
                  f"{'CPU/doc':>8} {'+children':>10}")
            for count in sizes:
                result = await run_batch(stack, http, conn, count, pdf)
                sequential = ideal * count
                print(f"{count:>5} {result['succeeded']:>5} {result['makespan']:>8.2f}s "
                      f"{result['makespan'] / ideal:>7.2f}× {sequential:>10.1f}s "
                      f"{sequential / result['makespan']:>8.1f}× {result['cpu'] * 1000:>6.0f}ms "
                      f"{result['children_cpu'] * 1000:>8.0f}ms", flush=True)
                print(f"      mean per document: {await stage_times(conn, result['ids'])}", flush=True)
        await conn.close()
    finally:
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.documents")
    parser.add_argument("--quick", action="store_true", help="N = 10 and 100 only")
    started = time.monotonic()
    asyncio.run(main(parser.parse_args().quick))
    print(f"(benchmark took {time.monotonic() - started:.0f}s)")
