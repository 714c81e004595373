"""Concurrency keys: at most N running jobs of a kind per key, across every worker, the
others waiting their turn in order, parked out of the queue's poll window, and the key
freed however its holders end. The kind is testkit/sample_kinds.py's `pair` (N = 2),
which tallies its running jobs in Redis; workers, PostgreSQL and Redis are real."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from redis.asyncio import Redis

from service import jobs, ledger, queue
from service.databases.database import Database
from service.queue import concurrency
from testkit import sample_kinds
from testkit.processes import WorkerProcess, settings_env
from testkit.service import client, running_worker, until, wait_for_job
from tests.test_kinds import KINDS, kinds_settings, sample_pipelines, submit


class Tally:
    """What the `pair` jobs of one key noted in Redis as they started."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.prefix = f"tally:{uuid.uuid4().hex[:8]}"

    def input(self, gate=None, **extra) -> dict:
        return {"redis_url": self.settings.redis_url, "tally": self.prefix, "gate": gate and str(gate), **extra}

    async def started(self) -> list[tuple[str, int]]:
        """(job id, how many of the key's jobs ran then, itself included), in start order."""
        async with Redis.from_url(self.settings.redis_url) as redis:
            entries = await redis.lrange(f"{self.prefix}:started", 0, -1)
        return [(job_id, int(running)) for job_id, running in (entry.decode().split() for entry in entries)]


async def test_one_claim_takes_the_places_left_in_order_and_leaves_the_rest_untouched(settings, tenant):
    db = Database(settings)
    await db.open()
    try:
        spec = sample_kinds.pair.spec(settings)
        ids = []
        for key in ("k", "k", "k", "k", "other"):  # a transaction each: each job younger than the last
            async with db.transaction() as conn:
                ids.append(
                    (await jobs.create(conn, jobs.new_job(spec, tenant[0], payload={}, concurrency_key=key)))["id"]
                )
        async with db.write() as conn:
            first = await ledger.claim_within_limit(conn, ids[:1], "w1", ["run"], 2)
            claimed = await ledger.claim_within_limit(conn, ids[1:], "w2", ["run"], 2)
            assert not conn.is_in_transaction()
            rows = {row["id"]: row for row in await conn.fetch("SELECT * FROM jobs WHERE id = ANY($1)", ids)}
    finally:
        await db.close()
    assert first[ids[0]]["worker_id"] == "w1"
    # One place of "k" was left: the oldest waiting job takes it, the younger two wait.
    assert [claimed[job_id]["worker_id"] for job_id in (ids[1], ids[4])] == ["w2", "w2"]
    assert claimed[ids[2]] == claimed[ids[3]] == ledger.Waiting("pair", "k", 2)
    assert [(rows[job_id]["status"], rows[job_id]["attempts"]) for job_id in ids] == [
        ("running", 1),
        ("running", 1),
        ("queued", 0),
        ("queued", 0),
        ("running", 1),
    ]


async def test_claims_racing_over_shared_keys_never_pass_the_limit(settings, tenant, database_url):
    """Twenty claims at once, each of jobs of three keys in a different order: no key runs
    more than its limit, every place is taken, and no claim deadlocks on another's locks."""
    db = Database(settings)
    await db.open()
    try:
        spec = sample_kinds.pair.spec(settings)  # limit 2
        keys = [f"race-{uuid.uuid4().hex[:6]}-{name}" for name in "abc"]
        async with db.transaction() as conn:
            created = [
                await jobs.create(conn, jobs.new_job(spec, tenant[0], payload={}, concurrency_key=keys[n % 3]))
                for n in range(60)
            ]
        ids = [row["id"] for row in created]

        connections = [await asyncpg.connect(database_url) for _ in range(20)]  # all at once, for real

        async def claim(worker: int, conn: asyncpg.Connection):
            chosen = ids[worker * 3 : worker * 3 + 3][:: 1 if worker % 2 else -1]
            return await ledger.claim_within_limit(conn, chosen, f"w{worker}", ["run"], 2)

        try:
            await asyncio.gather(*(claim(worker, conn) for worker, conn in enumerate(connections)))
        finally:
            await asyncio.gather(*(conn.close() for conn in connections))
        async with db.write() as conn:
            running = await conn.fetch(
                "SELECT concurrency_key, count(*) FROM jobs WHERE id = ANY($1) AND status = 'running'"
                " GROUP BY concurrency_key",
                ids,
            )
    finally:
        await db.close()
    assert {row["concurrency_key"]: row["count"] for row in running} == dict.fromkeys(keys, 2)


async def statuses(http, job_ids) -> list[str]:
    return [(await http.get(f"/v1/jobs/{job_id}")).json()["status"] for job_id in job_ids]


