"""Kinds declared by an app with the public kind API (`conveyor.job`, `conveyor.Pipeline`),
loaded by workers from `CONVEYOR_KINDS` and run with the guarantees of the built-in kinds.
The kinds are testkit/sample_kinds.py; the API, the workers, PostgreSQL and Redis are real."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest

from conveyor.client import ApiError, AsyncClient
from conveyor.kinds import Pipeline
from pipelines import registry
from service import jobs, queue
from service.config import Settings
from service.databases.database import Database
from testkit import sample_kinds
from testkit.processes import ROOT, WorkerProcess, settings_env
from testkit.service import client, running_worker, until, wait_for_job

KINDS = "testkit.sample_kinds"


def kinds_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"conveyor_kinds": [KINDS]})


async def submit(settings: Settings, tenant_id: uuid.UUID, kind: Pipeline, input: dict, **options) -> str:
    """Record and hand over a job of `kind`, as every creator of jobs does (service/jobs.py)."""
    db, redis = Database(settings), queue.connect(settings.redis_url)
    await db.open()
    try:
        async with db.transaction() as conn:
            row = await jobs.create(conn, jobs.new_job(kind.spec(settings), tenant_id, payload=input, **options))
        assert row is not None
        await jobs.enqueue(redis, row)
    finally:
        await db.close()
        await redis.aclose()
    return str(row["id"])


def sample_pipelines(settings: Settings):
    return registry.pipelines(kinds_settings(settings))


async def test_a_one_function_kind_runs_with_its_model_progress_and_context(api, settings, tenant):
    tenant_id, key = tenant
    job_id = await submit(settings, tenant_id, sample_kinds.greet, {"name": "Ada", "times": 2}, metadata={"ref": 7})
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        done = await wait_for_job(http, job_id)
        events = (await http.get(f"/v1/jobs/{job_id}/events")).text
    assert done["status"] == "succeeded", done
    assert done["result"]["text"] == "Hello, Ada Hello, Ada"
    assert done["result"]["metadata"] == {"ref": 7} and done["result"]["tenant"].startswith("tenant-")
    assert [stage["name"] for stage in done["stages"]] == ["greet"]
    assert '"message": "halfway"' in events or '"message":"halfway"' in events


async def test_workers_publish_their_kinds_and_the_api_takes_jobs_of_them(api, settings, tenant):
    """The API never imports the kinds' module: it learns them from what the worker published."""
    async with AsyncClient(api.url, tenant[1]) as conveyor, running_worker(settings, sample_pipelines(settings)):

        async def published_by_this_worker() -> dict | None:
            """The kinds, once the API's copy has this test's queue (each test has its own)."""
            kinds = {kind.kind: kind for kind in await conveyor.kinds()}
            return kinds if "greet" in kinds and kinds["greet"].queue == settings.queue_name else None

        kinds = await until(published_by_this_worker)
        job = await conveyor.submit("greet", {"name": "Grace"}, priority="high", metadata={"ref": 1})
        done = await conveyor.wait(job.id, timeout=60)
        with pytest.raises(ApiError) as invalid:
            await conveyor.submit("greet", {"name": 42})
        with pytest.raises(ApiError) as upload_kind:
            await conveyor.submit("document", {})
        with pytest.raises(ApiError) as internal_kind:
            await conveyor.submit("callback", {"job_id": job.id, "kind": "greet", "status": "succeeded"})
    assert {"document", "video", "notification", "callback", "export", "greet", "sync_account"} <= set(kinds)
    greet = kinds["greet"]
    assert greet.description == "Say hello to someone." and greet.stages == ["greet"]
    assert greet.input_schema["required"] == ["name"] and greet.tries == 3
    assert kinds["sync_account"].stages == ["fetch", "load"]
    assert done.succeeded and done.result["text"] == "Hello, Grace"
    assert invalid.value.status == 422 and "name" in invalid.value.detail
    assert upload_kind.value.status == 422 and "/v1/documents" in upload_kind.value.detail
    assert internal_kind.value.status == 422


async def test_stages_hand_their_outputs_on_and_the_last_one_is_the_result(api, settings, tenant):
    tenant_id, key = tenant
    job_id = await submit(settings, tenant_id, sample_kinds.sync, {"account": "acme"})
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        done = await wait_for_job(http, job_id)
    assert done["status"] == "succeeded", done
    assert done["result"] == {"loaded": 2, "attempt": 1}
    assert [(stage["name"], stage["status"]) for stage in done["stages"]] == [
        ("fetch", "succeeded"),
        ("load", "succeeded"),
    ]


