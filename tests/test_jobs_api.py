"""Jobs of kinds declared in Python, over HTTP: `GET /v1/kinds`, `POST /v1/jobs`, the batch,
and bulk retry and cancel, against a real PostgreSQL, Redis, uvicorn and worker.

Kinds are described to the API as workers describe them, with `ledger.publish`; the kinds
that run are declared with `conveyor.job` under the same names, in an in-process worker."""

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis.asyncio as redis
from pydantic import BaseModel, Field

import conveyor
from conveyor.client import ApiError, AsyncClient
from service import ledger, queue
from service.api.routes import bulk
from service.databases.database import Database
from testkit.service import ApiServer, client, new_tenant, publish_kinds, running_worker, until, wait_for_job

PARIS_WINTER = timezone(timedelta(hours=1))


class Greeting(BaseModel):
    name: str
    times: int = Field(default=1, ge=1, le=10)


def greeting_kind(name: str, **rules) -> ledger.KindDescription:
    return ledger.KindDescription(
        name=name,
        description="Say hello",
        input_schema=Greeting.model_json_schema(),
        stages=("greet",),
        **{"tries": 3, "timeout": 30.0, "queue": "unused", **rules},
    )


async def _rows(settings, query: str, keys: list[str]) -> list[dict]:
    db = Database(settings)
    await db.open()
    try:
        async with db.read() as conn:
            return [dict(row) for row in await conn.fetch(query, keys)]
    finally:
        await db.close()


async def kind_rows(settings, names: list[str]) -> dict[str, dict]:
    rows = await _rows(settings, "SELECT * FROM kinds WHERE name = ANY($1)", names)
    return {row["name"]: row for row in rows}


async def job_rows(settings, ids: list[str]) -> dict[str, dict]:
    rows = await _rows(settings, "SELECT * FROM jobs WHERE id = ANY($1::uuid[])", ids)
    return {str(row["id"]): row for row in rows}


def unique(prefix: str) -> str:
    """A kind name of this test's own: the database is shared by the session's tests."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def greet(settings) -> str:
    """A published kind `greet_…` with Greeting input, 3 tries, 30 s, on the test's queue."""
    name = unique("greet")
    await publish_kinds(settings, greeting_kind(name, queue=settings.queue_name))
    return name


def greeter(name: str, **rules) -> conveyor.Pipeline:
    """The kind `greeting_kind` describes, as an app declares it."""

    @conveyor.job(name, input=Greeting, timeout=30, **rules)
    async def greet(ctx: conveyor.Context, input: Greeting) -> dict:
        if input.name.startswith("fail-"):
            raise conveyor.Fail(input.name.removeprefix("fail-"), "refused")
        return {"text": f"Hello, {input.name}" * input.times}

    return greet


def sleeper(name: str) -> conveyor.Pipeline:
    @conveyor.job(name, input=Greeting, timeout=30, tries=1)
    async def greet(ctx: conveyor.Context, input: Greeting) -> dict:
        await asyncio.sleep(30)
        return {}

    return greet


async def test_publishing_the_same_description_again_writes_nothing(settings):
    name = unique("publish")
    kind = greeting_kind(name)
    await publish_kinds(settings, kind, by="worker-1")
    first = (await kind_rows(settings, [name]))[name]
    await publish_kinds(settings, kind, by="worker-2")
    again = (await kind_rows(settings, [name]))[name]
    assert again == first  # same version: no write, still worker-1's
    changed = greeting_kind(name, tries=7)
    await publish_kinds(settings, changed, by="worker-3")  # the last worker to start wins
    last = (await kind_rows(settings, [name]))[name]
    assert (last["tries"], last["published_by"], last["version"]) == (7, "worker-3", changed.version)
    assert last["version"] != first["version"]
    assert last["stages"] == ["greet"] and last["input_schema"] == Greeting.model_json_schema()


