"""Logs with job context, OpenTelemetry spans from the request to each stage (exported
over OTLP/HTTP to a local receiver), and Sentry events with job tags (to a local ingest)."""

import json
import subprocess
import sys

import pytest
import sentry_sdk
from pydantic import SecretStr

from conveyor.kinds import Pipeline, Stage
from service.telemetry import tracing
from testkit.files import multipart_file, text_pdf
from testkit.service import ApiServer, client, new_tenant, running_worker, wait_for_job
from testkit.telemetry_receiver import TelemetryReceiver

pytestmark = pytest.mark.integration

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


async def _ok(run, input):
    return {}


async def _crash(run, input):
    raise RuntimeError("the stage fell over")


def two_stages():
    return Pipeline("document", (Stage("store", _ok), Stage("extract", _ok)), timeout=30)


@pytest.fixture
def receiver():
    server = TelemetryReceiver()
    server.start()
    yield server
    while tracing.enabled():  # in-process workers that other tests crashed never said goodbye
        tracing.shutdown()
    server.stop()


@pytest.fixture
def isolated(settings):
    """The test's settings with a few changed (as the environment would set them)."""
    return lambda **overrides: settings.model_copy(update=overrides)


async def upload(http, **headers):
    response = await http.post("/v1/documents", files=multipart_file(text_pdf("x")), headers=headers)
    assert response.status_code == 202
    return response.json()["id"]


async def test_logs_carry_the_job_context(isolated, capfd):
    settings = isolated(log_json=True, log_level="INFO")
    _, key = await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, key) as http, running_worker(settings, [two_stages()]):
        job_id = await upload(http)
        await wait_for_job(http, job_id)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    started = [line for line in lines if line.get("event") == "stage started" and line.get("job_id") == job_id]
    assert [line["stage"] for line in started] == ["store", "extract"]
    for line in started:
        assert line["kind"] == "document" and line["attempt"] == 1 and line["tenant"]
    ended = next(line for line in lines if line.get("event") == "job ended" and line.get("job_id") == job_id)
    assert ended["status"] == "succeeded" and "stage" not in ended


async def test_a_job_that_fails_for_good_is_logged_as_a_warning(isolated, capfd, quick_retries):
    settings = isolated(log_json=True, log_level="WARNING")
    _, key = await new_tenant(settings)
    crashing = Pipeline("document", (Stage("store", _crash),), timeout=30)
    async with ApiServer(settings) as api, client(api.url, key) as http, running_worker(settings, [crashing]):
        job_id = await upload(http)
        assert (await wait_for_job(http, job_id))["status"] == "failed"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "job failed" and line.get("job_id") == job_id]
    assert len(failed) == 1
    assert failed[0]["level"] == "warning" and failed[0]["kind"] == "document"
    assert failed[0]["error_type"] == "exception"
    cause = [line for line in lines if line.get("job_id") == job_id and "the stage fell over" in json.dumps(line)]
    assert cause, "the exception's own text stays in the logs (the job's error is written for the tenant)"


def test_console_logs_have_no_colours_when_not_a_terminal():
    script = (
        "from service.config import Settings; from service.telemetry.logs import configure_logging; import structlog; "
        "configure_logging(Settings(log_json=False)); structlog.get_logger('t').warning('plain', n=1)"
    )
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "plain" in ended.stderr and "n=1" in ended.stderr, ended.stderr
    assert "\x1b[" not in ended.stderr


async def test_spans_from_request_through_enqueue_to_each_stage(isolated, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    settings = isolated(otel_exporter="otlp")
    _, key = await new_tenant(settings)
    async with ApiServer(settings) as api, client(api.url, key) as http:
        async with running_worker(settings, [two_stages()]):
            job_id = await upload(http, traceparent=CALLER_TRACEPARENT)
            assert (await wait_for_job(http, job_id))["status"] == "succeeded"
        # leaving the worker flushed its spans
    spans = [span for span in receiver.spans if span["trace_id"] == CALLER_TRACE]
    by_name = {span["name"]: span for span in spans}
    assert {"POST /v1/documents", "enqueue", "job document", "stage store", "stage extract"} <= set(by_name)
    request, enqueue, job = by_name["POST /v1/documents"], by_name["enqueue"], by_name["job document"]
    assert request["parent_id"] == "00f067aa0ba902b7"  # continues the caller's trace
    assert enqueue["parent_id"] == request["span_id"]
    assert job["parent_id"] == request["span_id"]  # carried in the job's traceparent
    assert job["attributes"]["conveyor.job_id"].string_value == job_id
    assert by_name["stage store"]["parent_id"] == job["span_id"]
    assert by_name["stage extract"]["parent_id"] == job["span_id"]


async def test_sentry_gets_crashes_with_job_and_tenant_tags(isolated, receiver, quick_retries):
    settings = isolated(sentry_dsn=SecretStr(f"http://publickey@127.0.0.1:{receiver.port}/1"))
    tenant_id, key = await new_tenant(settings)
    try:
        async with ApiServer(settings) as api, client(api.url, key) as http:
            async with running_worker(settings, [Pipeline("document", (Stage("store", _crash),), timeout=30)]):
                job_id = await upload(http)
                failed = await wait_for_job(http, job_id)
            # leaving the worker flushed its reports
    finally:
        sentry_sdk.init(dsn=None)
    assert failed["status"] == "failed" and failed["error"]["type"] == "exception"
    events = [event for event in receiver.events() if event.get("tags", {}).get("job_id") == job_id]
    assert len(events) == failed["attempts"], receiver.sentry_items  # one report a crash: each try crashed
    event = events[0]
    assert event["tags"]["tenant"] == str(tenant_id) and event["tags"]["kind"] == "document"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert all("sentry_key=publickey" in auth for auth in receiver.sentry_auth)
