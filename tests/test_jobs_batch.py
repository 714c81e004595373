"""The jobs API in bulk: `POST /v1/jobs/batch` (in order, all or nothing, replayed by its
Idempotency-Key, one hand-off for a thousand, within the tenant's quota) and bulk retry
and cancel by filter, against a real PostgreSQL, Redis, uvicorn and worker."""

import redis.asyncio as redis

from service import queue
from service.api.routes import bulk
from testkit.greetings import (
    greet,  # noqa: F401 (a fixture)
    greeter,
    job_rows,
)
from testkit.service import ApiServer, client, new_tenant, running_worker, wait_for_job


async def test_a_batch_is_accepted_in_order_in_one_go(api, settings, tenant, greet):
    bodies = [{"kind": greet, "input": {"name": f"n{index}"}} for index in range(5)]
    bodies[2]["priority"] = "low"
    async with client(api.url, tenant[1]) as http, running_worker(settings, [greeter(greet)]):
        response = await http.post("/v1/jobs/batch", json={"jobs": bodies})
        assert response.status_code == 202, response.text
        items = response.json()["items"]
        assert [item["kind"] for item in items] == [greet] * 5
        for item in items:
            assert (await wait_for_job(http, item["id"]))["status"] == "succeeded"
    rows = await job_rows(settings, [item["id"] for item in items])
    assert [rows[item["id"]]["payload"]["name"] for item in items] == [f"n{index}" for index in range(5)]
    assert rows[items[2]["id"]]["priority"] == queue.PRIORITIES["low"]


async def test_a_batch_with_one_bad_body_creates_nothing(api, settings, tenant, greet):
    good = {"kind": greet, "input": {"name": "Ada"}}
    async with client(api.url, tenant[1]) as http:
        before = (await http.get("/v1/jobs", params={"kind": greet})).json()["items"]
        bad_input = await http.post("/v1/jobs/batch", json={"jobs": [good, good, {"kind": greet, "input": {}}]})
        bad_kind = await http.post("/v1/jobs/batch", json={"jobs": [good, {"kind": "nope", "input": {}}]})
        bad_shape = await http.post("/v1/jobs/batch", json={"jobs": [good, {"kind": greet}]})
        too_many = await http.post("/v1/jobs/batch", json={"jobs": [good] * 1001})
        empty = await http.post("/v1/jobs/batch", json={"jobs": []})
        after = (await http.get("/v1/jobs", params={"kind": greet})).json()["items"]
    assert bad_input.status_code == 422
    assert bad_input.json()["index"] == 2 and bad_input.json()["field"] == "jobs[2].input.name"
    assert bad_kind.status_code == 422 and bad_kind.json()["index"] == 1 and greet in bad_kind.json()["known"]
    assert bad_shape.status_code == 422 and bad_shape.json()["field"] == "jobs[1].input"
    assert bad_shape.json()["index"] == 1
    assert too_many.status_code == 422 and empty.status_code == 422
    assert after == before  # all or nothing


async def test_a_batch_replayed_with_its_idempotency_key_creates_no_more(api, settings, tenant, greet):
    body = {"jobs": [{"kind": greet, "input": {"name": "Ada"}}, {"kind": greet, "input": {"name": "Bob"}}]}
    async with client(api.url, tenant[1]) as http:
        first = await http.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": "batch-1"})
        again = await http.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": "batch-1"})
        listed = (await http.get("/v1/jobs", params={"kind": greet})).json()["items"]
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(listed) == 2