async def test_kinds_are_listed_with_their_schema(api, settings, tenant):
    name = unique("listed")
    await publish_kinds(settings, greeting_kind(name, concurrency=2))
    async with client(api.url, tenant[1]) as http:
        response = await http.get("/v1/kinds")
    assert response.status_code == 200
    [listed] = [item for item in response.json()["items"] if item["kind"] == name]
    assert listed == {
        "kind": name,
        "description": "Say hello",
        "input_schema": Greeting.model_json_schema(),
        "stages": ["greet"],
        "tries": 3,
        "timeout": 30.0,
        "queue": "unused",
        "concurrency": 2,
    }


async def test_a_job_is_accepted_with_its_options_and_runs(api, settings, tenant, greet):
    body = {
        "kind": greet,
        "input": {"name": "Ada", "times": 2},
        "priority": "high",
        "max_tries": 5,
        "timeout": 10,
        "metadata": {"order": 7},
        "concurrency_key": "account-1",
    }
    async with client(api.url, tenant[1]) as http, running_worker(settings, [greeter(greet)]):
        response = await http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["kind"] == greet and job["status"] == "queued" and job["metadata"] == {"order": 7}
        done = await wait_for_job(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {"text": "Hello, AdaHello, Ada"}
    row = (await job_rows(settings, [job["id"]]))[job["id"]]
    assert row["payload"] == {"name": "Ada", "times": 2}
    assert (row["priority"], row["max_tries"], row["timeout"], row["concurrency_key"]) == (
        queue.PRIORITIES["high"],
        5,
        10.0,
        "account-1",
    )
    assert row["queue"] == settings.queue_name


async def test_a_job_takes_its_kinds_tries_unless_it_asks_otherwise(api, settings, tenant, greet):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}})
    assert response.status_code == 202, response.text
    row = (await job_rows(settings, [response.json()["id"]]))[response.json()["id"]]
    assert (row["max_tries"], row["timeout"], row["priority"]) == (3, None, queue.PRIORITIES["normal"])


async def test_a_job_kind_published_a_moment_ago_is_accepted(api, settings, tenant, greet):
    async with client(api.url, tenant[1]) as http:
        assert (await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}})).status_code == 202
        late = unique("late")
        await publish_kinds(settings, greeting_kind(late))
        response = await http.post("/v1/jobs", json={"kind": late, "input": {"name": "Ada"}})
    assert response.status_code == 202, response.text


async def test_an_unknown_kind_is_a_422_naming_the_known_ones(api, settings, tenant, greet):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={"kind": "nope", "input": {}})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/unknown-kind") and problem["field"] == "kind"
    assert greet in problem["known"] and greet in problem["detail"]


async def test_input_failing_the_schema_is_a_422_naming_each_field(api, settings, tenant, greet):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={"kind": greet, "input": {"times": 0}})
        nested = await http.post("/v1/jobs", json={"kind": greet, "input": {"name": ["Ada"], "times": "2"}})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/invalid-input")
    assert {error["field"] for error in problem["errors"]} == {"input.name", "input.times"}
    assert "input.name" in problem["detail"] and "input.times" in problem["detail"]
    assert nested.status_code == 422
    assert {error["field"] for error in nested.json()["errors"]} == {"input.name", "input.times"}


async def test_a_kind_created_through_another_route_points_there(api, settings, tenant):
    name = unique("upload")
    await publish_kinds(settings, greeting_kind(name, endpoint="/v1/documents"))
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={"kind": name, "input": {"name": "Ada"}})
        unknown = await http.post("/v1/jobs", json={"kind": "nope", "input": {}})
    assert response.status_code == 422
    assert response.json()["endpoint"] == "/v1/documents" and "/v1/documents" in response.json()["detail"]
    assert name not in unknown.json()["known"]  # not a kind POST /v1/jobs creates


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", "urgent"),
        ("run_at", "2030-01-01T09:00:00"),  # no offset
        ("timeout", 31),  # longer than the kind's
        ("max_tries", 0),
        ("callback_url", "http://127.0.0.1:9/hook"),  # inside our network
        ("callback_url", "ftp://example.com/"),
        ("metadata", {"big": "x" * 20_000}),
        ("concurrency_key", ""),
        ("colour", "red"),
    ],
)
async def test_bad_options_are_422s_naming_the_field(api, tenant, greet, field, value):
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}, field: value})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_run_at_defers_the_job(api, settings, tenant, greet):
    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    body = {"kind": greet, "input": {"name": "Ada"}}
    async with client(api.url, tenant[1]) as http:
        response = await http.post("/v1/jobs", json={**body, "run_at": later.astimezone(PARIS_WINTER).isoformat()})
        too_far = await http.post("/v1/jobs", json={**body, "run_at": "2099-01-01T09:00:00+01:00"})
    assert response.status_code == 202, response.text
    row = (await job_rows(settings, [response.json()["id"]]))[response.json()["id"]]
    assert row["run_at"] == later
    assert too_far.status_code == 422 and too_far.json()["field"] == "run_at"


