"""Schedules of the users' own (`/v1/schedules`) over the real API, workers, PostgreSQL
and Redis: each tick one job carrying `metadata.schedule_id` whatever the number of
workers, overlap `skip`, pause and resume, one catch-up job after an outage. The kinds
are testkit/sample_kinds.py's; when ticks fall is tested purely in test_schedule_times.py."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service import queue
from service.databases.database import Database
from service.ledger import schedules
from service.queue.heartbeats import live_workers
from testkit import sample_kinds
from testkit.processes import WorkerProcess, settings_env
from testkit.service import client, new_tenant, publish_kinds, running_worker, until
from tests.test_kinds import KINDS, kinds_settings, sample_pipelines

NOOP_EVERY_SECOND = {"name": "tick", "kind": "noop", "input": {}, "every": 1}
RACERS = 5  # transactions firing one tick at once


@pytest.fixture
async def ledger_db(settings):
    db = Database(settings)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def owner(settings, tenant, ledger_db):
    """A tenant whose schedules are deleted after the test, so no later test's workers fire them."""
    yield tenant
    async with ledger_db.transaction() as conn:
        await conn.execute("DELETE FROM schedules WHERE tenant_id = $1", tenant[0])


async def jobs_per_tick(db: Database, schedule_id: str) -> dict[str, list[str]]:
    """The statuses of the schedule's jobs, by the tick that made them."""
    async with db.write() as conn:
        rows = await conn.fetch(
            "SELECT metadata->>'tick' AS tick, status FROM jobs WHERE metadata->>'schedule_id' = $1", schedule_id
        )
    ticks: dict[str, list[str]] = {}
    for row in rows:
        ticks.setdefault(row["tick"], []).append(row["status"])
    return ticks


async def create(http, body: dict) -> dict:
    response = await http.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_read_change_list_and_delete_a_schedule(api, settings, owner):
    await publish_kinds(settings, sample_kinds.greet.describe(settings))
    async with client(api.url, owner[1]) as http:
        made = await create(
            http,
            {
                "name": "hello",
                "kind": "greet",
                "input": {"name": "Ada"},
                "cron": "30 2 * * *",
                "timezone": "America/New_York",
            },
        )
        read = (await http.get(f"/v1/schedules/{made['id']}")).json()
        listed = (await http.get("/v1/schedules")).json()["items"]
        paused = await http.patch(f"/v1/schedules/{made['id']}", json={"paused": True})
        to_every = await http.patch(f"/v1/schedules/{made['id']}", json={"every": 90, "paused": False})
        stranger = (await new_tenant(settings))[1]
        others = await http.get(f"/v1/schedules/{made['id']}", headers={"Authorization": f"Bearer {stranger}"})
        deleted = await http.delete(f"/v1/schedules/{made['id']}")
        gone = await http.get(f"/v1/schedules/{made['id']}")
        malformed = await http.get("/v1/schedules/not-an-id")
    assert made["name"] == "hello" and made["kind"] == "greet" and made["input"] == {"name": "Ada"}
    assert made["overlap"] == "skip" and made["paused"] is False and made["every"] is None
    assert len(made["next_runs"]) == 3
    for run in made["next_runs"]:
        moment = datetime.fromisoformat(run)
        assert (moment.hour, moment.minute) in ((2, 30), (3, 0))  # wall-clock time in New York
        assert moment > datetime.now(UTC)
    assert made["last_run_at"] is None and made["last_job_id"] is None and made["last_status"] is None
    assert read == made and [item["id"] for item in listed] == [made["id"]]
    assert paused.status_code == 200 and paused.json()["paused"] is True and paused.json()["next_runs"] == []
    changed = to_every.json()
    assert to_every.status_code == 200 and changed["cron"] is None and changed["every"] == 90
    first, second, third = (datetime.fromisoformat(run) for run in changed["next_runs"])
    assert (second - first).total_seconds() == (third - second).total_seconds() == 90
    assert others.status_code == 404  # another tenant's schedule is not there for it
    assert deleted.status_code == 204 and gone.status_code == 404 and malformed.status_code == 404


