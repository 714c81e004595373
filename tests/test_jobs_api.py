"""Jobs of kinds declared in Python, over HTTP: `GET /v1/kinds`, `POST /v1/jobs`, the batch,
and bulk retry and cancel, against a real PostgreSQL, Redis, uvicorn and worker.

Kinds are described to the API as workers describe them, with `ledger.publish`; the kinds
that run are declared with `conveyor.job` under the same names, in an in-process worker."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

import conveyor
from conveyor.client import ApiError, AsyncClient
from service import queue
from service.api.kind_catalog import PublishedKind
from service.api.routes.kinds import unknown_kind
from testkit.greetings import (
    PARIS_WINTER,
    Greeting,
    greet,  # noqa: F401 (a fixture)
    greeter,
    greeting_kind,
    job_rows,
    kind_rows,
    sleeper,
    unique,
)
from testkit.service import client, publish_kinds, running_worker, until, wait_for_job


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


def test_an_unknown_kind_with_only_built_in_kinds_published_says_how_to_add_one():
    def published(*kinds):
        return {kind.name: PublishedKind(kind, Draft202012Validator(kind.input_schema)) for kind in kinds}

    document = greeting_kind("document", endpoint="/v1/documents")
    only_built_ins = unknown_kind("nope", published(document))
    with_ours = unknown_kind("nope", published(document, greeting_kind("greet")))
    nothing = unknown_kind("nope", {})
    assert only_built_ins.extensions["known"] == [] and "CONVEYOR_KINDS" in only_built_ins.detail
    assert "no worker has started" not in only_built_ins.detail
    assert with_ours.extensions["known"] == ["greet"] and with_ours.detail.endswith("the known kinds are greet")
    assert nothing.detail.endswith("none (no worker has started)") and nothing.status == 422


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


async def test_the_openapi_document_describes_the_jobs_api(api):
    async with client(api.url) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"get", "post"} <= set(paths["/v1/jobs"])
    assert "post" in paths["/v1/jobs/batch"] and "get" in paths["/v1/kinds"]


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
