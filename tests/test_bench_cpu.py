"""The benchmarks' CPU accounts keep the work of processes that ended during a run."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import psutil

from bench import cpu
from testkit import postgres


async def test_a_postgresql_backend_that_ends_still_counts_in_its_servers_cpu(postgres_server):
    server = await cpu.postmaster(postgres.admin_url())
    before = cpu.tree_cpu(server)
    connection = await asyncpg.connect(postgres.admin_url())
    matched = await connection.fetchval(
        "SELECT count(*) FROM generate_series(1, 2000000) AS n WHERE md5(n::text) LIKE 'a%'"
    )
    backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
    spent = cpu.own_cpu(backend)
    await connection.close()
    backend.wait(timeout=10)  # ended, and reaped by the server
    after = cpu.tree_cpu(server)
    assert server.name() == "postgres" and matched > 0 and spent > 0.1
    assert after - before >= spent * 0.9, (before, after, spent)


def test_a_named_process_started_by_another_is_counted_once_under_its_own_name():
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
            "print(flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert burner.stdout is not None and burner.stdout.readline()  # its CPU is spent
        client = psutil.Process()
        seconds = cpu.by_process({"client": client, "burner": psutil.Process(burner.pid)})
        assert seconds["burner"] >= 0.3
        assert seconds["client"] + 0.3 <= cpu.tree_cpu(client), seconds
    finally:
        burner.kill()
        burner.wait()
