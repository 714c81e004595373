"""The built-in schedules' work: their settings' cadences, reminders and expiring
memberships becoming notification jobs exactly once, and each tick of a built-in schedule
running once across two workers (their rows and the API: tests/test_builtin_schedules.py)."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as redis
from pydantic import SecretStr

from pipelines import schedule
from pipelines.scheduled.memberships import notify_expiring_memberships
from pipelines.scheduled.reminders import send_due_reminders
from service.config import ConfigurationError, cadence_fields, load_settings
from testkit.resources import open_resources
from testkit.service import ADMIN_KEY, client, make_settings, running_worker, until
from tests.test_builtin_schedules import builtins  # noqa: F401 (a fixture)

PROBLEM = "application/problem+json"
NOTIFICATION_QUEUE = "conveyor-test-notifications-nobody-serves"
REMINDERS_KIND = f"{schedule.KIND_PREFIX}reminders"


def test_settings_name_cadences_in_utc():
    assert cadence_fields("every 2s") == {"every": 2}
    assert cadence_fields("every 5m") == {"cron": "*/5 * * * *"}
    assert cadence_fields("every 60m") == {"cron": "0 * * * *"}
    assert cadence_fields("hourly :05") == {"cron": "5 * * * *"}
    assert cadence_fields("Daily 03:30") == {"cron": "30 3 * * *"}
    assert cadence_fields("off") is None
    for bad in ("every 7s", "every 0m", "hourly :60", "daily 24:00", "sometimes", ""):
        with pytest.raises(ValueError):
            cadence_fields(bad)
    with pytest.raises(ConfigurationError, match="SCHEDULE_REMINDERS"):
        load_settings(schedule_reminders="every 7s")


@pytest.fixture
def settings(database_url, redis_server, tmp_path):
    """Notification jobs go to a queue no test worker serves: they are only counted here."""
    return make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        queue_name=f"conveyor-test-{time.time_ns()}",
        kind_queues=f"notification={NOTIFICATION_QUEUE}",
        smtp_url="smtp://127.0.0.1:2525",
        admin_key=SecretStr(ADMIN_KEY),
    )


def _ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


async def _remind(http, due_at: str, **fields) -> dict:
    body = {
        "due_at": due_at,
        "channel": "email",
        "to": "ada@example.com",
        "template": "welcome",
        "data": {"name": "Ada"},
        **fields,
    }
    response = await http.post("/v1/reminders", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _notification_jobs(database_url: str, tenant_id) -> list[dict]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, queue, max_tries, payload::text, metadata::text FROM jobs"
            " WHERE tenant_id = $1 AND kind = 'notification'",
            tenant_id,
        )
    finally:
        await conn.close()
    return [
        {
            "id": row["id"],
            "queue": row["queue"],
            "max_tries": row["max_tries"],
            "payload": json.loads(row["payload"]),
            "metadata": json.loads(row["metadata"]),
        }
        for row in rows
    ]


async def test_reminders_are_checked_when_created(api, tenant):
    async with client(api.url, tenant[1]) as http:
        template = await http.post(
            "/v1/reminders", json={"due_at": _ago(), "channel": "email", "to": "a@b.c", "template": "nope", "data": {}}
        )
        data = await http.post(
            "/v1/reminders",
            json={"due_at": _ago(), "channel": "email", "to": "a@b.c", "template": "welcome", "data": {}},
        )
        naive = await http.post(
            "/v1/reminders",
            json={"due_at": "2030-01-01T00:00:00", "channel": "sms", "to": "+15550100", "template": "welcome"},
        )
        hook = await http.post(
            "/v1/reminders",
            json={"due_at": _ago(), "channel": "webhook", "to": ["https://ok.example/x", "ftp://x"], "template": "t"},
        )
        nobody = await http.post(
            "/v1/reminders",
            json={"due_at": _ago(), "channel": "email", "to": [], "template": "welcome", "data": {"name": "A"}},
        )
        created = await _remind(http, "2030-01-01T09:00:00+02:00", to=["a@example.com", "b@example.com"])
        fetched = await http.get(f"/v1/reminders/{created['id']}")
        missing = await http.get("/v1/reminders/not-an-id")
    assert [r.json()["field"] for r in (template, data, naive, hook, nobody)] == [
        "data",
        "data",
        "due_at",
        "to[1]",
        "to",
    ]
    assert all(r.status_code == 422 and r.headers["content-type"] == PROBLEM for r in (template, data, naive, hook))
    assert created["to"] == ["a@example.com", "b@example.com"] and created["job_id"] is None
    assert fetched.json() == created
    assert missing.status_code == 404


async def test_a_retried_reminder_with_its_idempotency_key_is_scheduled_once(api, tenant):
    body = {
        "due_at": "2030-01-01T09:00:00Z",
        "channel": "email",
        "to": "a@example.com",
        "template": "welcome",
        "data": {"name": "A"},
    }
    async with client(api.url, tenant[1]) as http:
        first = await http.post("/v1/reminders", json=body, headers={"Idempotency-Key": "remind-1"})
        again = await http.post("/v1/reminders", json=body, headers={"Idempotency-Key": "remind-1"})
        changed = await http.post(
            "/v1/reminders", json={**body, "to": "b@example.com"}, headers={"Idempotency-Key": "remind-1"}
        )
        bad = await http.post(
            "/v1/reminders", json={**body, "template": "nope"}, headers={"Idempotency-Key": "remind-2"}
        )
        fixed = await http.post("/v1/reminders", json=body, headers={"Idempotency-Key": "remind-2"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert changed.status_code == 422
    assert bad.status_code == 422 and fixed.status_code == 201  # a refused request does not use up its key
    assert fixed.json()["id"] != first.json()["id"]


async def test_due_reminders_become_one_job_each_even_when_run_twice_at_once(api, settings, database_url, tenant):
    tenant_id, key = tenant
    async with client(api.url, key) as http:
        due = [await _remind(http, _ago(minutes=n), data={"name": f"Ada {n}"}) for n in range(7)]
        later = await _remind(http, _ago(minutes=-60))
        async with open_resources(settings) as resources:
            runs = await asyncio.gather(send_due_reminders(resources, batch=3), send_due_reminders(resources, batch=3))
            assert await send_due_reminders(resources) == 0
        after = {r["id"]: (await http.get(f"/v1/reminders/{r['id']}")).json() for r in [*due, later]}
    assert sum(runs) == 7
    jobs = await _notification_jobs(database_url, tenant_id)
    assert sorted(job["metadata"]["reminder_id"] for job in jobs) == sorted(r["id"] for r in due)
    by_id = {str(job["id"]): job for job in jobs}
    for reminder in due:
        job = by_id[after[reminder["id"]]["job_id"]]
        assert job["payload"] == {
            "channel": "email",
            "to": ["ada@example.com"],
            "template": "welcome",
            "data": reminder["data"],
        }
        assert job["queue"] == NOTIFICATION_QUEUE
    assert after[later["id"]]["job_id"] is None
    async with redis.from_url(settings.redis_url) as r:
        assert await r.zcard(NOTIFICATION_QUEUE) >= 7  # handed to arq, not only recorded


async def test_a_scheduled_notification_follows_the_same_rules_as_one_from_the_api(api, settings, database_url, tenant):
    """Tries and queue are the notification kind's, whoever creates the job (the scheduler
    used to give 5 tries where the API gave 10)."""
    tenant_id, key = tenant
    async with client(api.url, key) as http:
        await _remind(http, _ago(minutes=1))
        sent = await http.post(
            "/v1/notifications",
            json={"channel": "email", "to": "ada@example.com", "template": "welcome", "data": {"name": "Ada"}},
        )
        assert sent.status_code == 202, sent.text
        async with open_resources(settings) as resources:
            assert await send_due_reminders(resources) == 1
    by_reminder, by_api = sorted(await _notification_jobs(database_url, tenant_id), key=lambda job: not job["metadata"])
    assert by_reminder["metadata"] and not by_api["metadata"]
    assert by_reminder["max_tries"] == by_api["max_tries"] == len(settings.webhook_retry_schedule) + 1
    assert by_reminder["queue"] == by_api["queue"] == NOTIFICATION_QUEUE


async def _unsent(http, reminders: list[dict]) -> list[dict]:
    return [r for r in reminders if (await http.get(f"/v1/reminders/{r['id']}")).json()["job_id"] is None]


async def _reminder_ticks(db, schedule_id: str) -> dict[str, list[str]]:
    """The statuses of the built-in reminders schedule's jobs, by their tick."""
    async with db.write() as conn:
        rows = await conn.fetch(
            "SELECT metadata->>'tick' AS tick, status FROM jobs WHERE kind = $1 AND metadata->>'schedule_id' = $2",
            REMINDERS_KIND,
            schedule_id,
        )
    ticks: dict[str, list[str]] = {}
    for row in rows:
        ticks.setdefault(row["tick"], []).append(row["status"])
    return ticks


