"""How the document pipeline overlaps work: N documents through the API (one process a
core, as deployed), one worker and the paid services at realistic latencies, each in its
own process.

    python -m bench.documents [--quick] [--sizes 10,100] [--repeat 3]   # N = 10, 100 (and 1000 without --quick)

Every document is a two-page scan (no text layer), so each goes store → text → Textract
(3 s until SUCCEEDED, two pages of lines) → OpenAI-compatible extraction (1.5 s) →
persist. S3 is moto, waiting 50 ms before each PUT (10 ms before other requests).
The LLM rate limit is set to 6,000 requests a minute (a paid tier's), so the shared token
bucket is not what is measured.

Printed per N: makespan (first upload to last job finished, from the ledger's clock),
against the ideal (one document alone: its critical path) and against running the same
documents one after another (N × that); worker CPU per document (the `arq` process's
user+system, and separately its child processes: the page readers); each process's CPU
while the documents were uploaded and in all; the last document's timeline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import boto3
import httpx
import psutil
import redis.asyncio as aredis
from rich.console import Console

from bench.machine import describe, load_average
from bench.report import RESULTS_PATH, Section, Spread, Table, rate, seconds, write_section
from service.config import load_settings
from service.migrate import upgrade_async
from testkit import postgres
from testkit.documents import scanned_pdf
from testkit.llm_servers import API_KEY
from testkit.net import free_port, wait_for_port
from testkit.processes import api_command
from testkit.redis_server import RedisServer
from testkit.s3_server import CREDENTIALS
from testkit.service import new_tenant
from testkit.textract_server import ROLE_ARN, notice_channel

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "conveyor-bench"
UPLOADS_AT_ONCE = 100
"""By default all the documents are posted at once up to N = 100 (a hundred at a time
beyond): the makespan's ideal, one document's critical path, assumes all N are handed over
together, where a client posting fewer at a time spreads their arrival itself."""
FINISHED = ("succeeded", "failed", "cancelled")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def spawn_server(kind: str, *options: str) -> tuple[subprocess.Popen, str]:
    """One of bench.servers in its own process, and the URL it printed."""
    process = spawn([sys.executable, "-m", "bench.servers", kind, *options], {**os.environ, **CREDENTIALS})
    return process, process.stdout.readline().strip()


class Stack:
    """PostgreSQL database, Redis, S3, Textract, LLM, the API and one worker."""

    def __init__(
        self,
        textract_seconds: float,
        llm_seconds: float,
        uploads_at_once: int,
        api_processes: int,
        textract_notices: bool,
    ) -> None:
        self.textract_seconds, self.llm_seconds = textract_seconds, llm_seconds
        self.textract_notices = textract_notices
        self.uploads_at_once, self.api_processes = uploads_at_once, api_processes
        self.processes: list[subprocess.Popen] = []
        self.named: dict[str, psutil.Process] = {}
        self.redis = RedisServer()
        self.postgres = contextlib.ExitStack()
        self.database: str | None = None

    async def start(self) -> None:
        self.redis.start()
        os.environ.update(CREDENTIALS)
        self.postgres.enter_context(postgres.private_server())
        self.database = await postgres.create_database("conveyor_bench")
        self.database_url = postgres.database_url(self.database)
        await upgrade_async(self.database_url)
        _, s3_url = self._server("S3", "s3", "--put-latency", "0.05", "--latency", "0.01")
        boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=BUCKET)
        notices: dict[str, str] = {}
        textract_options = ["--s3", s3_url, "--seconds", str(self.textract_seconds)]
        if self.textract_notices:
            _, aws_url = self._server("SNS+SQS", "notices", "--put-latency", "0")
            topic, queue_url = notice_channel(aws_url)
            textract_options += ["--sns", aws_url]
            notices = {
                "TEXTRACT_SNS_TOPIC_ARN": topic,
                "TEXTRACT_SNS_ROLE_ARN": ROLE_ARN,
                "TEXTRACT_SQS_QUEUE_URL": queue_url,
                "SQS_ENDPOINT_URL": aws_url,
            }
        _, textract_url = self._server("Textract", "textract", *textract_options)
        _, llm_url = self._server("LLM", "llm", "--latency", str(self.llm_seconds))
        self.env = {
            **os.environ,
            **CREDENTIALS,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "STORAGE_URL": f"s3://{BUCKET}/documents",
            "S3_ENDPOINT_URL": s3_url,
            "OCR_PROVIDER": "textract",
            "TEXTRACT_ENDPOINT_URL": textract_url,
            "REGION": "us-east-1",
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": llm_url,
            "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "bench",
            "LLM_RATE_PER_MINUTE": "6000",
            "LOG_LEVEL": "WARNING",
            "TENANT_MAX_QUEUED_JOBS": "100000",
            "RATE_LIMIT_PER_MINUTE": "1000000",
            **notices,
        }
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.processes.append(
            spawn(api_command(port, "--log-level", "warning", "--workers", str(self.api_processes)), self.env)
        )
        wait_for_port(port, timeout=30)
        self.named["API"] = psutil.Process(self.processes[-1].pid)
        self.worker = spawn([sys.executable, "-m", "arq", "worker.WorkerSettings"], self.env)
        self.processes.append(self.worker)
        self.worker_process = self.named["worker"] = psutil.Process(self.worker.pid)
        self.named["Redis"] = psutil.Process(self.redis.process.pid)
        self.named["client"] = psutil.Process()
        settings = load_settings(database_url=self.database_url, redis_url=self.redis.url)
        _, self.key = await new_tenant(settings, "bench")

    def _server(self, name: str, kind: str, *options: str) -> tuple[subprocess.Popen, str]:
        process, url = spawn_server(kind, *options)
        self.processes.append(process)
        self.named[name] = psutil.Process(process.pid)
        return process, url

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each process on the benchmark's cores: ours, the test servers,
        PostgreSQL's (all of them: nothing else uses it here) and this client."""
        seconds = {name: _own_cpu(process) for name, process in self.named.items()}
        seconds["API"] += child_cpu(self.named["API"])  # uvicorn's workers
        seconds["page readers"] = child_cpu(self.worker_process)
        seconds["PostgreSQL"] = sum(
            _own_cpu(process)
            for process in psutil.process_iter(["name"])
            if process.info["name"] == "postgres" and process.is_running()
        )
        return seconds

    async def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()
        if self.database:
            await postgres.drop_database(self.database)
        self.postgres.close()


