"""The `conveyor` CLI's live and operator commands against a real PostgreSQL, Redis,
uvicorn and arq worker: `submit --wait` over the event stream, `stats`, `jobs purge`
and `watch`."""

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from conveyor.kinds import Pipeline, Stage
from pipelines.analytics.aggregate import aggregate
from service import ledger, queue
from service.cli import app
from service.databases.database import Database
from service.queue.heartbeats import live_workers
from service.storage import job_prefix, open_storage
from testkit.files import multipart_file, text_pdf
from testkit.service import ApiServer, client, new_tenant, running_worker
from tests.test_cli import CLEAN_ENV, assert_no_traceback, conveyor, pdf_file

WIDE = {"COLUMNS": "200"}  # so rich does not fold ids in tables


class RequestLog:
    """ASGI middleware in front of the real app: notes each request and the status of each
    answer; with `refuse_events`, answers event streams with 502, as a proxy that does not
    pass them on would."""

    def __init__(self, app, *, refuse_events: bool = False) -> None:
        self.app = app
        self.refuse_events = refuse_events
        self.requests: list[tuple[str, str]] = []
        self.answers: list[tuple[str, str, int]] = []
        self.events_asked = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
            if scope["path"].endswith("/events"):
                self.events_asked.set()
            if self.refuse_events and scope["path"].endswith("/events"):
                await send(
                    {"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"bad gateway"})
                return

            async def noting(message) -> None:
                if message["type"] == "http.response.start":
                    self.answers.append((scope["method"], scope["path"], message["status"]))
                await send(message)

            await self.app(scope, receive, noting)
            return
        await self.app(scope, receive, send)

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))


def _logged_api(settings, **options):
    server = ApiServer(settings)
    log = RequestLog(server.server.config.app, **options)
    server.server.config.app = log
    return server, log


async def _submit_and_wait(settings, tenant, tmp_path, **options):
    server, log = _logged_api(settings, **options)
    async with server, running_worker(settings, [two_stage_pipeline(log.events_asked)]):
        result = await conveyor(
            "submit", str(pdf_file(tmp_path)), "--wait", CONVEYOR_URL=server.url, CONVEYOR_API_KEY=tenant[1]
        )
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip().splitlines()[0]
    assert re.search(rf"document {job_id[:8]} succeeded .*100%", result.stderr), result.stderr
    return job_id, log


def two_stage_pipeline(events_asked: asyncio.Event) -> Pipeline:
    """Its job starts moving once the CLI asked for its events, so they come live."""

    async def store(run, input):
        await events_asked.wait()
        await run.progress(0.5)
        return {}

    async def read(run, input):
        await run.progress(0.5)
        return {"read": True}

    return Pipeline("document", (Stage("store", store), Stage("read", read)), timeout=30)


async def test_submit_wait_follows_the_event_stream(settings, tenant, tmp_path):
    job_id, log = await _submit_and_wait(settings, tenant, tmp_path)
    assert log.count("GET", f"/v1/jobs/{job_id}/events") == 1
    # One read of the job, after the stream's final event: no polling.
    assert log.count("GET", f"/v1/jobs/{job_id}") == 1


async def test_submit_wait_polls_when_the_stream_is_refused(settings, tenant, tmp_path):
    job_id, log = await _submit_and_wait(settings, tenant, tmp_path, refuse_events=True)
    assert log.count("GET", f"/v1/jobs/{job_id}/events") == 1  # tried once, then polled to the end
    assert log.count("GET", f"/v1/jobs/{job_id}") >= 1


async def forget_aggregation_schedules(settings) -> None:
    """As before any worker recorded them: /v1/stats then follows the settings. (Workers of
    other tests in this process may have recorded them, as their own settings said.)"""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM schedules WHERE builtin LIKE 'aggregate_%'")
    finally:
        await db.close()