async def test_two_workers_run_each_tick_of_a_built_in_schedule_once(api, settings, builtins, tenant):
    """Two workers run the built-in schedules (reminders every second, the others off):
    every tick makes one job of the reminders kind, run by one of them, an ordinary job
    the admin key reads, and each reminder becomes exactly one notification."""
    tenant_id, key = tenant
    quiet = {f"schedule_{name}": "off" for name in ("memberships", "cleanup", "aggregate_hourly", "aggregate_daily")}
    settings = settings.model_copy(update={"schedule_reminders": "every 1s", "schedule_prune_workers": "off", **quiet})
    async with client(api.url, key) as http, client(api.url, ADMIN_KEY) as admin:
        reminders = [await _remind(http, _ago(seconds=n)) for n in range(5)]
        async with running_worker(settings, schedule.KINDS), running_worker(settings, schedule.KINDS):
            reminders += [await _remind(http, _ago(seconds=-1.5)) for _ in range(3)]  # due while both run

            async def listed() -> list[dict]:
                return (await admin.get("/v1/schedules")).json()["items"]

            (row,) = await until(listed, timeout=30)  # the others are off: never recorded

            async def three_ticks_done_and_all_sent() -> dict[str, list[str]] | None:
                ticks = await _reminder_ticks(builtins, row["id"])
                done = len(ticks) >= 3 and all(status == "succeeded" for each in ticks.values() for status in each)
                return ticks if done and not await _unsent(http, reminders) else None

            ticks = await until(three_ticks_done_and_all_sent, timeout=30)
        jobs = (await admin.get("/v1/jobs", params={"kind": REMINDERS_KIND})).json()["items"]
        seen = (await admin.get(f"/v1/schedules/{row['id']}")).json()
    assert row["name"] == "reminders" and row["builtin"] is True and row["every"] == 1
    assert all(len(statuses) == 1 for statuses in ticks.values()), ticks  # no tick fired twice
    ours = [job for job in jobs if job["metadata"]["schedule_id"] == row["id"]]  # earlier tests' rows were other
    assert {job["metadata"]["tick"] for job in ours} >= set(ticks)
    assert seen["last_run_at"] is not None and seen["last_job_id"] in {job["id"] for job in ours}
    notifications = await _notification_jobs(settings.database_url, tenant_id)
    assert sorted(job["metadata"]["reminder_id"] for job in notifications) == sorted(r["id"] for r in reminders)


