"""What a synchronous standby costs the API: `python -m bench api --sync-standby [--quick]`.

A PostgreSQL 15 primary and a hot standby streaming from it (`testkit.replica`, built as
the tests build it, on loopback), both with `fsync` and `full_page_writes` back on so a
flush costs what it costs. The same pair is measured twice, the API (`bench.api`'s
uvicorn, one worker process a core, as deployed) on a fresh database each time:

- asynchronous: `synchronous_standby_names` empty, PostgreSQL's default: a commit waits
  for the primary's own WAL flush only;
- synchronous: `synchronous_standby_names = '*'` with `synchronous_commit = on`: every
  commit (so every `202`) also waits until the standby has flushed it.

Each: `COMMITS` single-row commits one after another on one connection (the cost itself,
little moved by the load on the machine), then the peak upload rate (wrk's closed loop of
50 connections) and the latency at a steady `PACED_RATE` uploads a second (h2load), as
`python -m bench api` measures them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time

import asyncpg

from service.config import load_settings
from service.databases.migrate import upgrade_async
from testkit.replica import StreamingReplica

from . import api_load as load
from .api import CLIENTS, PACED_RATE, UPLOAD_BYTES, ApiProcess, service_env, settle
from .context import BenchContext
from .ledger_db import tenant_with_key
from .report import Section, Table, milliseconds, percentile, rate, seconds

#: synchronous_standby_names for each mode, in the order measured.
MODES = {"asynchronous": "", "synchronous": "*"}
DURABLE = ("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on", "SELECT pg_reload_conf()")
DATABASE = "conveyor_bench_sync"
COMMITS = 1000
#: uvicorn processes: one a core, as deployed.
API_WORKERS = os.cpu_count() or 1


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def set_mode(pair: StreamingReplica, names: str) -> None:
    """Make the standby synchronous (`names` = '*') or not (''), and wait until the primary
    reports it so: its commits wait on the standby from then on."""
    await execute(
        pair.primary.url(),
        f"ALTER SYSTEM SET synchronous_standby_names = '{names}'",
        "ALTER SYSTEM SET synchronous_commit = on",
        "SELECT pg_reload_conf()",
    )
    wanted = "sync" if names else "async"
    conn = await asyncpg.connect(pair.primary.url(), timeout=10)
    try:
        for _ in range(500):
            if await conn.fetchval("SELECT sync_state FROM pg_stat_replication") == wanted:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise RuntimeError(f"the standby did not become {wanted}")


async def fresh_database(pair: StreamingReplica) -> str:
    """The URL of an empty database on the pair's primary (the last one's dropped)."""
    await execute(pair.primary.url(), f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}")
    return pair.primary.url(DATABASE)


async def commit_times(url: str, count: int) -> list[float]:
    """Seconds each of `count` single-row INSERTs took, each its own transaction."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE TABLE bench_commits (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            await conn.execute("INSERT INTO bench_commits DEFAULT VALUES")
            times.append(time.perf_counter() - started)
        return times
    finally:
        await conn.close()


async def measure(context: BenchContext, pair: StreamingReplica, workers: int) -> tuple[load.Load, load.Load]:
    """(peak uploads, paced uploads) against a fresh database on the pair's primary."""
    await context.reset()
    url = await fresh_database(pair)
    await upgrade_async(url)
    _, key = await tenant_with_key(load_settings(database_url=url, redis_url=context.redis_url), "bench")
    duration = context.api_seconds
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-sync-") as storage:
        env = service_env(url, context.redis_url, storage)
        async with ApiProcess(workers, env, context.log_path(f"api sync {workers}")) as api:
            await settle()
            peak = await load.run("upload", api.url, key, clients=CLIENTS, seconds=duration, size=UPLOAD_BYTES)
            await settle()
            paced = await load.paced_uploads(
                api.url, key, clients=CLIENTS, rate=PACED_RATE, seconds=duration, size=UPLOAD_BYTES
            )
    return peak, paced


async def commit_columns(context: BenchContext, pair: StreamingReplica, mode: str) -> list[str]:
    """p50, p99 and mean milliseconds of `COMMITS` commits on a fresh database, as the report writes them."""
    times = [value * 1000 for value in await commit_times(await fresh_database(pair), COMMITS)]
    p50, p99, mean = percentile(times, 50), percentile(times, 99), statistics.fmean(times)
    context.progress(f"{mode} standby: commit p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return [milliseconds(p50), milliseconds(p99), milliseconds(mean)]


def columns(measured: load.Load) -> list[str]:
    """A load's accepted rate, p50 and p99, as the report writes them."""
    return [rate(measured.per_second), seconds(measured.p50), seconds(measured.p99)]


async def run(context: BenchContext) -> Section:
    table = Table(
        f"API with a streaming standby: {UPLOAD_BYTES // 1000} KB PDFs to POST /v1/documents, {CLIENTS} clients "
        f"for {context.api_seconds:g} s at their peak, then {PACED_RATE} a second offered for as long",
        [
            "Standby",
            "uvicorn workers",
            "Uploads accepted/s",
            "Upload p50 s",
            "Upload p99 s",
            "Paced accepted/s",
            "Paced p50 s",
            "Paced p99 s",
        ],
    )
    commits = Table(
        f"Commits: {COMMITS:,} single-row INSERTs one after another on one connection, each its own transaction",
        ["Standby", "Commit p50 ms", "Commit p99 ms", "Commit mean ms"],
    )
    pair = StreamingReplica()
    await asyncio.to_thread(pair.start)
    try:
        for cluster in (pair.primary, pair.replica):
            await execute(cluster.url(), *DURABLE)
        for mode, names in MODES.items():
            await set_mode(pair, names)
            commits.rows.append([mode, *await commit_columns(context, pair, mode)])
            peak, paced = await measure(context, pair, API_WORKERS)
            context.progress(
                f"api, {mode} standby: {peak.per_second:,.0f} uploads/s, p99 {paced.p99:.3f} s at {PACED_RATE}/s"
            )
            table.rows.append([mode, str(API_WORKERS), *columns(peak), *columns(paced)])
    finally:
        await asyncio.to_thread(pair.stop)
    return context.section(
        "api-sync-standby",
        "API throughput with a synchronous standby",
        [commits, table],
        [
            "Primary and standby are PostgreSQL 15 on the same 2 cores and disk as the API, Redis and the load "
            "generator, so the standby's round trip is a loopback one: across hosts add the network's.",
            "Synchronous: `synchronous_standby_names = '*'`, `synchronous_commit = on` (the standby's flush); "
            "asynchronous: PostgreSQL's default. `fsync` and `full_page_writes` on in both clusters.",
            "Per-key rate limit and tenant queue quota lifted for the run (one API key sends everything).",
        ],
    )
