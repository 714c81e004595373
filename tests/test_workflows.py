"""Workflows (`POST /v1/workflows`): steps of ordinary jobs started by the ends of the steps
they come after, over a real API, PostgreSQL, Redis and workers (in this process, or
worker processes where two must end steps at the same moment). The steps' kinds are
testkit/sample_kinds.py's `echo` (its result is its input)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from service.config import Settings
from service.databases.database import Database
from testkit.processes import WorkerProcess, settings_env
from testkit.service import client, running_worker, until
from testkit.sse import read_stream
from tests.test_kinds import KINDS, kinds_settings, sample_pipelines

FINISHED = ("succeeded", "failed", "cancelled")


async def kinds_published(http: httpx.AsyncClient, settings: Settings) -> None:
    """Once the API knows `echo` as this test's workers published it (each test has its own queue)."""

    async def published() -> bool:
        kinds = {kind["kind"]: kind for kind in (await http.get("/v1/kinds")).json()["items"]}
        return "echo" in kinds and kinds["echo"]["queue"] == settings.queue_name

    await until(published, timeout=30)


async def submit(http: httpx.AsyncClient, steps: dict, **extra) -> dict:
    response = await http.post("/v1/workflows", json={"steps": steps, **extra})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/workflows/{response.json()['id']}"
    return response.json()


async def finished(http: httpx.AsyncClient, workflow_id: str, statuses=FINISHED, timeout: float = 60) -> dict:
    async def ended() -> dict | None:
        workflow = (await http.get(f"/v1/workflows/{workflow_id}")).json()
        return workflow if workflow["status"] in statuses else None

    return await until(ended, timeout=timeout)


async def job(http: httpx.AsyncClient, job_id: str) -> dict:
    return (await http.get(f"/v1/jobs/{job_id}")).json()


async def test_a_step_starts_with_what_its_refs_point_at_in_the_step_before(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "first": {"kind": "echo", "input": {"rows": [{"id": 7}, {"id": 8}], "name": "ada"}},
                "second": {
                    "kind": "echo",
                    "input": {"id": {"$from": "first", "pointer": "/rows/1/id"}, "all": {"$from": "first"}},
                    "after": ["first"],
                },
            },
            metadata={"ref": 1},
        )
        assert created["steps"]["first"]["status"] == "running" and len(created["steps"]["first"]["jobs"]) == 1
        assert created["steps"]["second"] == {"status": "waiting", "jobs": []}
        done = await finished(http, created["id"])
        second = await job(http, done["steps"]["second"]["jobs"][0])
        listed = (await http.get("/v1/jobs", params={"kind": "echo"})).json()["items"]
        events = (await http.get(f"/v1/workflows/{created['id']}/events")).text
    assert done["status"] == "succeeded" and done["finished_at"] is not None, done
    assert second["result"] == {"id": 8, "all": {"rows": [{"id": 7}, {"id": 8}], "name": "ada"}}
    assert second["workflow_id"] == created["id"]
    assert {item["workflow_id"] for item in listed} == {created["id"]} and len(listed) == 2
    assert '"step": "second", "status": "succeeded"' in events and '"status": "succeeded", "workflow_id"' in events