async def test_stats_shows_the_aggregated_counts(api, settings, tenant):
    await forget_aggregation_schedules(settings)
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    noon_yesterday = datetime.combine(yesterday, datetime.min.time(), UTC) + timedelta(hours=12)
    events = [
        {"type": "signup"},
        {"type": "signup"},
        {"type": "page_view"},
        {"type": "page_view", "ts": noon_yesterday.isoformat()},
    ]
    async with client(api.url, tenant[1]) as http:
        assert (await http.post("/v1/events", json={"events": events})).status_code == 202
    db = Database(settings)
    await db.open()
    try:
        await aggregate(db, yesterday, today)
    finally:
        await db.close()
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": tenant[1]}

    everything = await conveyor("stats", "--from", yesterday.isoformat(), "--json", **env)
    assert everything.exit_code == 0, everything.output
    body = json.loads(everything.stdout)
    next_count = datetime.fromisoformat(body.pop("next_aggregation_at"))
    assert body == {
        "from": yesterday.isoformat(),
        "to": today.isoformat(),
        "items": [
            {"day": yesterday.isoformat(), "type": "page_view", "count": 1},
            {"day": today.isoformat(), "type": "page_view", "count": 1},
            {"day": today.isoformat(), "type": "signup", "count": 2},
        ],
    }
    # The defaults: hourly at :05, daily at 00:20 (UTC), whichever comes first.
    assert timedelta(0) < next_count - datetime.now(UTC) <= timedelta(hours=1)
    assert (next_count.minute, next_count.second) in {(5, 0), (20, 0)}
    signups = await conveyor("stats", "--type", "signup", **env, **WIDE)
    assert signups.exit_code == 0, signups.output
    assert re.search(rf"{today.isoformat()}\s*│\s*signup\s*│\s*2", signups.stdout), signups.stdout
    assert "page_view" not in signups.stdout
    when = f"{next_count:%Y-%m-%d %H:%M} UTC"
    assert f"events are counted next at {when}" in signups.stdout
    none = await conveyor("stats", "--type", "nothing-like-this", **env, **WIDE)
    assert none.exit_code == 0, none.output
    first = (today - timedelta(days=29)).isoformat()
    assert f"no events counted from {first} to {today} yet: events are counted next at {when} (in " in none.stderr
    bad_day = await conveyor("stats", "--from", "2024-13-01", **env)
    assert bad_day.exit_code == 2 and "2024-13-01" in bad_day.output
    backwards = await conveyor("stats", "--from", today.isoformat(), "--to", yesterday.isoformat(), **env)
    assert backwards.exit_code == 1 and "to must not be before from" in backwards.stderr
    assert_no_traceback(backwards)


async def test_stats_says_when_counting_is_off(settings, tenant):
    await forget_aggregation_schedules(settings)
    off = settings.model_copy(update={"schedule_aggregate_hourly": "off", "schedule_aggregate_daily": "off"})
    async with ApiServer(off) as server:
        env = {"CONVEYOR_URL": server.url, "CONVEYOR_API_KEY": tenant[1], **WIDE}
        body = json.loads((await conveyor("stats", "--json", **env)).stdout)
        result = await conveyor("stats", **env)
    assert body["next_aggregation_at"] is None and body["items"] == []
    assert result.exit_code == 0, result.output
    assert "yet: event counting is off (SCHEDULE_AGGREGATE_HOURLY and SCHEDULE_AGGREGATE_DAILY)" in result.stderr


async def test_stats_follow_the_aggregation_schedules_as_the_ledger_has_them(api, settings, tenant):
    """An admin's change to a built-in schedule (`/v1/schedules`) shows in /v1/stats: the
    ledger's rows, not this API's settings, say when events are next counted."""
    await forget_aggregation_schedules(settings)
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            system = await ledger.schedules.system_tenant(conn)
            now = datetime.now(UTC)
            for name in ("aggregate_hourly", "aggregate_daily"):
                await ledger.schedules.seed(conn, system.id, name, f"conveyor.{name}", "every 10m", now)
            await conn.execute(  # as an admin's PATCH of each would
                "UPDATE schedules SET next_run_at = now() + CASE builtin WHEN 'aggregate_daily'"
                " THEN interval '3 minutes' ELSE interval '20 minutes' END WHERE builtin LIKE 'aggregate_%'"
            )
            daily_at = await conn.fetchval("SELECT next_run_at FROM schedules WHERE builtin = 'aggregate_daily'")
        async with client(api.url, tenant[1]) as http:
            changed = (await http.get("/v1/stats")).json()["next_aggregation_at"]
            async with db.transaction() as conn:
                await conn.execute("UPDATE schedules SET paused = true WHERE builtin LIKE 'aggregate_%'")
            paused = (await http.get("/v1/stats")).json()["next_aggregation_at"]
    finally:
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM schedules WHERE builtin LIKE 'aggregate_%'")  # back to the settings
        await db.close()
    assert datetime.fromisoformat(changed) == daily_at  # the earlier of the two, not the settings' :05
    assert paused is None