GREETING = {"name": "hello", "kind": "greet", "input": {"name": "Ada"}, "every": 60}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"every": None}, "cron"),  # neither cron nor every
        ({"cron": "* * * * *"}, "cron"),  # both
        ({"every": 0}, "every"),
        ({"every": "5"}, "every"),
        ({"cron": "61 * * * *", "every": None}, "cron"),
        ({"cron": "* * * *", "every": None}, "cron"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"input": {"name": 42}}, "input.name"),
        ({"input": {}}, "input.name"),
        ({"overlap": "queue"}, "overlap"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_an_invalid_schedule_is_a_422_naming_its_field(api, settings, owner, change, field):
    await publish_kinds(settings, sample_kinds.greet.describe(settings))
    async with client(api.url, owner[1]) as http:
        refused = await http.post("/v1/schedules", json={**GREETING, **change})
        listed = (await http.get("/v1/schedules")).json()["items"]
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field
    assert listed == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"every": None}, "cron"),  # clears the only cadence
        ({"cron": "* * * * *", "every": 5}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"input": {"name": 42}}, "input.name"),
        ({"name": None}, "name"),
    ],
)
async def test_an_invalid_change_is_a_422_naming_its_field_and_changes_nothing(api, settings, owner, change, field):
    await publish_kinds(settings, sample_kinds.greet.describe(settings))
    async with client(api.url, owner[1]) as http:
        made = await create(http, GREETING)
        refused = await http.patch(f"/v1/schedules/{made['id']}", json=change)
        after = (await http.get(f"/v1/schedules/{made['id']}")).json()
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field
    assert after == made


async def test_each_tick_makes_one_job_however_many_workers(api, settings, owner, ledger_db, tmp_path):
    env = settings_env(kinds_settings(settings), conveyor_kinds=KINDS)
    workers = [
        WorkerProcess(env, tmp_path / f"worker-{n}.log", settings_path="worker.WorkerSettings").start()
        for n in range(2)
    ]
    redis = queue.connect(settings.redis_url)
    try:

        async def both_up() -> bool:
            return len([w for w in await live_workers(redis) if w["queue"] == settings.queue_name]) == 2

        await until(both_up, timeout=60)
        async with client(api.url, owner[1]) as http:
            made = await create(http, {**NOOP_EVERY_SECOND, "overlap": "allow"})  # skip would hide a double

            async def six_ticks() -> dict[str, list[str]] | None:
                ticks = await jobs_per_tick(ledger_db, made["id"])
                return ticks if len(ticks) >= 6 else None

            ticks = await until(six_ticks, timeout=60)
            seen = (await http.get(f"/v1/schedules/{made['id']}")).json()
            last = (await http.get(f"/v1/jobs/{seen['last_job_id']}")).json()
    finally:
        await redis.aclose()
        for worker in workers:
            worker.stop()
    assert all(len(statuses) == 1 for statuses in ticks.values()), ticks  # no tick fired twice
    assert last["metadata"]["schedule_id"] == made["id"] and last["kind"] == "noop"
    assert seen["last_run_at"] is not None and seen["last_status"] in ("queued", "running", "succeeded")


