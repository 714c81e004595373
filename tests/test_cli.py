"""The `conveyor` CLI against a real PostgreSQL, Redis, uvicorn and arq worker.

The API runs on the test's event loop, so each CLI run (synchronous, as in a shell)
goes to a thread.
"""

import asyncio
import json
import re
import uuid
from datetime import datetime

import redis.asyncio as redis
from click.testing import CliRunner

from conveyor.kinds import Pipeline, Stage
from service.cli import app
from service.errors import PermanentError
from service.queue.heartbeats import live_workers
from testkit import sample_kinds
from testkit.files import multipart_file, text_pdf
from testkit.service import client, publish_kinds, running_worker, until, wait_for_job
from tests.test_api_jobs import ids_starting, insert_jobs

CLEAN_ENV = {
    "DATABASE_URL": None,
    "REDIS_URL": None,
    "CONVEYOR_URL": None,
    "CONVEYOR_API_KEY": None,
    "CONVEYOR_DATA_DIR": None,
    "CONVEYOR_HOME": None,
}
LONG_TEXT = "\n".join(f"line {n}: " + "words " * 12 for n in range(1000))


async def conveyor(*args: str, **env: str):
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env={**CLEAN_ENV, **env})


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def _size(run, input):
    return {"size": await run.resources.storage.size(run.payload["input"]["key"])}


async def _refuse(run, input):
    raise PermanentError("this PDF is not a resume", type="not_a_resume")


def quick_pipeline():
    return Pipeline("document", (Stage("store", _size),), timeout=30)


def failing_pipeline():
    return Pipeline("document", (Stage("store", _size), Stage("read", _refuse)), timeout=30)


def pdf_file(tmp_path, text="A resume"):
    path = tmp_path / "resume.pdf"
    path.write_bytes(text_pdf(text))
    return path


async def test_keys_create_prints_a_key_that_authenticates(api, database_url):
    created = await conveyor("keys", "create", "--tenant", "cli-acme", "--database-url", database_url)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("cvk_")
    async with client(api.url, key) as http:
        assert (await http.get("/v1/jobs")).status_code == 200


async def test_keys_list_and_revoke(api, database_url):
    env = {"DATABASE_URL": database_url}
    kept, revoked = [(await conveyor("keys", "create", "-t", "cli-revoke", **env)).stdout.split()[-1] for _ in range(2)]
    listed = await conveyor("keys", "list", "--tenant", "cli-revoke", "--json", **env)
    assert [entry["prefix"] for entry in json.loads(listed.stdout)] == [kept[:12], revoked[:12]]
    assert all(entry["revoked_at"] is None for entry in json.loads(listed.stdout))
    created_at = json.loads(listed.stdout)[0]["created_at"]
    assert datetime.fromisoformat(created_at).tzinfo is not None and "T" in created_at, "ISO 8601 with an offset"

    result = await conveyor("keys", "revoke", "--tenant", "cli-revoke", revoked[:12], **env)
    assert result.exit_code == 0, result.output
    async with client(api.url, revoked) as http:
        assert (await http.get("/v1/jobs")).status_code == 401
    async with client(api.url, kept) as http:
        assert (await http.get("/v1/jobs")).status_code == 200
    table = await conveyor("keys", "list", "--tenant", "cli-revoke", **env)
    assert kept[:12] in table.stdout and revoked[:12] in table.stdout

    async def last_used() -> dict[str, str | None]:
        listed = await conveyor("keys", "list", "--tenant", "cli-revoke", "--json", **env)
        return {entry["prefix"]: entry["last_used_at"] for entry in json.loads(listed.stdout)}

    async def kept_used() -> str | None:
        return (await last_used())[kept[:12]]

    stamp = await until(kept_used)
    assert datetime.fromisoformat(stamp).tzinfo is not None, "ISO 8601 with an offset"
    assert created_at in table.stdout and "last_used_at" in table.stdout
    again = await conveyor("keys", "revoke", "--tenant", "cli-revoke", revoked[:12], **env)
    assert again.exit_code == 1 and "no active key" in again.stderr