async def test_bulk_cancel_and_retry_walk_the_filter_in_chunks(api, settings, tenant, greet, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 2)  # the in-process API: five jobs make three chunks
    body = {"kind": greet, "input": {"name": "Ada"}}
    async with client(api.url, tenant[1]) as http:
        ids = [(await http.post("/v1/jobs", json=body)).json()["id"] for _ in range(5)]
        async with client(api.url, (await new_tenant(settings))[1]) as theirs:
            their_job = (await theirs.post("/v1/jobs", json=body)).json()["id"]
        dry = await http.post("/v1/jobs/cancel", json={"kind": greet, "dry_run": True})
        assert dry.json() == {"matched": 5, "changed": 0}
        assert {row["status"] for row in (await job_rows(settings, ids)).values()} == {"queued"}
        cancelled = await http.post("/v1/jobs/cancel", json={"kind": greet})
        assert cancelled.status_code == 200 and cancelled.json() == {"matched": 5, "changed": 5}
        rows = await job_rows(settings, [*ids, their_job])
        assert [rows[job]["status"] for job in ids] == ["cancelled"] * 5
        assert rows[their_job]["status"] == "queued"  # another tenant's job is not touched
        again = await http.post("/v1/jobs/cancel", json={"kind": greet})
        assert again.json() == {"matched": 0, "changed": 0}
        wrong = await http.post("/v1/jobs/retry", json={"status": "queued"})
        assert wrong.status_code == 422 and wrong.json()["field"] == "status"
        async with running_worker(settings, [greeter(greet)]):
            retried = await http.post("/v1/jobs/retry", json={"kind": greet, "status": "cancelled"})
            assert retried.json() == {"matched": 5, "changed": 5}
            for job in ids:
                assert (await wait_for_job(http, job))["status"] == "succeeded"


async def test_bulk_retry_picks_failed_jobs_by_error_type_and_age(api, settings, tenant, greet):
    names = ["fail-boom", "fail-boom", "fail-other", "Ada"]
    async with client(api.url, tenant[1]) as http:
        async with running_worker(settings, [greeter(greet, tries=1)]):
            ids = [
                (await http.post("/v1/jobs", json={"kind": greet, "input": {"name": name}})).json()["id"]
                for name in names
            ]
            ended = [await wait_for_job(http, job) for job in ids]
        assert [job["status"] for job in ended] == ["failed", "failed", "failed", "succeeded"]
        old = await http.post("/v1/jobs/retry", json={"kind": greet, "created_before": "2020-01-01T00:00:00Z"})
        assert old.json() == {"matched": 0, "changed": 0}
        boom = await http.post("/v1/jobs/retry", json={"kind": greet, "error_type": "boom"})
        assert boom.json() == {"matched": 2, "changed": 2}
    rows = await job_rows(settings, ids)
    assert [rows[job]["status"] for job in ids] == ["queued", "queued", "failed", "succeeded"]


async def test_a_batch_of_a_thousand_is_one_hand_off_to_the_queue(api, settings, tenant, greet):
    bodies = [{"kind": greet, "input": {"name": f"n{index}"}} for index in range(1000)]
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs/batch", json={"jobs": bodies})
    assert response.status_code == 202, response.text
    items = response.json()["items"]
    assert len(items) == 1000 and len({item["id"] for item in items}) == 1000
    r = redis.Redis.from_url(settings.redis_url)
    try:
        queued = await r.zrange(settings.queue_name, 0, -1)
    finally:
        await r.aclose()
    assert {job.decode() for job in queued} == {item["id"] for item in items}


async def test_a_batch_past_the_tenants_quota_creates_nothing(settings, tenant, greet):
    limited = settings.model_copy(update={"tenant_max_queued_jobs": 3})
    body = {"kind": greet, "input": {"name": "Ada"}}
    async with ApiServer(limited) as api, client(api.url, tenant[1]) as http:
        refused = await http.post("/v1/jobs/batch", json={"jobs": [body] * 4})
        accepted = await http.post("/v1/jobs/batch", json={"jobs": [body] * 3})
        listed = (await http.get("/v1/jobs", params={"kind": greet})).json()["items"]
    assert refused.status_code == 429 and refused.json()["type"].endswith("/quota-exceeded")
    assert accepted.status_code == 202 and len(listed) == 3
