"""A job's callback_url gets exactly one signed delivery when the job ends, whatever its
outcome: the real API, an in-process worker and a webhook receiver checking signatures."""

import json
from datetime import datetime
from importlib.metadata import version

import pytest

from conveyor.kinds import Pipeline, Stage
from pipelines.notifications.pipeline import CALLBACK_PIPELINE
from service.errors import PermanentError
from service.ledger.callbacks import callback_job_id
from testkit.notifications import local_settings, receiver, secret  # noqa: F401 (fixtures)
from testkit.service import client, running_worker, wait_for_job
from testkit.webhook_receiver import Reply
from tests.test_api_jobs import quick_pipeline, upload


@pytest.fixture
def settings(database_url, redis_server, tmp_path):
    return local_settings(database_url, redis_server.url, tmp_path / "storage")


async def _refuse(run, input):
    raise PermanentError("the parser choked", type="corrupt_pdf")


def failing_pipeline():
    return Pipeline("document", (Stage("parse", _refuse),), timeout=30)


async def ended_with_callback(http, receiver, path, *, pipeline, settings, cancel=False):
    """Upload a document with a callback to `path`; return the job and its callback job."""
    response = await upload(http, data={"callback_url": f"{receiver.url}{path}"})
    job = response.json()
    if cancel:
        assert (await http.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
    async with running_worker(settings, [pipeline, CALLBACK_PIPELINE]):
        job = await wait_for_job(http, job["id"])
        callback = await wait_for_job(http, str(callback_job_id(job["id"], job["attempts"])), timeout=30)
    return job, callback


@pytest.mark.parametrize(
    ("pipeline", "cancel", "status"),
    [
        (quick_pipeline, False, "succeeded"),
        (failing_pipeline, False, "failed"),
        (quick_pipeline, True, "cancelled"),
    ],
)
async def test_one_signed_callback_per_ending(api, settings, tenant, receiver, pipeline, cancel, status):
    async with client(api.url, tenant[1]) as http:
        job, callback = await ended_with_callback(
            http, receiver, f"/cb/{status}", pipeline=pipeline(), settings=settings, cancel=cancel
        )
    assert job["status"] == status
    assert callback["status"] == "succeeded" and callback["kind"] == "callback"
    [request] = receiver.at(f"/cb/{status}")
    assert request.verified, request.problem
    assert request.headers["webhook-id"] == callback["id"]
    assert request.headers["user-agent"] == f"Conveyor/{version('conveyor')}"
    body = json.loads(request.body)
    assert body["type"] == f"job.{status}"
    assert body["data"] == {"id": job["id"], "kind": "document", "status": status}
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


async def test_callback_retries_keep_the_webhook_id_and_body(api, settings, tenant, receiver):
    receiver.script("/cb/flaky", Reply(500), Reply(302, {"location": "http://example.com/"}))
    async with client(api.url, tenant[1]) as http:
        _, callback = await ended_with_callback(
            http, receiver, "/cb/flaky", pipeline=quick_pipeline(), settings=settings
        )
    requests = receiver.at("/cb/flaky")
    assert callback["status"] == "succeeded" and callback["attempts"] == 3
    assert len(requests) == 3 and all(request.verified for request in requests)
    assert {request.headers["webhook-id"] for request in requests} == {callback["id"]}
    assert len({request.body for request in requests}) == 1


async def test_callback_to_a_gone_endpoint_stops_at_once(api, settings, tenant, receiver):
    receiver.script("/cb/gone", Reply(410))
    async with client(api.url, tenant[1]) as http:
        _, callback = await ended_with_callback(
            http, receiver, "/cb/gone", pipeline=quick_pipeline(), settings=settings
        )
    assert callback["status"] == "failed" and callback["error"]["type"] == "endpoint_gone"
    assert len(receiver.at("/cb/gone")) == 1


async def test_callback_to_a_private_address_is_refused_by_the_worker(api, settings, tenant, receiver):
    guarded = settings.model_copy(update={"callback_allowed_hosts": []})
    async with client(api.url, tenant[1]) as http:
        _, callback = await ended_with_callback(
            http, receiver, "/cb/private", pipeline=quick_pipeline(), settings=guarded
        )
    assert callback["status"] == "failed" and callback["error"]["type"] == "destination_refused"
    assert receiver.at("/cb/private") == []
