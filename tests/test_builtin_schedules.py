"""The built-in schedules as rows of `schedules` (pipelines/schedule.py): recorded from
their settings at a worker's start, listed and adjusted with the admin key only, never
deleted, their kinds closed to tenants, first on the dashboard. That they fire once
across workers: tests/test_schedule.py."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import SecretStr

from pipelines import lifecycle, schedule
from pipelines.maintenance.schedules import fire_due
from service.databases.database import Database
from service.ledger.schedules import SYSTEM_TENANT
from testkit.resources import open_resources
from testkit.service import ADMIN_KEY, client, new_tenant
from tests.test_cli import conveyor

PROBLEM = "application/problem+json"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})


@pytest.fixture
async def builtins(settings):
    """The ledger without built-in schedules, before the test (the next worker records them
    afresh) and after it; the ledger's database."""
    db = Database(settings)
    await db.open()

    async def forget() -> None:
        async with db.transaction() as conn:
            await conn.execute("DELETE FROM schedules WHERE builtin IS NOT NULL")

    await forget()
    yield db
    await forget()
    await db.close()


async def seed(settings, **changed: str) -> None:
    """What a starting worker that runs the built-in kinds does, under changed settings."""
    async with open_resources(settings.model_copy(update=changed)) as resources:
        await schedule.seed(resources, schedule.KIND_NAMES)


async def by_name(admin) -> dict[str, dict]:
    return {item["name"]: item for item in (await admin.get("/v1/schedules")).json()["items"]}


async def test_the_settings_make_the_rows_and_the_admin_adjusts_them(api, settings, builtins, tenant):
    await seed(settings)
    async with client(api.url, ADMIN_KEY) as admin:
        listed = await by_name(admin)
        cleanup = listed["cleanup"]
        moved = await admin.patch(f"/v1/schedules/{cleanup['id']}", json={"cron": "0 4 * * *"})
        renamed = await admin.patch(f"/v1/schedules/{cleanup['id']}", json={"name": "sweep"})
        rekinded = await admin.patch(f"/v1/schedules/{cleanup['id']}", json={"kind": "export"})
        deleted = await admin.delete(f"/v1/schedules/{cleanup['id']}")
        await seed(settings)  # a restart with the same settings: the admin's change stands
        restarted = (await admin.get(f"/v1/schedules/{cleanup['id']}")).json()
        await seed(settings, schedule_cleanup="daily 05:15")  # a changed setting wins, once
        reset = (await admin.get(f"/v1/schedules/{cleanup['id']}")).json()
    assert sorted(listed) == sorted(builtin.name for builtin in schedule.BUILT_INS)
    assert all(item["builtin"] and item["kind"] == f"conveyor.{name}" for name, item in listed.items())
    assert (listed["reminders"]["cron"], listed["memberships"]["cron"]) == ("*/5 * * * *", "0 8 * * *")
    assert cleanup["cron"] == "30 3 * * *" and cleanup["timezone"] == "UTC" and not cleanup["paused"]
    assert moved.status_code == 200, moved.text
    assert moved.json()["cron"] == "0 4 * * *"
    assert all(datetime.fromisoformat(run).hour == 4 for run in moved.json()["next_runs"])
    assert renamed.status_code == rekinded.status_code == 422
    assert (renamed.json()["field"], rekinded.json()["field"]) == ("name", "kind")
    assert deleted.status_code == 409 and deleted.headers["content-type"] == PROBLEM
    assert deleted.json()["type"].endswith("builtin-schedule") and "pause" in deleted.json()["detail"]
    assert restarted["cron"] == "0 4 * * *" and restarted["name"] == "cleanup"
    assert reset["cron"] == "15 5 * * *" and reset["id"] == cleanup["id"]


async def test_off_pauses_a_built_in_schedule_or_never_makes_it(api, settings, builtins):
    await seed(settings, schedule_memberships="off")
    async with client(api.url, ADMIN_KEY) as admin:
        fresh = await by_name(admin)
        await seed(settings, schedule_cleanup="off")
        switched_off = (await by_name(admin))["cleanup"]
        resumed = await admin.patch(f"/v1/schedules/{switched_off['id']}", json={"paused": False})
        await seed(settings, schedule_cleanup="off")  # unchanged: the admin's resume stands
        still = (await by_name(admin))["cleanup"]
        await seed(settings)  # back on: resumed on its cadence
        back = (await by_name(admin))["cleanup"]
    assert "memberships" not in fresh and "cleanup" in fresh
    assert switched_off["paused"] is True and switched_off["next_runs"] == []
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert still["paused"] is False
    assert back["paused"] is False and back["cron"] == "30 3 * * *"


