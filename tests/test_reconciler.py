"""The ledger is the truth: jobs survive Redis losing everything, and dead workers."""

import asyncio

import asyncpg
import redis.asyncio as redis
from prometheus_client import REGISTRY

from conveyor.kinds import Pipeline, Stage
from pipelines.maintenance import supervisor
from testkit.files import multipart_file, text_pdf
from testkit.service import client, running_worker, until, wait_for_job


async def _count(run, input):
    run.resources.settings.__dict__.setdefault("_runs", []).append(str(run.job_id))
    return {"ok": True}


def restarts(loop: str) -> float:
    return REGISTRY.get_sample_value("conveyor_background_loop_restarts_total", {"loop": loop}) or 0.0


def counting_pipeline():
    return Pipeline("document", (Stage("count", _count),), timeout=30)


async def test_jobs_accepted_while_redis_is_down_run_when_it_is_back(api, settings, tenant, redis_server):
    async with client(api.url, tenant[1]) as http:
        redis_server.stop()
        try:
            accepted = [await http.post("/v1/documents", files=multipart_file(text_pdf(f"doc {n}"))) for n in range(3)]
        finally:
            redis_server.start()
        assert [response.status_code for response in accepted] == [202, 202, 202]
        async with running_worker(settings, [counting_pipeline()]):
            done = [await wait_for_job(http, response.json()["id"], timeout=30) for response in accepted]
    assert {job["status"] for job in done} == {"succeeded"}


async def test_flushall_mid_run_loses_nothing(api, settings, tenant, redis_server):
    async with client(api.url, tenant[1]) as http:
        ids = [
            (await http.post("/v1/documents", files=multipart_file(text_pdf(f"{n}")))).json()["id"] for n in range(10)
        ]
        async with redis.from_url(redis_server.url) as r:
            await r.flushall()
        async with running_worker(settings, [counting_pipeline()]):
            done = [await wait_for_job(http, job_id, timeout=30) for job_id in ids]
    assert {job["status"] for job in done} == {"succeeded"}
    runs = settings.__dict__["_runs"]
    assert sorted(set(runs) & set(ids)) == sorted(ids)
    assert len([run for run in runs if run in ids]) == len(ids)  # each ran exactly once


async def test_dead_workers_job_resumes_elsewhere_from_its_checkpoint(api, settings, tenant):
    """A worker vanishes mid-job (no clean shutdown); another takes over within seconds."""
    calls = {"first": 0, "second": 0}
    hold = asyncio.Event()

    async def first(run, input):
        calls["first"] += 1
        return {"done": True}

    async def second(run, input):
        calls["second"] += 1
        if calls["second"] == 1:
            await hold.wait()  # the first worker hangs here until it "dies"
        return {"done": True}

    pipeline = Pipeline("document", (Stage("first", first), Stage("second", second)), timeout=60)
    async with client(api.url, tenant[1]) as http:
        job_id = (await http.post("/v1/documents", files=multipart_file(text_pdf("x")))).json()["id"]
        doomed = await running_worker(settings, [pipeline]).__aenter__()
        await until(lambda: calls["second"])
        await doomed.crash()
        async with running_worker(settings, [pipeline]):
            done = await wait_for_job(http, job_id, timeout=30)
    assert done["status"] == "succeeded"
    assert calls == {"first": 1, "second": 2}  # the finished stage did not run again
    assert done["attempts"] == 2


async def test_a_reconciler_that_hits_an_unforeseen_error_runs_again(api, settings, tenant, redis_server, monkeypatch):
    """An error the reconciler does not expect (here a column gone from under its query)
    ends its loop; supervised, the loop starts again, and a job only the ledger knows of
    still runs once the fault is gone."""
    monkeypatch.setattr(supervisor, "FIRST_PAUSE_SECONDS", 0.05)
    async with client(api.url, tenant[1]) as http, running_worker(settings, [counting_pipeline()]):
        before = restarts("reconciler")
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute("ALTER TABLE jobs RENAME COLUMN updated_at TO updated_at_away")
            try:
                await until(lambda: restarts("reconciler") > before, timeout=30)
            finally:
                await conn.execute("ALTER TABLE jobs RENAME COLUMN updated_at_away TO updated_at")
        finally:
            await conn.close()
        redis_server.stop()  # the job is known to the ledger alone: only the reconciler starts it
        try:
            accepted = await http.post("/v1/documents", files=multipart_file(text_pdf("after the fault")))
        finally:
            redis_server.start()
        assert accepted.status_code == 202, accepted.text
        job = await wait_for_job(http, accepted.json()["id"], timeout=30)
    assert job["status"] == "succeeded"