async def test_a_step_after_two_that_end_together_on_two_workers_starts_once(api, settings, tenant, tmp_path):
    gate = tmp_path / "gate"
    env = settings_env(kinds_settings(settings.model_copy(update={"worker_max_jobs": 1})), conveyor_kinds=KINDS)
    workers = [
        WorkerProcess(env, tmp_path / f"w{n}.log", settings_path="worker.WorkerSettings").start() for n in (1, 2)
    ]
    try:
        async with client(api.url, tenant[1]) as http:
            await kinds_published(http, settings)
            created = await submit(
                http,
                {
                    "a": {"kind": "echo", "input": {"n": 1}},
                    "b": {
                        "kind": "echo",
                        "input": {"gate": str(gate), "n": {"$from": "a", "pointer": "/n"}},
                        "after": ["a"],
                    },
                    "c": {"kind": "echo", "input": {"gate": str(gate)}, "after": ["a"]},
                    "d": {"kind": "echo", "input": {"b": {"$from": "b", "pointer": "/n"}}, "after": ["b", "c"]},
                },
            )

            async def both_running() -> dict | None:
                workflow = (await http.get(f"/v1/workflows/{created['id']}")).json()
                ids = [workflow["steps"][step]["jobs"] for step in ("b", "c")]
                running = all(ids) and all([(await job(http, i[0]))["status"] == "running" for i in ids])
                return workflow if running else None

            workflow = await until(both_running, timeout=60)
            gate.touch()
            done = await finished(http, created["id"])
            d_jobs = (await http.get("/v1/jobs", params={"kind": "echo", "limit": 200})).json()["items"]
    finally:
        for worker in workers:
            worker.stop()
    assert done["status"] == "succeeded", (done, workers[0].log(), workers[1].log())
    assert len(done["steps"]["d"]["jobs"]) == 1
    assert sum(1 for item in d_jobs if item["workflow_id"] == created["id"]) == 4  # a, b, c and one d
    assert await worker_ids(settings, [workflow["steps"]["b"]["jobs"][0], workflow["steps"]["c"]["jobs"][0]]) == 2