async def test_tenants_can_neither_see_nor_change_nor_run_the_built_ins(api, settings, builtins, tenant):
    await seed(settings)
    async with open_resources(settings) as resources:
        await lifecycle.publish_kinds(resources, schedule.KINDS)  # as a worker: they stay unpublished
    system_key = (await new_tenant(settings, SYSTEM_TENANT))[1]
    async with client(api.url, ADMIN_KEY) as admin, client(api.url, tenant[1]) as http:
        cleanup = (await by_name(admin))["cleanup"]
        own = (await http.get("/v1/schedules")).json()["items"]
        read = await http.get(f"/v1/schedules/{cleanup['id']}")
        paused = await http.patch(f"/v1/schedules/{cleanup['id']}", json={"paused": True})
        deleted = await http.delete(f"/v1/schedules/{cleanup['id']}")
        as_system = await http.patch(
            f"/v1/schedules/{cleanup['id']}", json={"paused": True}, headers={"Authorization": f"Bearer {system_key}"}
        )
        submitted = await http.post("/v1/jobs", json={"kind": "conveyor.cleanup", "input": {}})
        scheduled = await http.post(
            "/v1/schedules", json={"name": "sweep", "kind": "conveyor.cleanup", "input": {}, "every": 60}
        )
        after = (await admin.get(f"/v1/schedules/{cleanup['id']}")).json()
    assert own == []
    assert read.status_code == paused.status_code == deleted.status_code == 404
    assert as_system.status_code == 403 and as_system.headers["content-type"] == PROBLEM  # a key is not the admin
    assert submitted.status_code == scheduled.status_code == 422
    assert submitted.json()["field"] == scheduled.json()["field"] == "kind"
    assert after == cleanup


async def test_the_cli_lists_and_re_times_them_with_the_admin_key(api, settings, builtins):
    await seed(settings)
    env = {"CONVEYOR_URL": api.url, "CONVEYOR_API_KEY": ADMIN_KEY, "COLUMNS": "200"}
    async with client(api.url, ADMIN_KEY) as admin:
        cleanup = (await by_name(admin))["cleanup"]
        table = await conveyor("schedules", "list", **env)
        moved = await conveyor("schedules", "set", cleanup["id"][:8], "--cron", "0 4 * * *", "--json", **env)
        neither = await conveyor("schedules", "set", cleanup["id"][:8], **env)
        after = (await admin.get(f"/v1/schedules/{cleanup['id']}")).json()
    assert table.exit_code == 0 and "cleanup (built-in)" in table.stdout
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["cron"] == after["cron"] == "0 4 * * *"
    assert neither.exit_code == 2 and "give one of --cron and --every" in neither.output


async def test_the_dashboard_shows_them_first_with_their_next_and_last_runs(api, settings, builtins):
    async with open_resources(settings) as resources:
        await schedule.seed(resources, schedule.KIND_NAMES)
        async with resources.db.transaction() as conn:
            await conn.execute("UPDATE schedules SET next_run_at = now() WHERE builtin = 'cleanup'")
        await fire_due(resources, {name: resources.kinds[name] for name in schedule.KIND_NAMES})
    async with client(api.url, ADMIN_KEY) as admin:
        shown = (await admin.get("/dashboard/api/overview")).json()["schedules"]
    built_in = shown[: len(schedule.BUILT_INS)]
    by_name = {row["name"]: row for row in built_in}
    assert {row["tenant"] for row in built_in} == {SYSTEM_TENANT}
    assert sorted(by_name) == sorted(builtin.name for builtin in schedule.BUILT_INS)
    assert all(row["next_run_at"] and not row["paused"] for row in built_in)
    assert by_name["cleanup"]["cadence"] == "cron 30 3 * * *" and by_name["cleanup"]["last_run_at"]
    assert by_name["cleanup"]["last_status"] == "queued"  # its job, waiting for a worker