async def test_keys_for_an_unknown_tenant_or_database_are_readable_errors(database_url, tmp_path):
    unknown = await conveyor("keys", "list", "--tenant", "nobody-here", DATABASE_URL=database_url)
    assert unknown.exit_code == 1 and "no tenant named 'nobody-here'" in unknown.stderr
    nowhere = await conveyor("keys", "create", "--tenant", "x", "--data-dir", str(tmp_path / "none"))
    assert nowhere.exit_code == 1 and "DATABASE_URL is not set" in nowhere.stderr
    down = await conveyor("keys", "create", "--tenant", "x", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert down.exit_code == 1 and "cannot connect to the database" in down.stderr
    for result in (unknown, nowhere, down):
        assert_no_traceback(result)


async def test_webhook_secret_is_created_once(database_url):
    first = await conveyor("webhooks", "secret", "--tenant", "cli-hooks", DATABASE_URL=database_url)
    second = await conveyor("webhooks", "secret", "--tenant", "cli-hooks", DATABASE_URL=database_url)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout.startswith("whsec_") and first.stdout == second.stdout


async def test_submit_wait_shows_the_bar_reaching_100_percent(api, settings, tenant, tmp_path):
    path = pdf_file(tmp_path)
    async with running_worker(settings, [quick_pipeline()]):
        result = await conveyor(
            "submit", str(path), "--wait", "--metadata", '{"post": 7}', CONVEYOR_URL=api.url, CONVEYOR_API_KEY=tenant[1]
        )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[0]
    assert re.search(rf"document {job_id[:8]} succeeded .*100%", result.stderr), result.stderr
    async with client(api.url, tenant[1]) as http:
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "succeeded" and job["metadata"] == {"post": 7}
    assert job["result"] == {"size": path.stat().st_size}


async def test_submit_wait_exits_non_zero_when_the_job_fails(api, settings, tenant, tmp_path):
    async with running_worker(settings, [failing_pipeline()]):
        result = await conveyor(
            "submit", str(pdf_file(tmp_path)), "--wait", "--json", "--url", api.url, "--key", tenant[1]
        )
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["status"] == "failed"
    assert "not_a_resume: this PDF is not a resume" in result.stderr
    assert_no_traceback(result)


async def test_submit_refuses_what_is_not_a_document_or_video(api, tenant, tmp_path):
    text = tmp_path / "notes.pdf"
    text.write_text("just words, whatever the name says")
    wrong_type = await conveyor("submit", str(text), "--url", api.url, "--key", tenant[1])
    assert wrong_type.exit_code == 2 and "is not a PDF" in wrong_type.stderr
    bad_metadata = await conveyor(
        "submit", str(pdf_file(tmp_path)), "--metadata", "[1]", "--url", api.url, "--key", tenant[1]
    )
    assert bad_metadata.exit_code == 2 and "JSON object" in bad_metadata.stderr


async def test_api_errors_are_one_readable_line(api, tmp_path):
    path = str(pdf_file(tmp_path))
    bad_key = await conveyor("submit", path, "--url", api.url, "--key", "cvk_wrong")
    assert bad_key.exit_code == 1 and "401" in bad_key.stderr
    no_key = await conveyor("jobs", "list", "--url", api.url)
    assert no_key.exit_code == 1 and "no API key" in no_key.stderr
    unreachable = await conveyor("jobs", "list", "--url", "http://127.0.0.1:1", "--key", "cvk_x")
    assert unreachable.exit_code == 1 and "cannot reach the API" in unreachable.stderr
    for result in (bad_key, no_key, unreachable):
        assert_no_traceback(result)


async def test_jobs_list_show_cancel_retry(api, tenant):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1]}
    async with client(api.url, tenant[1]) as http:
        job_id = (await http.post("/v1/documents", files=multipart_file(text_pdf("queued")))).json()["id"]

    listed = await conveyor("jobs", "list", "--status", "queued", "--json", **env)
    assert job_id in [item["id"] for item in json.loads(listed.stdout)["items"]]
    table = await conveyor("jobs", "list", **env)
    assert table.exit_code == 0 and "document" in table.stdout
    shown = await conveyor("jobs", "show", job_id, **env)
    assert shown.exit_code == 0 and job_id in shown.stdout and "queued" in shown.stdout

    not_retryable = await conveyor("jobs", "retry", job_id, **env)
    assert not_retryable.exit_code == 1 and "409" in not_retryable.stderr
    cancelled = await conveyor("jobs", "cancel", job_id, **env)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"{job_id} cancelled"
    retried = await conveyor("jobs", "retry", job_id, "--json", **env)
    assert retried.exit_code == 0 and json.loads(retried.stdout)["status"] == "queued"
    missing = await conveyor("jobs", "show", "00000000-0000-0000-0000-000000000000", **env)
    assert missing.exit_code == 1 and "404" in missing.stderr