async def test_a_key_runs_at_most_its_limit_across_workers_and_the_rest_wait_parked(api, settings, tenant, tmp_path):
    tenant_id, key = tenant
    gate = tmp_path / "gate"
    tallies = {name: Tally(settings) for name in ("acme", "globex")}
    submitted = {
        name: [
            await submit(settings, tenant_id, sample_kinds.pair, tally.input(gate), concurrency_key=name)
            for _ in range(4)
        ]
        for name, tally in tallies.items()
    }
    env = settings_env(kinds_settings(settings), conveyor_kinds=KINDS)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log", settings_path="worker.WorkerSettings") for n in (1, 2)]
    redis = queue.connect(settings.redis_url)
    try:
        for worker in workers:
            worker.start()
        async with client(api.url, key) as http:
            for job_ids in submitted.values():  # two of each key run, two wait
                await until(lambda job_ids=job_ids: _counted(http, job_ids, running=2, queued=2), timeout=60)
            waiting = [job_id for job_ids in submitted.values() for job_id in job_ids[2:]]
            scores = [await redis.zscore(settings.queue_name, job_id) for job_id in waiting]
            gate.touch()
            done = [await wait_for_job(http, job_id) for job_ids in submitted.values() for job_id in job_ids]
    finally:
        for worker in workers:
            worker.stop()
        await redis.aclose()

    assert all(job["status"] == "succeeded" and job["attempts"] == 1 for job in done), done  # waiting is no try
    # The waiting jobs were parked out of every poll window: nothing looked at them until called.
    assert all(score > (time.time() + concurrency.BACKSTOP_S / 2) * 1000 for score in scores), scores
    for name, tally in tallies.items():
        started = await tally.started()
        assert sorted(job_id for job_id, _ in started) == sorted(submitted[name])
        assert max(running for _, running in started) == 2  # its limit, reached and never passed


async def _counted(http, job_ids, *, running: int, queued: int) -> bool:
    found = await statuses(http, job_ids)
    return found.count("running") == running and found.count("queued") == queued


async def test_a_waiting_line_goes_by_priority_then_age(api, settings, tenant, tmp_path):
    """One holder ends, the other holds on: the waiting jobs go one by one through the
    place it freed, in the line's order."""
    tenant_id, key = tenant
    gates, tally = [tmp_path / "first", tmp_path / "second"], Tally(settings)
    holders = [
        await submit(settings, tenant_id, sample_kinds.pair, tally.input(gate), concurrency_key=tally.prefix)
        for gate in gates
    ]
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        await until(lambda: _counted(http, holders, running=2, queued=0))
        waiting = {
            name: await submit(
                settings,
                tenant_id,
                sample_kinds.pair,
                tally.input(),
                concurrency_key=tally.prefix,
                priority=queue.PRIORITIES[priority],
            )
            for name, priority in (("low", "low"), ("normal 1", "normal"), ("high", "high"), ("normal 2", "normal"))
        }
        await until(lambda: _counted(http, list(waiting.values()), running=0, queued=4))
        gates[0].touch()
        done = [await wait_for_job(http, job_id) for job_id in waiting.values()]
        gates[1].touch()
        done += [await wait_for_job(http, job_id) for job_id in holders]
    assert all(job["status"] == "succeeded" for job in done), done
    order = {job_id: name for name, job_id in waiting.items()}
    assert [order[job_id] for job_id, _ in await tally.started() if job_id in order] == [
        "high",
        "normal 1",
        "normal 2",
        "low",
    ]


async def test_a_cancelled_or_failed_holder_frees_its_place(api, settings, tenant, tmp_path):
    tenant_id, key = tenant
    tally = Tally(settings)
    gates = {name: tmp_path / name for name in ("never", "fail", "later")}

    async def pair(**input) -> str:
        return await submit(settings, tenant_id, sample_kinds.pair, tally.input(**input), concurrency_key=tally.prefix)

    cancelled = await pair(gate=gates["never"])
    failed = await pair(gate=gates["fail"], fail=True)
    after_cancel, after_fail = await pair(gate=gates["later"]), await pair()
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        await until(lambda: _counted(http, [cancelled, failed, after_cancel, after_fail], running=2, queued=2))
        assert (await http.post(f"/v1/jobs/{cancelled}/cancel")).status_code == 202
        await wait_for_job(http, after_cancel, statuses=("running",))
        assert await statuses(http, [after_fail]) == ["queued"]  # both places are held again
        gates["fail"].touch()
        assert (await wait_for_job(http, after_fail))["status"] == "succeeded"
        gates["later"].touch()
        assert (await wait_for_job(http, after_cancel))["status"] == "succeeded"
        ends = await statuses(http, [cancelled, failed])
    assert ends == ["cancelled", "failed"]
    assert max(running for _, running in await tally.started()) == 2


async def test_a_killed_holder_does_not_strand_its_key(api, settings, tenant, tmp_path):
    tenant_id, key = tenant
    gate, tally = tmp_path / "gate", Tally(settings)
    holders = [
        await submit(settings, tenant_id, sample_kinds.pair, tally.input(gate), concurrency_key=tally.prefix)
        for _ in "ab"
    ]
    waiter = await submit(settings, tenant_id, sample_kinds.pair, tally.input(), concurrency_key=tally.prefix)
    env = settings_env(kinds_settings(settings), conveyor_kinds=KINDS)
    first = WorkerProcess(env, tmp_path / "first.log", settings_path="worker.WorkerSettings").start()
    try:
        async with client(api.url, key) as http:
            await until(lambda: _counted(http, [*holders, waiter], running=2, queued=1), timeout=60)
            first.kill()
            gate.touch()
            second = WorkerProcess(env, tmp_path / "second.log", settings_path="worker.WorkerSettings").start()
            try:
                done = [await wait_for_job(http, job_id, timeout=90) for job_id in [*holders, waiter]]
            finally:
                second.stop()
    finally:
        first.stop()
    assert [job["status"] for job in done] == ["succeeded"] * 3, first.log()
    assert [job["attempts"] for job in done] == [2, 2, 1]  # the holders ran again; the waiter once