def _own_cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:  # a PostgreSQL backend that just ended
        return 0.0
    return times.user + times.system


def child_cpu(parent: psutil.Process) -> float:
    """CPU seconds of a process's descendants: those reaped, and the live ones (the worker's
    page readers' fork server and the readers it forked, the API's uvicorn workers)."""
    own = parent.cpu_times()
    total = own.children_user + own.children_system
    for child in parent.children(recursive=True):
        times = child.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def multipart(pdf: bytes) -> tuple[bytes, dict[str, str]]:
    """The upload's body, encoded once: the client shares the benchmark's cores, so its own
    per-request work is kept small (for the same reason it posts with aiohttp, not httpx)."""
    request = httpx.Request("POST", "http://bench", files={"file": ("scan.pdf", pdf, "application/pdf")})
    return request.read(), {"content-type": request.headers["content-type"]}


async def run_batch(
    stack: Stack, http: aiohttp.ClientSession, conn: asyncpg.Connection, count: int, pdf: bytes
) -> dict:
    slots = asyncio.Semaphore(stack.uploads_at_once)
    body, headers = multipart(pdf)

    async def upload() -> str:
        async with slots:
            async with http.post("/v1/documents", data=body, headers=headers) as response:
                response.raise_for_status()
                return (await response.json())["id"]

    before = stack.cpu_seconds()
    started = datetime.now(UTC)
    ids = await asyncio.gather(*(upload() for _ in range(count)))
    uploaded = stack.cpu_seconds()
    while True:
        row = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = ANY($2::text[])) AS finished,
                   count(*) FILTER (WHERE status = 'succeeded') AS succeeded, max(finished_at) AS last,
                   max(created_at) AS last_created
            FROM jobs WHERE id = ANY($1::uuid[])
            """,
            ids,
            list(FINISHED),
        )
        if row["finished"] == count:
            break
        await asyncio.sleep(0.1)
    after = stack.cpu_seconds()
    return {
        "n": count,
        "succeeded": row["succeeded"],
        "makespan": (row["last"] - started).total_seconds(),
        "uploading": (row["last_created"] - started).total_seconds(),
        "cpu_uploading": {name: uploaded[name] - before[name] for name in before},
        "cpu_total": {name: after[name] - before[name] for name in before},
        "ids": ids,
        "started": started,
    }


async def last_timeline(conn: asyncpg.Connection, run: dict) -> str:
    """When the last document to finish was created, claimed and through each stage, in
    seconds since the batch's first upload: the makespan's critical path."""
    rows = await conn.fetch(
        """
        WITH last AS (SELECT id, created_at, started_at FROM jobs WHERE id = ANY($1::uuid[])
                      ORDER BY finished_at DESC LIMIT 1)
        SELECT 'created' AS name, -2 AS position, last.created_at AS at FROM last
        UNION ALL SELECT 'claimed', -1, last.started_at FROM last
        UNION ALL SELECT name || ' done', position, finished_at FROM job_stages JOIN last ON job_id = last.id
        ORDER BY position
        """,
        run["ids"],
    )
    return ", ".join(f"{row['name']} {(row['at'] - run['started']).total_seconds():.2f}" for row in rows)


def cpu_by_process(run: dict) -> str:
    busiest = sorted(run["cpu_total"], key=run["cpu_total"].get, reverse=True)
    return ", ".join(f"{name} {run['cpu_uploading'][name]:.2f} / {run['cpu_total'][name]:.2f}" for name in busiest)


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


async def main(args: argparse.Namespace, command: str) -> None:
    pdf = scanned_pdf("Jane Doe jane.doe@example.com", "Skills: Python, PostgreSQL")
    sizes, repeat = args.sizes, args.repeat
    stack = Stack(
        args.textract_seconds, args.llm_seconds, args.uploads_at_once, args.api_processes, args.textract_notices
    )
    console = Console()
    try:
        await stack.start()
        async with aredis.from_url(stack.redis.url) as redis:
            machine = await describe(redis)
        conn = await asyncpg.connect(stack.database_url)
        headers = {"Authorization": f"Bearer {stack.key}"}
        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: a post on a
        # connection the server is closing fails, and a POST is not retried.
        connector = aiohttp.TCPConnector(limit=stack.uploads_at_once, keepalive_timeout=2)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(stack.api_url, headers=headers, connector=connector, timeout=timeout) as http:
            await run_batch(stack, http, conn, 1, pdf)  # warm-up: pools, clients, imports
            # Textract's poll backoff has jitter, so one document's time varies: take the median.
            singles = [await run_batch(stack, http, conn, 1, pdf) for _ in range(max(3, repeat))]
            ideal = Spread.of([single["makespan"] for single in singles]).median
            stages = await stage_times(conn, [single["ids"][0] for single in singles])
            console.print(f"one document alone (the ideal): {ideal:.2f}s — {stages}", highlight=False)
            table = Table(
                f"Documents: two-page scans through the whole pipeline, one worker, median (min–max) of {repeat}",
                [
                    "N",
                    "Succeeded",
                    "Makespan s",
                    "× ideal",
                    "Sequential s",
                    "Speed-up",
                    "Worker CPU ms/doc",
                    "Reader CPU ms/doc",
                ],
            )
            notes = [
                f"Ideal: one document alone, median of {len(singles)} runs, {ideal:.2f} s ({stages}); "
                f"sequential: N × the ideal. The client posts {stack.uploads_at_once} uploads at once "
                f"to the API's {stack.api_processes} processes."
            ]
            for count in sizes:
                runs = [await run_batch(stack, http, conn, count, pdf) for _ in range(repeat)]
                makespan = Spread.of([run["makespan"] for run in runs])
                table.rows.append(
                    [
                        str(count),
                        str(min(run["succeeded"] for run in runs)),
                        makespan.format(seconds),
                        makespan.format(lambda value: f"{value / ideal:.2f}"),
                        f"{ideal * count:.1f}",
                        Spread.of([ideal * count / run["makespan"] for run in runs]).format(
                            lambda value: f"{value:.1f}"
                        ),
                        Spread.of([run["cpu_total"]["worker"] * 1000 / count for run in runs]).format(rate),
                        Spread.of([run["cpu_total"]["page readers"] * 1000 / count for run in runs]).format(rate),
                    ]
                )
                uploading = Spread.of([run["uploading"] for run in runs]).format(seconds)
                notes.append(
                    f"N = {count}: the uploads took {uploading} s; mean per document: "
                    f"{await stage_times(conn, runs[-1]['ids'])}."
                )
                notes.append(
                    f"N = {count}, the last document to finish (last run), seconds after the first upload: "
                    f"{await last_timeline(conn, runs[-1])}."
                )
                notes.append(
                    f"N = {count}, CPU seconds by process while uploading / in all (last run): "
                    f"{cpu_by_process(runs[-1])}."
                )
                console.print(table.rich())
        await conn.close()
    finally:
        await stack.stop()
    machine["Load average at end (1/5/15 min)"] = load_average()
    notes += [
        "Test servers in their own processes: moto S3 (served by waitress, connections kept alive) waiting 50 ms "
        "before each PUT (10 ms otherwise), the Textract-protocol server "
        f"({args.textract_seconds:g} s until SUCCEEDED, two canned result pages, the object not fetched: AWS's work), "
        f"the OpenAI-compatible server ({args.llm_seconds:g} s)"
        + (
            ", moto's SNS and SQS carrying Textract's completion notices (TEXTRACT_SQS_QUEUE_URL: no polling)."
            if args.textract_notices
            else "."
        ),
        "Worker CPU: the `arq` process's user+system; reader CPU: its descendants (the page readers' fork "
        "server and the readers it forks).",
    ]
    name, heading = (
        ("documents-notices", "Documents pipeline, Textract notices instead of polls")
        if args.textract_notices
        else ("documents", "Documents pipeline")
    )
    section = Section(name, heading, command, time.strftime("%Y-%m-%d %H:%M %Z"), machine, [table], notes)
    section.print(console)
    write_section(section, args.results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.documents")
    parser.add_argument("--quick", action="store_true", help="N = 10 and 100, once each")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        help="document counts (default 10,100,1000; quick 10,100)",
    )
    parser.add_argument("--repeat", type=int, help="runs per size (default 3, quick 1)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    parser.add_argument("--textract-seconds", type=float, default=3.0, help="Textract's time until SUCCEEDED")
    parser.add_argument("--llm-seconds", type=float, default=1.5, help="the LLM's time per answer")
    parser.add_argument("--uploads-at-once", type=int, default=UPLOADS_AT_ONCE, help="the client's uploads in flight")
    parser.add_argument(
        "--textract-notices",
        action="store_true",
        help="Textract announces each job's end through SNS and SQS (moto's) instead of being polled",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="uvicorn workers serving the API (default: one a core, as the README deploys it)",
    )
    args = parser.parse_args()
    args.sizes = args.sizes or ([10, 100] if args.quick else [10, 100, 1000])
    args.repeat = args.repeat or (1 if args.quick else 3)
    started = time.monotonic()
    asyncio.run(main(args, "python -m bench.documents " + " ".join(sys.argv[1:])))
    print(f"(benchmark took {time.monotonic() - started:.0f}s)")
