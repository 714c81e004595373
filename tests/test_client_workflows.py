"""`conveyor.client`'s workflows against a real API, PostgreSQL, Redis and worker, sync
and async: submit (once per Idempotency-Key), wait on the event stream (no polling),
list, cancel; and the typed Workflow gives back the API's JSON exactly."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.client import ApiError, AsyncClient, Client, Workflow
from testkit.service import client, running_worker, until
from tests.test_cli_ops import _logged_api
from tests.test_kinds import sample_pipelines
from tests.test_workflows import kinds_published

STEPS = {
    "first": {"kind": "echo", "input": {"n": 3}},
    "second": {"kind": "echo", "input": {"n": {"$from": "first", "pointer": "/n"}}, "after": ["first"]},
}


async def test_the_async_client_submits_waits_on_the_stream_lists_and_cancels(settings, tenant, tmp_path):
    server, log = _logged_api(settings)
    async with server, running_worker(settings, sample_pipelines(settings)):
        async with client(server.url, tenant[1]) as http:
            await kinds_published(http, settings)
        async with AsyncClient(server.url, tenant[1]) as conveyor:
            submitted = await conveyor.submit_workflow(STEPS, metadata={"ref": 1}, idempotency_key="wf-1")
            done = await conveyor.wait_workflow(submitted, timeout=60)
            replayed = await conveyor.submit_workflow(STEPS, metadata={"ref": 1}, idempotency_key="wf-1")
            held = await conveyor.submit_workflow({"hold": {"kind": "echo", "input": {"gate": str(tmp_path / "no")}}})
            cancelled = await conveyor.cancel_workflow(held.id)
            ended = await conveyor.wait_workflow(held.id, timeout=60)
            page = await conveyor.workflows(limit=1)
            rest = await conveyor.workflows(limit=5, cursor=page.next_cursor)
            succeeded = await conveyor.workflows(status="succeeded")
    assert submitted.status == "running" and submitted.metadata == {"ref": 1}
    assert done.succeeded and [step.status for step in done.steps.values()] == ["succeeded", "succeeded"], done
    assert len(done.steps["second"].jobs) == 1 and done.finished_at is not None
    assert replayed.id == submitted.id
    assert cancelled.id == held.id and ended.status == "cancelled"
    assert [item.id for item in page.items + rest.items] == [held.id, submitted.id] and rest.next_cursor is None
    assert [item.id for item in succeeded.items] == [submitted.id]
    assert log.count("GET", f"/v1/workflows/{submitted.id}/events") == 1
    assert log.count("GET", f"/v1/workflows/{submitted.id}") == 2  # before the stream and after its end: no polling


async def test_wait_workflow_reads_past_the_ending_of_a_run_retried_since(settings, tenant, tmp_path):
    gate, allowed = tmp_path / "gate", tmp_path / "allowed"
    server, log = _logged_api(settings)
    async with server, running_worker(settings, sample_pipelines(settings)):
        async with client(server.url, tenant[1]) as http:
            await kinds_published(http, settings)
        async with AsyncClient(server.url, tenant[1]) as conveyor:
            step = {"kind": "echo", "input": {"gate": str(gate), "fail_unless": str(allowed)}}
            submitted = await conveyor.submit_workflow({"flaky": step})
            gate.touch()
            failed = await conveyor.wait_workflow(submitted.id, timeout=60)
            gate.unlink()  # the retried job waits for it: the workflow runs, its stream holds the ending before
            await conveyor.retry(failed.steps["flaky"].jobs[0])
            streams, reads = (log.count("GET", f"/v1/workflows/{submitted.id}{end}") for end in ("/events", ""))
            waiting = asyncio.create_task(conveyor.wait_workflow(submitted.id, timeout=60))
            await until(lambda: log.count("GET", f"/v1/workflows/{submitted.id}/events") == streams + 2, timeout=30)
            allowed.touch()
            gate.touch()
            done = await waiting
    assert failed.status == "failed" and done.succeeded, (failed, done)
    # the stale ending ends one stream; the next resumes after it and waits: no loop of reads
    assert log.count("GET", f"/v1/workflows/{submitted.id}/events") == streams + 2
    assert log.count("GET", f"/v1/workflows/{submitted.id}") == reads + 3


async def test_the_sync_client_round_trips_a_workflow_and_raises_api_errors(api, settings, tenant):
    def scenario() -> tuple[Workflow, Workflow, ApiError]:
        with Client(api.url, tenant[1]) as conveyor:
            submitted = conveyor.submit_workflow(STEPS)
            done = conveyor.wait_workflow(submitted.id, timeout=60)
            try:
                conveyor.submit_workflow({"a": {"kind": "echo", "input": {}, "after": ["a"]}})
            except ApiError as exc:
                return submitted, done, exc
            raise AssertionError("a cycle was accepted")

    async with client(api.url, tenant[1]) as http, running_worker(settings, sample_pipelines(settings)):
        await kinds_published(http, settings)
        submitted, done, refused = await asyncio.to_thread(scenario)
        as_api = (await http.get(f"/v1/workflows/{done.id}")).json()
    assert done.to_dict() == as_api and Workflow.from_dict(as_api) == done
    assert done.succeeded and submitted.id == done.id
    assert refused.status == 422 and refused.type.endswith("workflow-cycle")


def test_submit_workflow_refuses_a_misspelt_option_before_sending():
    with Client("http://127.0.0.1:9", "cvk_x") as conveyor, pytest.raises(TypeError, match="metdata"):
        conveyor.submit_workflow(STEPS, metdata={})  # type: ignore[call-arg]