async def _heartbeat_of(r, worker_id: str) -> bool:
    return any(state["id"] == worker_id for state in await live_workers(r))


async def test_workers_and_queues_read_redis(api, settings, tenant):
    async with running_worker(settings, [quick_pipeline()]) as worker:
        worker_id = (await until(lambda: worker.worker.ctx.get("resources"))).worker_id  # started
        async with redis.from_url(settings.redis_url) as r:
            await until(lambda: _heartbeat_of(r, worker_id))
        workers = await conveyor("workers", "--json", REDIS_URL=settings.redis_url)
        ids = {entry["id"]: entry for entry in json.loads(workers.stdout)}
        mine = [entry for entry in ids.values() if entry.get("queue") == settings.queue_name]
        assert len(mine) == 1 and mine[0]["alive"], workers.stdout
        assert mine[0]["id"] == worker_id

    async with client(api.url, tenant[1]) as http:
        for _ in range(2):
            await http.post("/v1/documents", files=multipart_file(text_pdf("waits")))
    queues = await conveyor("queues", "--queue", settings.queue_name, "--json", REDIS_URL=settings.redis_url)
    [row] = json.loads(queues.stdout)
    assert row["name"] == settings.queue_name and row["queued"] == 2 and row["oldest_age"] >= 0
    table = await conveyor("queues", "--queue", settings.queue_name, REDIS_URL=settings.redis_url)
    assert table.exit_code == 0 and settings.queue_name in table.stdout


async def test_job_ids_round_trip_from_lists_to_jobs_show(api, settings, tenant):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1], "COLUMNS": "200"}
    async with client(api.url, tenant[1]) as http:
        job_id = (await http.post("/v1/documents", files=multipart_file(text_pdf("short")))).json()["id"]
    listed = await conveyor("jobs", "list", **env)
    assert re.search(rf"│ {job_id[:8]}\s+│ document", listed.stdout) and job_id not in listed.stdout, listed.stdout
    shown = await conveyor("jobs", "show", job_id[:8], **env)
    assert shown.exit_code == 0 and job_id in shown.stdout, shown.output
    cancelled = await conveyor("jobs", "cancel", job_id[:8], **env)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"{job_id} cancelled"

    shared = uuid.uuid4().hex[:8]
    twins = ids_starting(shared, 2)
    await insert_jobs(settings, tenant[0], twins)
    ambiguous = await conveyor("jobs", "show", shared, **env)
    assert ambiguous.exit_code == 1 and f"2 jobs have ids starting with '{shared}'" in ambiguous.stderr
    assert all(str(twin) in ambiguous.stderr for twin in twins), ambiguous.stderr
    longer = await conveyor("jobs", "show", str(twins[1])[:13], "--json", **env)
    assert longer.exit_code == 0 and json.loads(longer.stdout)["id"] == str(twins[1])
    unknown = await conveyor("jobs", "show", uuid.uuid4().hex[:10], **env)
    assert unknown.exit_code == 1 and "no job found whose id starts with" in unknown.stderr
    malformed = await conveyor("jobs", "retry", "xyz", **env)
    assert malformed.exit_code == 1 and "must be the start of a job id" in malformed.stderr
    for result in (ambiguous, unknown, malformed):
        assert_no_traceback(result)


async def _long_result(run, input):
    return {"text": LONG_TEXT, "pages": 40, "skills": [f"skill {n}" for n in range(50)]}


