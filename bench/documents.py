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
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import redis.asyncio as aredis
from rich.console import Console

from bench.document_stack import Stack
from bench.machine import describe, load_average
from bench.report import RESULTS_PATH, Section, Spread, Table, rate, seconds, write_section
from testkit.documents import scanned_pdf

UPLOADS_AT_ONCE = 100
"""By default all the documents are posted at once up to N = 100 (a hundred at a time
beyond): the makespan's ideal, one document's critical path, assumes all N are handed over
together, where a client posting fewer at a time spreads their arrival itself."""
FINISHED = ("succeeded", "failed", "cancelled")


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
