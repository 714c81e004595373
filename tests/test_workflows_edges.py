"""Workflows at their edges: an Idempotency-Key on `POST /v1/workflows`, the listing
(`GET /v1/workflows`, paged as `GET /v1/jobs`), the cap on a for_each step's fan-out,
and retrying a failed step's job once its workflow was cancelled. Real API, PostgreSQL,
Redis and workers; the steps' kind is testkit/sample_kinds.py's `echo`."""

from __future__ import annotations

import httpx

from testkit.service import client, new_tenant, running_worker, until
from tests.test_kinds import sample_pipelines
from tests.test_workflows import _status_is, finished, job, kinds_published, submit

ONE_STEP = {"only": {"kind": "echo", "input": {"n": 1}}}


async def _workflow_jobs(http: httpx.AsyncClient, workflow_id: str) -> int:
    listed = (await http.get("/v1/jobs", params={"kind": "echo", "limit": 200})).json()["items"]
    return sum(1 for item in listed if item["workflow_id"] == workflow_id)


async def test_an_idempotency_key_gives_one_workflow_and_a_changed_request_422(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        key = {"Idempotency-Key": "wf-7"}
        first = await http.post("/v1/workflows", json={"steps": ONE_STEP}, headers=key)
        again = await http.post("/v1/workflows", json={"steps": ONE_STEP}, headers=key)
        other = await http.post("/v1/workflows", json={"steps": ONE_STEP, "metadata": {"x": 1}}, headers=key)
        bad_key = await http.post("/v1/workflows", json={"steps": ONE_STEP}, headers={"Idempotency-Key": "a\tb"})
        await finished(http, first.json()["id"])
        jobs = await _workflow_jobs(http, first.json()["id"])
        listed = (await http.get("/v1/workflows")).json()["items"]
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-mismatch")
    assert bad_key.status_code == 400
    assert jobs == 1 and [item["id"] for item in listed] == [first.json()["id"]]


async def test_workflows_are_listed_newest_first_a_page_at_a_time_by_status(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        made = [await submit(http, {"only": {"kind": "echo", "input": {"n": n}}}) for n in range(3)]
        for workflow in made:
            await finished(http, workflow["id"])
        first = (await http.get("/v1/workflows", params={"limit": 2})).json()
        second = (await http.get("/v1/workflows", params={"limit": 2, "cursor": first["next_cursor"]})).json()
        failed = (await http.get("/v1/workflows", params={"status": "failed"})).json()
        bad = await http.get("/v1/workflows", params={"cursor": "nonsense"})
    async with client(api.url, (await new_tenant(settings))[1]) as http:
        others = (await http.get("/v1/workflows")).json()
    newest_first = [workflow["id"] for workflow in reversed(made)]
    assert [item["id"] for item in first["items"] + second["items"]] == newest_first
    assert first["next_cursor"] and second["next_cursor"] is None
    assert first["items"][0]["steps"]["only"]["status"] == "succeeded"
    assert failed == {"items": [], "next_cursor": None}
    assert bad.status_code == 400 and others["items"] == []


async def test_a_fan_out_past_the_cap_fails_its_step_with_a_precise_message(api, settings, tenant):
    capped = settings.model_copy(update={"workflow_max_fanout": 3})
    async with client(api.url, tenant[1]) as http, running_worker(capped, sample_pipelines(capped)):
        await kinds_published(http, settings)
        created = await submit(
            http,
            {
                "list": {"kind": "echo", "input": {"small": [1, 2, 3], "big": [1, 2, 3, 4]}},
                "fits": {
                    "kind": "echo",
                    "input": {},
                    "for_each": {"$from": "list", "pointer": "/small"},
                    "after": ["list"],
                },
                "over": {
                    "kind": "echo",
                    "input": {},
                    "for_each": {"$from": "list", "pointer": "/big"},
                    "after": ["list"],
                },
                "later": {"kind": "echo", "input": {}, "after": ["over"]},
            },
        )
        done = await finished(http, created["id"])
    steps = done["steps"]
    assert done["status"] == "failed", done
    assert steps["fits"]["status"] == "succeeded" and len(steps["fits"]["jobs"]) == 3
    assert steps["over"]["status"] == "failed" and steps["over"]["jobs"] == []
    assert steps["over"]["error"] == {
        "type": "fanout_too_large",
        "message": "for_each names a list of 4 items; a step runs at most 3 jobs (WORKFLOW_MAX_FANOUT)",
    }
    assert steps["later"]["status"] == "cancelled"


async def test_retrying_a_job_of_a_cancelled_workflow_is_409_and_the_workflow_stays_as_it_ended(
    api, settings, tenant, tmp_path
):
    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        held = await submit(
            http,
            {
                "hold": {"kind": "echo", "input": {"gate": str(tmp_path / "never")}},
                "next": {"kind": "echo", "input": {}, "after": ["hold"]},
            },
        )
        broke = await submit(
            http,
            {
                "broken": {"kind": "echo", "input": {"fail_unless": str(tmp_path / "never")}},
                "hold": {"kind": "echo", "input": {"gate": str(tmp_path / "never")}},
            },
        )
        hold_job, broken_job = held["steps"]["hold"]["jobs"][0], broke["steps"]["broken"]["jobs"][0]
        await until(lambda: _status_is(http, hold_job, "running"), timeout=30)
        await until(lambda: _status_is(http, broken_job, "failed"), timeout=30)
        for workflow in (held, broke):
            assert (await http.post(f"/v1/workflows/{workflow['id']}/cancel")).status_code == 202
        ended = [await finished(http, workflow["id"]) for workflow in (held, broke)]
        retried = [await http.post(f"/v1/jobs/{job_id}/retry") for job_id in (hold_job, broken_job)]
        bulk = await http.post("/v1/jobs/retry", json={"kind": "echo"})
        after = [(await http.get(f"/v1/workflows/{workflow['id']}")).json() for workflow in (held, broke)]
        jobs = [(await job(http, job_id))["status"] for job_id in (hold_job, broken_job)]
    assert [workflow["status"] for workflow in ended] == ["cancelled", "failed"], ended  # broken failed first
    for answer, workflow in zip(retried, (held, broke), strict=True):
        assert answer.status_code == 409, answer.text
        assert answer.json()["type"].endswith("workflow-cancelled")
        assert answer.json()["workflow_id"] == workflow["id"]
    assert bulk.status_code == 200 and bulk.json()["changed"] == 0, bulk.text
    assert after == ended and jobs == ["cancelled", "failed"]