async def test_jobs_show_cuts_a_long_result_short_unless_full(api, settings, tenant):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1], "COLUMNS": "200"}
    async with running_worker(settings, [Pipeline("document", (Stage("read", _long_result),), timeout=30)]):
        async with client(api.url, tenant[1]) as http:
            job_id = (await http.post("/v1/documents", files=multipart_file(text_pdf("long")))).json()["id"]
            await wait_for_job(http, job_id)
    short = await conveyor("jobs", "show", job_id[:8], **env)
    assert short.exit_code == 0, short.output
    assert re.search(r"^  text\s+line 0: words", short.stdout, re.MULTILINE), short.stdout
    assert re.search(r"^\s+line 7: words", short.stdout, re.MULTILINE) and "line 8:" not in short.stdout
    assert f"… {len(LONG_TEXT):,} characters, --full to see all" in short.stdout
    assert '"skill 19"' in short.stdout and '"skill 20"' not in short.stdout
    assert "… 30 more of 50 items, --full to see all" in short.stdout
    assert re.search(r"^  pages\s+40\s*$", short.stdout, re.MULTILINE) and len(short.stdout) < 6000
    full = await conveyor("jobs", "show", job_id[:8], "--full", **env)
    assert full.exit_code == 0 and "line 999: words" in full.stdout and '"skill 49"' in full.stdout
    assert "--full to see all" not in full.stdout
    as_json = await conveyor("jobs", "show", job_id, "--json", **env)
    assert json.loads(as_json.stdout)["result"]["text"] == LONG_TEXT


async def test_jobs_retry_and_cancel_by_filter(api, tenant):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1]}
    async with client(api.url, tenant[1]) as http:
        ids = [(await http.post("/v1/documents", files=multipart_file(text_pdf("q")))).json()["id"] for _ in range(2)]

    counted = await conveyor("jobs", "cancel", "--kind", "document", "--dry-run", **env)
    assert counted.exit_code == 0 and counted.stdout.strip() == "2 jobs would be cancelled"
    cancelled = await conveyor("jobs", "cancel", "--kind", "document", "--status", "queued", **env)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "2 matched, 2 cancelled"
    retried = await conveyor("jobs", "retry", "--kind", "document", "--json", **env)
    assert retried.exit_code == 0 and json.loads(retried.stdout) == {"matched": 2, "changed": 2}
    refused = await conveyor("jobs", "retry", "--status", "queued", **env)
    assert refused.exit_code == 1 and "422" in refused.stderr and "status" in refused.stderr
    both = await conveyor("jobs", "cancel", ids[0], "--kind", "document", **env)
    assert both.exit_code == 1 and "not both" in both.stderr
    neither = await conveyor("jobs", "cancel", **env)
    assert neither.exit_code == 1 and "filter options" in neither.stderr


async def test_schedules_list_pause_resume(api, settings, tenant):
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1]}
    await publish_kinds(settings, sample_kinds.noop.describe(settings))
    async with client(api.url, tenant[1]) as http:
        body = {"name": "nightly", "kind": "noop", "input": {}, "cron": "0 3 * * *", "timezone": "Europe/Paris"}
        made = (await http.post("/v1/schedules", json=body)).json()
        try:
            listed = await conveyor("schedules", "list", "--json", **env)
            table = await conveyor("schedules", "list", **env)
            paused = await conveyor("schedules", "pause", made["id"][:8], **env)
            paused_table = await conveyor("schedules", "list", **env)
            resumed = await conveyor("schedules", "resume", made["id"], "--json", **env)
            missing = await conveyor("schedules", "pause", "00000000", **env)
        finally:
            await http.delete(f"/v1/schedules/{made['id']}")
    assert [item["id"] for item in json.loads(listed.stdout)["items"]] == [made["id"]]
    assert table.exit_code == 0 and "nightly" in table.stdout and made["id"][:8] in table.stdout
    assert paused.exit_code == 0 and paused.stdout.strip() == f"{made['id']} paused" and "paused" in paused_table.stdout
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["next_runs"] == made["next_runs"]
    assert missing.exit_code == 1 and "no schedules have ids starting with '00000000'" in missing.stderr