async def test_expiring_memberships_are_emailed_once_per_expiry(api, settings, database_url, tenant):
    tenant_id, key = tenant
    soon = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    later = soon + timedelta(days=60)
    async with client(api.url, key) as http:
        created = await http.put(
            "/v1/memberships/m-1",
            json={"email": "ada@example.com", "expires_at": soon.isoformat(), "data": {"name": "Ada", "plan": "Gold"}},
        )
        await http.put(
            "/v1/memberships/m-2",
            json={"email": "bob@example.com", "expires_at": later.isoformat(), "data": {"name": "Bob"}},
        )
        no_name = await http.put("/v1/memberships/m-3", json={"email": "c@example.com", "expires_at": soon.isoformat()})
        bad_email = await http.put(
            "/v1/memberships/m-3", json={"email": "nope", "expires_at": soon.isoformat(), "data": {"name": "C"}}
        )
        async with open_resources(settings) as resources:
            assert (
                sum(
                    await asyncio.gather(notify_expiring_memberships(resources), notify_expiring_memberships(resources))
                )
                == 1
            )
            same = await http.put(
                "/v1/memberships/m-1",
                json={
                    "email": "ada@example.com",
                    "expires_at": soon.isoformat(),
                    "data": {"name": "Ada", "plan": "Gold"},
                },
            )
            assert await notify_expiring_memberships(resources) == 0
            renewed = soon + timedelta(days=1)
            moved = await http.put(
                "/v1/memberships/m-1",
                json={"email": "ada@example.com", "expires_at": renewed.isoformat(), "data": {"name": "Ada"}},
            )
            assert await notify_expiring_memberships(resources) == 1
    assert created.status_code == 201 and same.status_code == 200 and same.json()["notified_at"]
    assert moved.json()["notified_at"] is None
    assert no_name.status_code == 422 and no_name.json()["field"] == "data"
    assert bad_email.status_code == 422 and bad_email.json()["field"] == "email"
    jobs = sorted(
        await _notification_jobs(database_url, tenant_id), key=lambda job: job["payload"]["data"]["expires_on"]
    )
    assert [job["payload"] for job in jobs] == [
        {
            "channel": "email",
            "to": ["ada@example.com"],
            "template": "membership_expiry",
            "data": {"name": "Ada", "plan": "Gold", "expires_on": soon.date().isoformat()},
        },
        {
            "channel": "email",
            "to": ["ada@example.com"],
            "template": "membership_expiry",
            "data": {"name": "Ada", "expires_on": renewed.date().isoformat()},
        },
    ]
