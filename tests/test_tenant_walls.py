"""Tenants cannot reach each other: every route that takes an id answers another tenant's
id exactly like an unknown one (404). The walk covers `service.app.routes()`, so a new
route is checked the day it is added. Ids and keys are unguessable; keys are stored hashed
and revocable."""

from __future__ import annotations

import hashlib
import re
import uuid

import asyncpg
import pytest
from starlette.routing import Route

from service.app import routes
from service.ledger.tenants import Tenant, revoke_api_key
from testkit import sample_kinds
from testkit.chaos import submit
from testkit.service import client, new_tenant, publish_kinds

pytestmark = pytest.mark.timeout(60)
PARAM = re.compile(r"{(\w+)(:\w+)?}")


# Routes whose id is not a job's: each has its own wall test below (or in its module's tests:
# a job's files in tests/test_videos_pipeline.py, schedules in tests/test_schedules.py,
# templates in tests/test_templates.py).
OTHER_IDS = {
    "/v1/jobs/{job_id}/files/{name}",
    "/v1/reminders/{reminder_id}",
    "/v1/memberships/{member}",
    "/v1/schedules/{schedule_id}",
    "/v1/workflows/{workflow_id}",
    "/v1/workflows/{workflow_id}/cancel",
    "/v1/workflows/{workflow_id}/events",
    "/v1/templates/{name}",
    "/v1/templates/{name}/preview",
}


def _routes_with_ids() -> list[tuple[str, str]]:
    found = []
    for route in routes():
        if isinstance(route, Route) and PARAM.search(route.path) and route.path not in OTHER_IDS:
            found += [(method, route.path) for method in sorted(route.methods - {"HEAD"})]
    return found


async def test_another_tenants_reminder_is_404(api, settings):
    (_, owner_key), (_, intruder_key) = await new_tenant(settings), await new_tenant(settings)
    reminder = {
        "due_at": "2030-01-01T09:00:00+00:00",
        "channel": "webhook",
        "to": ["https://example.com/hook"],
        "template": "reminder.due",
        "data": {},
    }
    async with client(api.url, owner_key) as owner, client(api.url, intruder_key) as intruder:
        created = await owner.post("/v1/reminders", json=reminder)
        assert created.status_code == 201, created.text
        path = f"/v1/reminders/{created.json()['id']}"
        assert (await owner.get(path)).status_code == 200
        assert (await intruder.get(path)).status_code == 404
        assert (await intruder.get(f"/v1/reminders/{uuid.uuid4()}")).status_code == 404


async def test_another_tenants_workflow_is_404(api, settings):
    await publish_kinds(settings, sample_kinds.echo.describe(settings))
    (_, owner_key), (_, intruder_key) = await new_tenant(settings), await new_tenant(settings)
    async with client(api.url, owner_key) as owner, client(api.url, intruder_key) as intruder:
        created = await owner.post("/v1/workflows", json={"steps": {"only": {"kind": "echo", "input": {}}}})
        assert created.status_code == 202, created.text
        path = f"/v1/workflows/{created.json()['id']}"
        assert (await owner.get(path)).status_code == 200
        for method, route in (("GET", path), ("POST", f"{path}/cancel"), ("GET", f"{path}/events")):
            assert await _status(intruder, method, route) == 404, route
        assert (await intruder.get(f"/v1/workflows/{uuid.uuid4()}")).status_code == 404


def _fill(path: str, job_id: str) -> str:
    return PARAM.sub(lambda match: job_id if match.group(1).endswith("id") else "x", path)


async def _status(http, method: str, path: str) -> int:
    async with http.stream(method, path) as response:  # an event stream is not read to its end
        return response.status_code


@pytest.mark.parametrize(("method", "path"), _routes_with_ids())
async def test_another_tenants_id_is_404_on_every_route(api, settings, method, path):
    (_, owner_key), (_, intruder_key) = await new_tenant(settings), await new_tenant(settings)
    async with client(api.url, owner_key) as owner, client(api.url, intruder_key) as intruder:
        job_id = (await submit(owner, 1)).json()["id"]
        theirs = await _status(intruder, method, _fill(path, job_id))
        unknown = await _status(intruder, method, _fill(path, str(uuid.uuid4())))
        own = await _status(owner, method, _fill(path, job_id))
    assert theirs == unknown == 404
    assert own != 404  # the id is real: only the tenant wall hides it


async def test_lists_show_only_the_callers_jobs(api, settings):
    (_, one), (_, two) = await new_tenant(settings), await new_tenant(settings)
    async with client(api.url, one) as first, client(api.url, two) as second:
        mine = (await submit(first, 1)).json()["id"]
        listed = (await second.get("/v1/jobs")).json()["items"]
    assert mine not in {item["id"] for item in listed}


async def test_ids_are_random_uuid4(api, tenant):
    async with client(api.url, tenant[1]) as http:
        ids = [uuid.UUID((await submit(http, n)).json()["id"]) for n in range(20)]
    assert all(job_id.version == 4 for job_id in ids)  # 122 random bits
    assert len(set(ids)) == len(ids)


async def test_keys_are_stored_hashed_and_revocable(api, settings):
    tenant_id, key = await new_tenant(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored = await conn.fetch("SELECT prefix, key_hash FROM api_keys WHERE tenant_id = $1", tenant_id)
        revoked = await revoke_api_key(conn, Tenant(tenant_id, ""), key[:12])
    finally:
        await conn.close()
    assert [bytes(row["key_hash"]) for row in stored] == [hashlib.sha256(key.encode()).digest()]
    assert all(key not in row["prefix"] or len(row["prefix"]) < len(key) for row in stored)
    assert len(key) - len("cvk_") >= 43  # 32 random bytes, url-safe base64
    assert revoked == 1
    async with client(api.url, key) as http:
        refused = await http.get("/v1/jobs")
    assert refused.status_code == 401