async def test_the_same_idempotency_key_gives_the_same_job(api, tenant, greet):
    body = {"kind": greet, "input": {"name": "Ada"}}
    async with client(api.url, tenant[1]) as http:
        first = await http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        again = await http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        other = await http.post("/v1/jobs", json={**body, "priority": "low"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-mismatch")


async def test_a_jobs_own_timeout_ends_its_attempt(api, settings, tenant):
    name = unique("sleepy")
    await publish_kinds(settings, greeting_kind(name, queue=settings.queue_name, tries=1))
    async with client(api.url, tenant[1]) as http, running_worker(settings, [sleeper(name)]):
        response = await http.post(
            "/v1/jobs", json={"kind": name, "input": {"name": "Ada"}, "timeout": 0.5, "max_tries": 1}
        )
        assert response.status_code == 202, response.text
        done = await wait_for_job(http, response.json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout" and "0.5 s" in done["error"]["message"]


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


async def test_the_openapi_document_describes_the_jobs_api(api):
    async with client(api.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"get", "post"} <= set(paths["/v1/jobs"])
    assert "post" in paths["/v1/jobs/batch"] and "get" in paths["/v1/kinds"]


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


async def test_a_republished_schema_is_used_within_seconds(api, settings, tenant, greet):
    async with client(api.url, tenant[1]) as http:
        assert (await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}})).status_code == 202
        stricter = {**Greeting.model_json_schema(), "required": ["name", "times"]}
        await publish_kinds(
            settings, dataclasses.replace(greeting_kind(greet, queue=settings.queue_name), input_schema=stricter)
        )

        async def refused() -> bool:
            response = await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}})
            return response.status_code == 422 and response.json()["field"] == "input.times"

        await until(refused)


async def test_the_python_client_speaks_the_jobs_api(api, settings, tenant, greet):
    async with AsyncClient(api.url, tenant[1]) as conveyor_api:
        [kind] = [kind for kind in await conveyor_api.kinds() if kind.kind == greet]
        assert kind.stages == ["greet"] and kind.input_schema == Greeting.model_json_schema()
        one = await conveyor_api.submit(greet, {"name": "Ada"}, priority="high", metadata={"order": 7})
        many = await conveyor_api.submit_many([{"kind": greet, "input": {"name": name}} for name in ("Bob", "Cy")])
        assert one.kind == greet and one.metadata == {"order": 7} and len(many) == 2
        with pytest.raises(ApiError) as refused:
            await conveyor_api.submit(greet, {"times": 0})
        assert refused.value.status == 422 and "input.name" in refused.value.detail
        counted = await conveyor_api.cancel_jobs(kind=greet, dry_run=True)
        assert (counted.matched, counted.changed) == (3, 0)
        cancelled = await conveyor_api.cancel_jobs(kind=greet)
        assert (cancelled.matched, cancelled.changed) == (3, 3)


async def test_a_jobs_own_max_tries_ends_it_sooner_than_its_kinds(api, settings, tenant, greet):
    @conveyor.job(greet, input=Greeting, timeout=30, tries=5)
    async def greet_badly(ctx: conveyor.Context, input: Greeting) -> dict:
        raise RuntimeError("always")

    async with client(api.url, tenant[1]) as http, running_worker(settings, [greet_badly]):
        response = await http.post("/v1/jobs", json={"kind": greet, "input": {"name": "Ada"}, "max_tries": 1})
        assert response.status_code == 202, response.text
        done = await wait_for_job(http, response.json()["id"])
    assert (done["status"], done["attempts"]) == ("failed", 1)