async def test_how_stages_end_retry_fail_crash_and_keep_partial_work(api, settings, tenant):
    tenant_id, key = tenant
    submitted = {
        "patient": await submit(settings, tenant_id, sample_kinds.patient, {"succeed_on": 3}),
        "refuse": await submit(settings, tenant_id, sample_kinds.refuse, {}),
        "crash": await submit(settings, tenant_id, sample_kinds.crash, {}),
        "timestamp": await submit(settings, tenant_id, sample_kinds.timestamp, {}),
        "resumable": await submit(settings, tenant_id, sample_kinds.resumable, {}),
        "invalid": await submit(settings, tenant_id, sample_kinds.greet, {"name": ["not", "a", "name"]}),
    }
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        done = {name: await wait_for_job(http, job_id, timeout=90) for name, job_id in submitted.items()}

    assert done["patient"]["status"] == "succeeded" and done["patient"]["result"] == {"attempt": 3}
    assert done["patient"]["attempts"] == 3  # each Retry counted a try

    assert done["refuse"]["status"] == "failed" and done["refuse"]["attempts"] == 1
    assert done["refuse"]["error"] == {"type": "over_quota", "message": "the account is over its quota"}

    crash = done["crash"]
    assert crash["status"] == "failed" and crash["attempts"] == 2  # retried until its tries were used
    assert crash["error"]["type"] == "exception" and "RuntimeError" in crash["error"]["message"]
    assert "/srv/secret" not in crash["error"]["message"]  # the exception's text stays in the logs

    assert done["timestamp"]["status"] == "failed" and done["timestamp"]["attempts"] == 1
    assert done["timestamp"]["error"]["type"] == "result_not_json"
    assert "'timestamp'" in done["timestamp"]["error"]["message"]

    assert done["resumable"]["status"] == "succeeded"
    assert done["resumable"]["result"] == {"resumed_from": 2, "attempt": 2}  # ctx.saved from the first try

    invalid = done["invalid"]
    assert invalid["status"] == "failed" and invalid["error"]["type"] == "invalid_input"
    assert "name" in invalid["error"]["message"]


async def test_a_cancelled_stage_sees_cancelled_error(api, settings, tenant, tmp_path):
    tenant_id, key = tenant
    marker = tmp_path / "cancelled"
    job_id = await submit(settings, tenant_id, sample_kinds.hold, {"marker": str(marker)})
    async with client(api.url, key) as http, running_worker(settings, sample_pipelines(settings)):
        await wait_for_job(http, job_id, statuses=("running",))
        assert (await http.post(f"/v1/jobs/{job_id}/cancel")).status_code == 202
        done = await wait_for_job(http, job_id)
    assert done["status"] == "cancelled"
    assert marker.read_text() == "cancelled"


async def test_a_finished_stage_never_runs_again_after_kill_9(api, settings, tenant, stage_counter, tmp_path):
    tenant_id, key = tenant
    gate = tmp_path / "gate"
    job_id = await submit(
        settings, tenant_id, sample_kinds.sync, {"account": "acme", "counter_url": stage_counter.url, "gate": str(gate)}
    )
    env = settings_env(kinds_settings(settings), conveyor_kinds=KINDS)
    first = WorkerProcess(env, tmp_path / "first.log", settings_path="worker.WorkerSettings").start()
    try:
        async with client(api.url, key) as http:

            async def fetched() -> bool:
                job = (await http.get(f"/v1/jobs/{job_id}")).json()
                stages = {stage["name"]: stage["status"] for stage in job["stages"]}
                return stages.get("fetch") == "succeeded" and job["stage"] == "load"

            await until(fetched, timeout=60)
            first.kill()
            gate.touch()
            second = WorkerProcess(env, tmp_path / "second.log", settings_path="worker.WorkerSettings").start()
            try:
                done = await wait_for_job(http, job_id, timeout=90)
            finally:
                second.stop()
    finally:
        first.stop()
    assert done["status"] == "succeeded", first.log()
    assert done["attempts"] == 2 and done["result"]["attempt"] == 2
    reports = stage_counter.for_job(job_id)
    assert [report.stage for report in reports] == ["fetch", "load"]  # fetch ran once, before the kill
    assert stage_counter.duplicates() == 0


def start_worker(settings: Settings, modules: str, tmp_path) -> subprocess.CompletedProcess:
    env = settings_env(settings, conveyor_kinds=modules)
    env["PYTHONPATH"] = f"{ROOT}:{tmp_path}"
    command = [sys.executable, "-m", "arq", "worker.WorkerSettings"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


async def test_a_kind_module_that_cannot_be_loaded_stops_the_worker_naming_it(settings, tmp_path):
    (tmp_path / "broken_jobs.py").write_text("import conveyor\nraise RuntimeError('no credentials configured')\n")
    (tmp_path / "twice_jobs.py").write_text(
        "import conveyor\n\n@conveyor.job('greet')\nasync def greet(ctx, input):\n    return {}\n"
    )
    broken, missing, twice = await asyncio.gather(
        asyncio.to_thread(start_worker, settings, "broken_jobs", tmp_path),
        asyncio.to_thread(start_worker, settings, "no_such_module", tmp_path),
        asyncio.to_thread(start_worker, settings, f"{KINDS},twice_jobs", tmp_path),
    )
    assert broken.returncode != 0
    assert (
        "the module 'broken_jobs' failed to import: RuntimeError: no credentials configured"
        in broken.stderr.splitlines()[-1]
    )
    assert missing.returncode != 0 and "'no_such_module' failed to import: ModuleNotFoundError" in missing.stderr
    assert twice.returncode != 0 and "the kind 'greet' is declared twice" in twice.stderr.splitlines()[-1]