async def test_overlap_skip_waits_for_the_last_job_and_allow_does_not(api, settings, owner, ledger_db, tmp_path):
    held = {"kind": "hold", "input": {"marker": str(tmp_path / "marker")}, "every": 1}
    async with client(api.url, owner[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await until(lambda: _published(http, "hold"), timeout=30)
        skip = await create(http, {"name": "skip", **held})
        allow = await create(http, {"name": "allow", "overlap": "allow", **held})

        async def skipped() -> dict | None:
            seen = (await http.get(f"/v1/schedules/{skip['id']}")).json()
            return seen if seen["last_status"] == "skipped" else None

        seen = await until(skipped, timeout=30)
        allowed = await until(lambda: _ticks_at_least(ledger_db, allow["id"], 3), timeout=30)
        await http.patch(f"/v1/schedules/{allow['id']}", json={"paused": True})
        only = await jobs_per_tick(ledger_db, skip["id"])
        assert (await http.post(f"/v1/jobs/{seen['last_job_id']}/cancel")).status_code == 202
        await until(lambda: _ticks_at_least(ledger_db, skip["id"], 2), timeout=30)  # the held job ended: ticks go on
        await http.patch(f"/v1/schedules/{skip['id']}", json={"paused": True})
        for schedule in (skip, allow):
            async with ledger_db.write() as conn:
                ids = await conn.fetch(
                    "SELECT id FROM jobs WHERE metadata->>'schedule_id' = $1 AND status IN ('queued', 'running')",
                    schedule["id"],
                )
            for row in ids:
                await http.post(f"/v1/jobs/{row['id']}/cancel")
    assert len(only) == 1 and seen["skipped_at"] is not None
    assert sum(len(statuses) for statuses in allowed.values()) >= 3  # held jobs side by side


async def _published(http, kind: str) -> bool:
    return any(item["kind"] == kind for item in (await http.get("/v1/kinds")).json()["items"])


async def _ticks_at_least(db: Database, schedule_id: str, count: int) -> dict[str, list[str]] | None:
    ticks = await jobs_per_tick(db, schedule_id)
    return ticks if len(ticks) >= count else None


async def test_a_paused_schedule_makes_no_jobs_until_resumed(api, settings, owner, ledger_db):
    async with client(api.url, owner[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await until(lambda: _published(http, "noop"), timeout=30)
        paused = await create(http, {**NOOP_EVERY_SECOND, "name": "paused", "paused": True})
        witness = await create(http, {**NOOP_EVERY_SECOND, "name": "witness"})
        await until(lambda: _ticks_at_least(ledger_db, witness["id"], 3), timeout=30)  # the clock went on
        while_paused = await jobs_per_tick(ledger_db, paused["id"])
        resumed = (await http.patch(f"/v1/schedules/{paused['id']}", json={"paused": False})).json()
        after = await until(lambda: _ticks_at_least(ledger_db, paused["id"], 2), timeout=30)
    assert paused["next_runs"] == [] and while_paused == {}
    assert resumed["paused"] is False and len(resumed["next_runs"]) == 3
    assert len(after) >= 2


async def test_after_an_outage_the_missed_ticks_make_one_job(api, settings, owner, ledger_db):
    await publish_kinds(settings, sample_kinds.noop.describe(settings))
    async with client(api.url, owner[1]) as http:
        made = await create(http, {**NOOP_EVERY_SECOND, "every": 60})
        async with ledger_db.transaction() as conn:  # no worker ran for an hour: sixty ticks missed
            await conn.execute(
                "UPDATE schedules SET next_run_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(made["id"])
            )
        async with running_worker(settings, sample_pipelines(settings)):

            async def caught_up() -> dict | None:
                seen = (await http.get(f"/v1/schedules/{made['id']}")).json()
                due = datetime.fromisoformat(seen["next_runs"][0])
                return seen if seen["last_job_id"] and due > datetime.now(UTC) else None

            seen = await until(caught_up, timeout=30)
            ticks = await jobs_per_tick(ledger_db, made["id"])
    assert len(ticks) == 1, ticks  # one catch-up job, not sixty
    assert datetime.fromisoformat(seen["next_runs"][0]) > datetime.now(UTC)
    assert seen["last_run_at"] is not None and datetime.fromisoformat(seen["last_run_at"]) < datetime.now(UTC)


async def test_workers_racing_for_a_tick_make_one_job(api, settings, owner, ledger_db):
    """The ledger decides: however many workers fire the same due tick at once, one job."""
    await publish_kinds(settings, sample_kinds.noop.describe(settings))
    kinds = {"noop": sample_kinds.noop.spec(settings)}
    async with client(api.url, owner[1]) as http:
        made = await create(http, {**NOOP_EVERY_SECOND, "every": 3600, "overlap": "allow"})
    async with ledger_db.transaction() as conn:
        await conn.execute("UPDATE schedules SET next_run_at = now() WHERE id = $1", uuid.UUID(made["id"]))
    now = datetime.now(UTC)
    async with ledger_db.write() as conn:
        (due,) = [row for row in await schedules.due(conn, ["noop"], now, 1000) if str(row["id"]) == made["id"]]

    async def fire() -> object:
        async with ledger_db.transaction() as conn:
            return await schedules.fire(conn, due, due["next_run_at"] + timedelta(hours=1), kinds)

    fired = await asyncio.gather(*(fire() for _ in range(RACERS)))
    assert len([job for job in fired if job is not None]) == 1
    assert len(await jobs_per_tick(ledger_db, made["id"])) == 1


async def test_a_schedule_whose_kind_is_gone_can_still_be_paused(api, settings, owner, ledger_db):
    kind = replace(sample_kinds.noop.describe(settings), name=f"gone_{uuid.uuid4().hex[:8]}")
    await publish_kinds(settings, kind)
    async with client(api.url, owner[1]) as http:
        made = await create(http, {**NOOP_EVERY_SECOND, "kind": kind.name, "every": 3600})
        async with ledger_db.transaction() as conn:  # its workers are gone for good
            await conn.execute("DELETE FROM kinds WHERE name = $1", kind.name)

        async def unknown() -> bool:
            return kind.name not in [item["kind"] for item in (await http.get("/v1/kinds")).json()["items"]]

        await until(unknown)
        paused = await http.patch(f"/v1/schedules/{made['id']}", json={"paused": True})
        renamed = await http.patch(f"/v1/schedules/{made['id']}", json={"input": {"again": True}})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert renamed.status_code == 422 and renamed.json()["field"] == "kind"
