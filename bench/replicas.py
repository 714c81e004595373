"""Reads through a real streaming replica: `python -m bench.replicas [--quick]`.

A PostgreSQL 15 primary and a hot standby (initdb, pg_basebackup -R, on free ports, as in
the tests) and a private Redis. Measured:

1. Routing overhead per read: `Database.read()` (the router's choice, the cached replay
   position check, and with `follow` the write position looked up in Redis) against the
   same query on a plain asyncpg pool connected to the replica.
2. Status polls (`GET /v1/jobs/{id}`, wrk, 50 connections) against the API with and
   without `DATABASE_URL_READ`.
3. Read-your-writes under lag: create-then-poll pairs (a job created, read back, its
   status moved forward and read again) with the replica's `recovery_min_apply_delay` at
   0, 10 and 500 ms: the share of reads the replica served, and the violations (a job
   missing right after its creation, or a status going backwards), which must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import redis.asyncio as aredis
from prometheus_client import REGISTRY
from rich.console import Console

from bench import api_load as load
from bench.api import LIMITS, ApiProcess, created_ids
from bench.ledger_db import tenant_with_key
from bench.machine import describe, load_average
from bench.report import RESULTS_PATH, Section, Spread, Table, rate, seconds, write_section
from service import ledger, queue
from service.config import Settings, load_settings
from service.databases.database import Database
from service.databases.migrate import upgrade_async
from testkit.redis_server import RedisServer
from testkit.replica import StreamingReplica

LAGS_MS = (0, 10, 500)
STATUSES = ("queued", "running", "succeeded")
QUERY = "SELECT status FROM jobs WHERE id = $1"


def reads(role: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "conveyor_db_reads"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["role"] == role
    )


async def per_read(read, count: int) -> float:
    """Microseconds per read, `count` reads one after another."""
    started = time.perf_counter()
    for _ in range(count):
        await read()
    return (time.perf_counter() - started) / count * 1e6


async def routing_overhead(db: Database, replica_url: str, job_id: uuid.UUID, count: int, repeat: int) -> Table:
    pool = await asyncpg.create_pool(replica_url, min_size=1, max_size=2)
    track = (f"job:{job_id}",)

    async def direct() -> None:
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.fetchval(QUERY, job_id)

    async def routed(follow: tuple[str, ...]) -> None:
        async with db.read(follow=follow) as conn:
            await conn.fetchval(QUERY, job_id)

    cases = {
        "asyncpg pool on the replica (baseline)": direct,
        "Database.read() (router + cached replay position)": lambda: routed(()),
        "Database.read(follow=job) (+ write position from Redis)": lambda: routed(track),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(repeat):
            for name, read in cases.items():  # alternate, so drift hits every case alike
                await per_read(read, count // 10)  # warm
                timings[name].append(await per_read(read, count))
    finally:
        await pool.close()
    baseline = Spread.of(timings[next(iter(cases))]).median
    table = Table(
        f"Routing overhead: µs per read, {count:,} reads one after another, median (min–max) of {repeat}",
        ["Read", "µs per read", "Overhead µs"],
    )
    for name, values in timings.items():
        spread = Spread.of(values)
        table.rows.append([name, spread.format(rate), rate(spread.median - baseline)])
    return table


async def create_then_poll(db: Database, tenant_id: uuid.UUID) -> int:
    """One job created, read back, moved forward twice and read after each; the violations seen."""
    job_id = ledger.new_job_id()
    track = (f"job:{job_id}", f"tenant:{tenant_id}")
    async with db.transaction(track=track) as conn:
        await ledger.create_job(conn, job_id=job_id, tenant_id=tenant_id, kind="document", queue="bench")
    violations = 0
    for index in range(len(STATUSES)):
        async with db.read(follow=track) as conn:
            status = await conn.fetchval(QUERY, job_id)
        violations += status is None or STATUSES.index(status) < index
        if index + 1 < len(STATUSES):
            async with db.transaction(track=track) as conn:
                await conn.execute("UPDATE jobs SET status = $2 WHERE id = $1", job_id, STATUSES[index + 1])
    return violations


async def replica_share(
    db: Database, cluster: StreamingReplica, tenant_id: uuid.UUID, pairs: int, repeat: int
) -> Table:
    table = Table(
        f"Create-then-poll: {pairs:,} pairs (10 at a time, 3 reads each) per run, median (min–max) of {repeat}",
        ["Replica apply delay", "Reads from the replica", "Pairs/s", "Violations"],
    )
    slots = asyncio.Semaphore(10)

    async def pair() -> int:
        async with slots:
            return await create_then_poll(db, tenant_id)

    for lag in LAGS_MS:
        await cluster.set_apply_delay(f"{lag}ms")
        shares, rates, violations = [], [], 0
        for _ in range(repeat):
            before = reads("replica"), reads("primary")
            started = time.perf_counter()
            violations += sum(await asyncio.gather(*(pair() for _ in range(pairs))))
            rates.append(pairs / (time.perf_counter() - started))
            replica, primary = reads("replica") - before[0], reads("primary") - before[1]
            shares.append(100 * replica / (replica + primary))
        table.rows.append(
            [
                f"{lag} ms",
                Spread.of(shares).format(lambda value: f"{value:.0f} %"),
                Spread.of(rates).format(rate),
                str(violations),
            ]
        )
    await cluster.set_apply_delay("0")
    return table


async def polls(settings: Settings, replica_url: str | None, key: str, duration: float, log: Path) -> load.Load:
    env = {
        **os.environ,
        **LIMITS,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "STORAGE_URL": settings.storage_url,
        "LOG_LEVEL": "WARNING",
    }
    if replica_url:
        env["DATABASE_URL_READ"] = replica_url
    async with ApiProcess(1, env, log) as api:
        return await load.run(
            "poll", api.url, key, clients=50, seconds=duration, ids=await created_ids(settings.database_url)
        )


async def main(args: argparse.Namespace) -> None:
    console = Console()
    cluster = StreamingReplica()
    cluster.start()
    try:
        with RedisServer() as redis_server:
            async with aredis.from_url(redis_server.url) as redis:
                machine = await describe(redis)
            conn = await asyncpg.connect(cluster.primary.url())
            await conn.execute("CREATE DATABASE conveyor")
            await conn.close()
            primary_url, replica_url = cluster.primary.url("conveyor"), cluster.replica.url("conveyor")
            await upgrade_async(primary_url)
            with tempfile.TemporaryDirectory(prefix="conveyor-bench-replicas-") as scratch:
                settings = load_settings(
                    database_url=primary_url,
                    redis_url=redis_server.url,
                    storage_url=f"file://{scratch}",
                    database_url_read=[replica_url],
                )
                tenant_id, key = await tenant_with_key(settings, "bench")
                redis = queue.connect(settings.redis_url)
                db = Database(settings, redis=redis)
                await db.open()
                try:
                    for _ in range(args.pairs):  # jobs for the polls to read
                        await create_then_poll(db, tenant_id)
                    await cluster.caught_up()
                    async with db.read() as read:
                        job_id = await read.fetchval("SELECT id FROM jobs LIMIT 1")
                    tables = [await routing_overhead(db, replica_url, job_id, args.reads, args.repeat)]
                    console.print(tables[-1].rich())
                    tables.append(await replica_share(db, cluster, tenant_id, args.pairs, args.repeat))
                    console.print(tables[-1].rich())
                finally:
                    await db.close()
                    await redis.aclose()
                poll_table = Table(
                    f"Status polls: GET /v1/jobs/{{id}}, wrk with 50 connections for {args.seconds:g} s, "
                    "one uvicorn worker",
                    ["Reads from", "Polls/s", "p50 s", "p99 s"],
                )
                for label, read_url in (("primary only", None), ("replica (DATABASE_URL_READ)", replica_url)):
                    result = await polls(settings, read_url, key, args.seconds, Path(scratch) / "api.log")
                    poll_table.rows.append([label, rate(result.per_second), seconds(result.p50), seconds(result.p99)])
                tables.append(poll_table)
    finally:
        cluster.stop()
    machine["Load average at end (1/5/15 min)"] = load_average()
    section = Section(
        "replicas",
        "Read replicas",
        "python -m bench.replicas " + " ".join(sys.argv[1:]),
        time.strftime("%Y-%m-%d %H:%M %Z"),
        machine,
        tables,
        [
            "One primary and one streaming replica (PostgreSQL 15, fsync off) on this machine; the lag is the "
            "replica's recovery_min_apply_delay.",
            "A violation is a read that missed a job just created or saw its status go backwards; reads follow "
            "the job's and tenant's write positions (LSNs in Redis), so the router sends them to the primary "
            "whenever the replica has not replayed that far.",
            "The API, wrk, both PostgreSQL servers and Redis share the same 2 cores.",
        ],
    )
    section.print(console)
    write_section(section, args.results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.replicas")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    args = parser.parse_args()
    args.reads, args.pairs, args.repeat, args.seconds = (200, 50, 1, 2.0) if args.quick else (3000, 500, 3, 15.0)
    started = time.monotonic()
    asyncio.run(main(args))
    print(f"(benchmark took {time.monotonic() - started:.0f}s)")