async def worker_ids(settings: Settings, job_ids: list[str]) -> int:
    """How many workers ran these jobs."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            return await conn.fetchval(
                "SELECT count(DISTINCT worker_id) FROM jobs WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in job_ids]
            )
    finally:
        await db.close()


async def test_for_each_runs_a_job_per_item_and_a_join_gets_their_results_in_order(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "list": {"kind": "echo", "input": {"items": list(range(50))}},
                "each": {
                    "kind": "echo",
                    "input": {"tag": "x"},
                    "for_each": {"$from": "list", "pointer": "/items"},
                    "after": ["list"],
                },
                "join": {"kind": "echo", "input": {"all": {"$from": "each"}}, "after": ["each"]},
            },
        )
        done = await finished(http, created["id"])
        joined = await job(http, done["steps"]["join"]["jobs"][0])
    assert done["status"] == "succeeded", done
    assert len(done["steps"]["each"]["jobs"]) == 50
    assert joined["result"]["all"] == [{"tag": "x", "item": item} for item in range(50)]


async def test_a_failed_step_cancels_what_depends_on_it_and_a_retry_lets_the_workflow_finish(
    api, settings, tenant, tmp_path
):
    allowed = tmp_path / "allowed"
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "root": {"kind": "echo", "input": {}},
                "flaky": {"kind": "echo", "input": {"fail_unless": str(allowed)}, "after": ["root"]},
                "child": {"kind": "echo", "input": {}, "after": ["flaky"]},
                "grandchild": {"kind": "echo", "input": {}, "after": ["child", "sibling"]},
                "sibling": {"kind": "echo", "input": {}, "after": ["root"]},
            },
        )
        failed = await finished(http, created["id"])
        allowed.touch()
        flaky_job = failed["steps"]["flaky"]["jobs"][0]
        retried = await http.post(f"/v1/jobs/{flaky_job}/retry")
        assert retried.status_code == 202, retried.text
        done = await finished(http, created["id"])
    statuses = {name: step["status"] for name, step in failed["steps"].items()}
    assert failed["status"] == "failed"
    assert statuses == {
        "root": "succeeded",
        "flaky": "failed",
        "child": "cancelled",
        "grandchild": "cancelled",
        "sibling": "succeeded",
    }
    assert done["status"] == "succeeded", done
    assert all(step["status"] == "succeeded" for step in done["steps"].values())
    assert done["steps"]["flaky"]["jobs"] == [flaky_job]


async def test_a_cancelled_workflow_cancels_its_running_and_waiting_steps(api, settings, tenant, tmp_path):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "hold": {"kind": "echo", "input": {"gate": str(tmp_path / "never")}},
                "next": {"kind": "echo", "input": {}, "after": ["hold"]},
            },
        )
        held = created["steps"]["hold"]["jobs"][0]
        await until(lambda: _status_is(http, held, "running"), timeout=30)
        cancelled = await http.post(f"/v1/workflows/{created['id']}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        done = await finished(http, created["id"])
        held_job = await job(http, held)
    assert done["status"] == "cancelled", done
    assert {name: step["status"] for name, step in done["steps"].items()} == {"hold": "cancelled", "next": "cancelled"}
    assert held_job["status"] == "cancelled"


async def _status_is(http: httpx.AsyncClient, job_id: str, status: str) -> bool:
    return (await job(http, job_id))["status"] == status


async def test_a_workflow_that_cannot_run_is_refused_with_422(api, tenant):
    cases = {
        "workflow-cycle": {
            "a": {"kind": "echo", "input": {}, "after": ["c"]},
            "b": {"kind": "echo", "input": {}, "after": ["a"]},
            "c": {"kind": "echo", "input": {}, "after": ["b"]},
        },
        "unknown-step": {"a": {"kind": "echo", "input": {}, "after": ["nowhere"]}},
        "unknown-kind": {"a": {"kind": "no-such-kind", "input": {}}},
        "ref-not-upstream": {
            "a": {"kind": "echo", "input": {}},
            "b": {"kind": "echo", "input": {}, "after": ["a"]},
            "c": {"kind": "echo", "input": {"x": {"$from": "b"}}, "after": ["a"]},
        },
    }
    async with client(api.url, tenant[1]) as http:
        answers = {name: await http.post("/v1/workflows", json={"steps": steps}) for name, steps in cases.items()}
    for name, answer in answers.items():
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["type"].endswith(name), (name, answer.json())
    assert answers["workflow-cycle"].json()["cycle"] in (
        ["a", "b", "c", "a"],
        ["b", "c", "a", "b"],
        ["c", "a", "b", "c"],
    )
    assert "known kinds" in answers["unknown-kind"].json()["detail"]
    assert answers["ref-not-upstream"].json()["field"] == "steps.c.input.x"


async def test_a_step_fails_when_its_ref_points_at_nothing_or_its_resolved_input_fails_its_kind(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "a": {"kind": "echo", "input": {"n": 5}},
                "missing": {"kind": "echo", "input": {"x": {"$from": "a", "pointer": "/nowhere"}}, "after": ["a"]},
                "typed": {"kind": "greet", "input": {"name": {"$from": "a", "pointer": "/n"}}, "after": ["a"]},
            },
        )
        done = await finished(http, created["id"])
        typed = await job(http, done["steps"]["typed"]["jobs"][0])
    assert done["status"] == "failed", done
    assert done["steps"]["missing"]["status"] == "failed" and done["steps"]["missing"]["jobs"] == []
    assert done["steps"]["missing"]["error"]["type"] == "unresolved_ref"
    assert done["steps"]["typed"]["status"] == "failed" and typed["error"]["type"] == "invalid_input", typed


async def test_the_event_stream_follows_the_steps_live_and_ends_with_the_workflow(api, settings, tenant, tmp_path):
    gate = tmp_path / "gate"
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "a": {"kind": "echo", "input": {"gate": str(gate)}},
                "b": {"kind": "echo", "input": {}, "after": ["a"]},
            },
        )
        reading = asyncio.create_task(read_stream(http, f"/v1/workflows/{created['id']}/events"))
        await until(lambda: _status_is(http, created["steps"]["a"]["jobs"][0], "running"), timeout=30)
        gate.touch()
        stream = await asyncio.wait_for(reading, timeout=60)
    assert stream.status == 200 and stream.ended
    changes = [(event["data"].get("step"), event["data"]["status"]) for event in stream.events]
    assert changes[-1] == (None, "succeeded"), changes
    assert [change for change in changes if change[0] == "b"] == [("b", "running"), ("b", "succeeded")], changes
    assert ("a", "succeeded") in changes and changes.index(("a", "succeeded")) < changes.index(("b", "running"))