async def _stored_job(conn, storage, tenant_id, *, finished_days_ago: int | None) -> uuid.UUID:
    job_id = ledger.new_job_id()
    await ledger.create_job(conn, job_id=job_id, tenant_id=tenant_id, kind="document", queue="q")
    if finished_days_ago is None:
        await conn.execute("UPDATE jobs SET created_at = now() - interval '400 days' WHERE id = $1", job_id)
    else:
        await conn.execute(
            "UPDATE jobs SET status = 'succeeded', finished_at = now() - make_interval(days => $2) WHERE id = $1",
            job_id,
            finished_days_ago,
        )
    writer = storage.writer(f"{job_prefix(tenant_id, job_id)}original")
    await writer.write(b"%PDF-")
    await writer.commit()
    return job_id


async def purge(*args: str, input: str | None = None, **env: str):
    return await asyncio.to_thread(
        CliRunner().invoke, app, ["jobs", "purge", *args], input=input, env={**CLEAN_ENV, **env}
    )


async def test_purge_deletes_old_finished_jobs_and_their_files_only(settings):
    name = f"purge-{uuid.uuid4().hex[:8]}"
    tenant_id, _ = await new_tenant(settings, name)
    other_id, _ = await new_tenant(settings)
    storage = open_storage(settings.storage_url)
    db = Database(settings)
    await db.open()
    async with db.transaction() as conn:
        old = [await _stored_job(conn, storage, tenant_id, finished_days_ago=40 + n) for n in range(2)]
        recent = await _stored_job(conn, storage, tenant_id, finished_days_ago=5)
        unfinished = await _stored_job(conn, storage, tenant_id, finished_days_ago=None)
        others = await _stored_job(conn, storage, other_id, finished_days_ago=40)
    env = {"DATABASE_URL": settings.database_url, "STORAGE_URL": settings.storage_url}

    async def remaining() -> set[uuid.UUID]:
        async with db.read() as conn:
            rows = await conn.fetch(
                "SELECT id FROM jobs WHERE id = ANY($1::uuid[])", [*old, recent, unfinished, others]
            )
        return {row["id"] for row in rows}

    async def has_files(tenant, job_id) -> bool:
        return await storage.size(f"{job_prefix(tenant, job_id)}original") is not None

    try:
        dry = await purge("--older-than", "30", "--tenant", name, "--dry-run", "--json", **env)
        assert dry.exit_code == 0, dry.output
        assert json.loads(dry.stdout) == {
            "older_than_days": 30,
            "tenant": name,
            "dry_run": True,
            "matched": {"succeeded": 2},
            "deleted": 0,
        }
        default_days = await purge("--tenant", name, "--dry-run", JOB_RETENTION_DAYS="3", **env)
        assert default_days.stdout.startswith("would delete 3 jobs (3 succeeded)"), default_days.output
        declined = await purge("--older-than", "30", "--tenant", name, input="n\n", **env)
        assert declined.exit_code == 1 and "Delete 2 jobs (2 succeeded)" in declined.output
        assert await remaining() == {*old, recent, unfinished, others}

        done = await purge("--older-than", "30", "--tenant", name, "--yes", **env)
        assert done.exit_code == 0, done.output
        assert done.stdout.strip() == f"deleted 2 jobs of tenant {name!r} finished more than 30 days ago"
        assert await remaining() == {recent, unfinished, others}
        assert [await has_files(tenant_id, job_id) for job_id in old] == [False, False]
        assert await has_files(tenant_id, recent) and await has_files(tenant_id, unfinished)
        assert await has_files(other_id, others)

        again = await purge("--older-than", "30", "--tenant", name, "--json", **env)
        assert json.loads(again.stdout)["matched"] == {} and json.loads(again.stdout)["deleted"] == 0
        unknown = await purge("--tenant", "nobody-at-all", "--dry-run", **env)
        assert unknown.exit_code == 1 and "no tenant named 'nobody-at-all'" in unknown.stderr
        assert_no_traceback(unknown)
    finally:
        await db.close()


@pytest.fixture
async def held():
    """Set by the end of the test: jobs waiting on it run until then."""
    release = asyncio.Event()
    yield release
    release.set()


async def test_watch_once_shows_the_queue_a_live_worker_and_recent_jobs(api, settings, held):
    name = f"watch-{uuid.uuid4().hex[:8]}"
    _, key = await new_tenant(settings, name)

    async def hold(run, input):
        await held.wait()
        return {}

    one_at_a_time = settings.model_copy(update={"worker_max_jobs": 1})
    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_NAME": settings.queue_name,
        **WIDE,
    }
    hold_pipeline = Pipeline("document", (Stage("hold", hold),), timeout=30)
    # No scheduler: its periodic jobs would queue up behind the held one.
    async with running_worker(one_at_a_time, [hold_pipeline], scheduler=False) as worker:
        async with client(api.url, key) as http:
            submitted = {
                (await http.post("/v1/documents", files=multipart_file(text_pdf(text)))).json()["id"]
                for text in ("one", "two")
            }
        redis = queue.connect(settings.redis_url)
        try:
            worker_id = worker.worker.ctx["resources"].worker_id
            for _ in range(200):
                mine = [state for state in await live_workers(redis) if state["id"] == worker_id]
                if mine and len(mine[0].get("jobs", ())) == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the worker never reported running a job")
        finally:
            await redis.aclose()
        [running] = mine[0]["jobs"]
        [waiting] = submitted - {running}

        snapshot = await conveyor("watch", "--json", **env)
        frame = await conveyor("watch", "--once", "--tenant", name, **env)
        held.set()

    assert snapshot.exit_code == 0, snapshot.output
    view = json.loads(snapshot.stdout)
    [row] = [row for row in view["queues"] if row["name"] == settings.queue_name]
    assert (row["queued"], row["running"]) == (1, 1) and row["oldest_age"] >= 0
    [shown] = [entry for entry in view["workers"] if entry["id"] == worker_id]
    assert shown["jobs"] == [running] and shown["queue"] == settings.queue_name

    assert frame.exit_code == 0, frame.output
    text = frame.stdout
    assert re.search(rf"{re.escape(settings.queue_name)}\s*│\s*1\s*│\s*1\s*│\s*0\s*│", text), text
    assert re.search(rf"{re.escape(worker_id)}\s*│\s*{re.escape(settings.queue_name)}\s*│\s*{running[:8]}", text), text
    recent = text.split("Recent jobs of")[1]
    newest_first = [job for job in view["recent"] if job["id"] in submitted]
    assert newest_first[0]["created_at"] >= newest_first[1]["created_at"]
    assert sorted((job_id[:8] for job_id in submitted), key=recent.index) == [job["id"][:8] for job in newest_first]
    assert re.search(rf"{waiting[:8]}\s*│.*│\s*document\s*│\s*queued", recent), recent


def _header(table: str) -> list[str]:
    """The column names of the first rich table in `table`."""
    line = next(line for line in table.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


async def test_queues_watch_and_the_dashboard_name_the_queue_numbers_alike(settings):
    admin_key = "admin-key-for-the-words-test-0123"
    async with ApiServer(settings.model_copy(update={"admin_key": SecretStr(admin_key)})) as server:
        async with client(server.url, admin_key) as http:
            page = await http.get("/dashboard/")
            feed = (await http.get("/dashboard/api/overview")).json()
            script = (await http.get("/dashboard/static/dashboard.js")).text
    assert page.status_code == 200, page.text
    table = page.text.split('<table id="queues">')[1].split("</table>")[0]
    dashboard = [name.lower() for name in re.findall(r"<th>([^<]+)</th>", table)]
    # The rows the page is served with and those its script redraws every 2 s: cells in the same order.
    served = re.findall(r'<td class="(\w+)"', table.split(f'data-queue="{settings.queue_name}"')[1].split("</tr>")[0])
    redrawn = re.findall(r'class: "(\w+)"', script.split("function queueRow")[1].split("function ")[0])
    assert served == redrawn == ["queued", "running", "scheduled", "oldest"]

    env = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_NAME": settings.queue_name,
        **WIDE,
    }
    queues = await conveyor("queues", **env)
    watch = await conveyor("watch", "--once", **env)
    queues_json = await conveyor("queues", "--json", **env)
    watch_json = await conveyor("watch", "--json", **env)
    assert queues.exit_code == watch.exit_code == 0, queues.output + watch.output
    words = ["queue", "queued", "running", "scheduled", "oldest queued"]
    assert _header(queues.stdout) == _header(watch.stdout.split("Queues")[1]) == dashboard == words

    fields = {"name", "queued", "running", "scheduled", "oldest_age"}
    assert set(json.loads(queues_json.stdout)[0]) == set(json.loads(watch_json.stdout)["queues"][0]) == fields
    assert set(feed["queues"][0]) == fields
