"""`conveyor.client` against a real PostgreSQL, Redis, uvicorn and arq worker: uploads,
waits, events, steering, errors and the rate limiter's 429s, sync and async.

The API runs on the test's event loop, so the sync client runs in a thread.
"""

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from conveyor.client import ApiError, AsyncClient, Client, Event, Job, Kind, UnsupportedFile, calls
from conveyor.client.content import DOCUMENTS, VIDEOS, upload_target
from conveyor.client.errors import retry_after_seconds
from conveyor.client.models import apply_event
from conveyor.client.sse import EventParser
from testkit.files import text_pdf
from testkit.service import ApiServer, make_settings, running_worker
from tests.test_cli import failing_pipeline, pdf_file, quick_pipeline
from tests.test_cli_ops import RequestLog, _logged_api, two_stage_pipeline

HOOK = {"channel": "webhook", "to": "https://example.com/hook", "template": "order.paid"}


def in_thread(function, *args, **kwargs):
    return asyncio.to_thread(function, *args, **kwargs)


# The real service


async def test_upload_wait_get_and_events(api, settings, tenant, tmp_path):
    path = pdf_file(tmp_path)

    def scenario() -> tuple[Job, Job, Job, list[Event]]:
        with Client(api.url, tenant[1]) as conveyor:
            submitted = conveyor.upload(path, metadata={"post": 7})
            done = conveyor.wait(submitted.id, timeout=60)
            return submitted, done, conveyor.get(done.id), list(conveyor.events(done.id))

    async with running_worker(settings, [quick_pipeline()]):
        submitted, done, fetched, events = await in_thread(scenario)
    assert submitted.kind == "document" and submitted.status == "queued" and submitted.metadata == {"post": 7}
    assert done.status == "succeeded" and done.succeeded and done.result == {"size": path.stat().st_size}
    assert done.progress == 1 and [stage.name for stage in done.stages] == ["store"]
    assert isinstance(done.finished_at, datetime) and done.finished_at.tzinfo is not None
    assert fetched == done
    assert events[-1].final and events[-1].status == "succeeded"  # the stream of an ended job replays it
    assert any(event.type == "stage" for event in events)


async def test_a_job_round_trips_to_the_apis_json(api, tenant, tmp_path):
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {tenant[1]}"}) as http:
        async with AsyncClient(api.url, tenant[1]) as conveyor:
            job = await conveyor.upload(pdf_file(tmp_path))
            assert job.to_dict() == (await http.get(f"/v1/jobs/{job.id}")).json()


async def test_async_follow_and_events(settings, tenant, tmp_path):
    server, log = _logged_api(settings)
    async with server, running_worker(settings, [two_stage_pipeline(log.events_asked)]):
        async with AsyncClient(server.url, tenant[1]) as conveyor:
            job = await conveyor.upload(pdf_file(tmp_path))
            states = [state async for state in conveyor.follow(job, timeout=60)]
            events = [event async for event in conveyor.events(job.id)]
    assert states[0] == job and states[-1].status == "succeeded" and states[-1].result == {"read": True}
    assert "running" in [state.status for state in states]
    progress = [state.progress for state in states]
    assert progress == sorted(progress), ([(s.status, s.stage, s.progress) for s in states], [e.data for e in events])
    assert log.count("GET", f"/v1/jobs/{job.id}/events") == 2  # follow's, then events'
    assert log.count("GET", f"/v1/jobs/{job.id}") == 1  # one read after the final event: no polling
    assert events[-1].final and [event.status for event in events if event.type == "status"][-1] == "succeeded"


async def test_wait_polls_when_the_stream_is_refused(settings, tenant, tmp_path):
    server, log = _logged_api(settings, refuse_events=True)
    async with server, running_worker(settings, [quick_pipeline()]):
        async with AsyncClient(server.url, tenant[1]) as conveyor:
            job = await conveyor.wait((await conveyor.upload(pdf_file(tmp_path))).id, timeout=60)
            with pytest.raises(ApiError) as refused:
                [event async for event in conveyor.events(job.id)]
    assert job.status == "succeeded"
    assert log.count("GET", f"/v1/jobs/{job.id}/events") == 2  # wait's try, then events'
    assert log.count("GET", f"/v1/jobs/{job.id}") >= 2  # the first read, then polls
    assert refused.value.status == 502 and refused.value.detail == "bad gateway"


async def test_wait_gives_up_at_its_timeout_while_the_stream_keeps_pinging(settings, tenant, tmp_path):
    """A job nobody runs, followed over a stream the API keeps alive with pings."""
    pinging = settings.model_copy(update={"event_stream_keepalive_seconds": 0.1})
    async with ApiServer(pinging) as server, AsyncClient(server.url, tenant[1]) as conveyor:
        job = await conveyor.upload(pdf_file(tmp_path))
        with pytest.raises(TimeoutError, match="still queued after 1s"):
            await asyncio.wait_for(conveyor.wait(job.id, timeout=1), 30)  # not an endless wait


class CutFirstStream(RequestLog):
    """Ends the first event stream right after its first event with an id, as a dropped
    connection would; notes the Last-Event-ID each stream request carried."""

    def __init__(self, app) -> None:
        super().__init__(app)
        self.last_event_ids: list[str | None] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/events"):
            return await super().__call__(scope, receive, send)
        headers = dict(scope["headers"])
        self.last_event_ids.append(headers.get(b"last-event-id", b"").decode() or None)
        first = len(self.last_event_ids) == 1
        cut = False

        async def cutting(message) -> None:
            nonlocal cut
            if cut:
                return
            if first and message["type"] == "http.response.body" and b"id: " in message.get("body", b""):
                cut = True
                message = {**message, "more_body": False}
            await send(message)

        await super().__call__(scope, receive, cutting)


async def test_events_resume_after_a_dropped_stream(settings, tenant, tmp_path):
    server = ApiServer(settings)
    log = CutFirstStream(server.server.config.app)
    server.server.config.app = log
    async with server, running_worker(settings, [two_stage_pipeline(log.events_asked)]):
        async with AsyncClient(server.url, tenant[1]) as conveyor:
            job = await conveyor.upload(pdf_file(tmp_path))
            events = [event async for event in conveyor.events(job.id)]
    ids = [event.id for event in events if event.id]
    assert len(log.last_event_ids) == 2 and log.last_event_ids[0] is None
    assert log.last_event_ids[1] == ids[0]  # the second stream resumed after the first's event
    assert len(ids) == len(set(ids)), "no event twice"
    assert events[-1].final and events[-1].status == "succeeded"


async def test_cancel_retry_and_a_failed_wait(api, settings, tenant, tmp_path):
    async with AsyncClient(api.url, tenant[1]) as conveyor:
        job = await conveyor.upload(pdf_file(tmp_path), idempotency_key=f"cancel-{uuid.uuid4()}")
        with pytest.raises(TimeoutError, match=f"job {job.id} is still queued after 1s"):
            await conveyor.wait(job.id, timeout=1)  # no worker yet
        with pytest.raises(ApiError) as not_retryable:
            await conveyor.retry(job.id)
        cancelled = await conveyor.cancel(job.id)
        assert (await conveyor.wait(job.id, timeout=30)).status == "cancelled"
        retried = await conveyor.retry(job.id)
        page = await conveyor.jobs(status="queued", limit=5)
        async with running_worker(settings, [failing_pipeline()]):
            failed = await conveyor.wait(job.id, timeout=60)
    assert not_retryable.value.status == 409
    assert cancelled.id == job.id and cancelled.status == "cancelled"
    assert retried.status == "queued" and job.id in [item.id for item in page.items]
    assert failed.status == "failed" and failed.error is not None and failed.error.type == "not_a_resume"


async def test_idempotency_key_gives_one_job(api, tenant, tmp_path):
    path, key = pdf_file(tmp_path), f"once-{uuid.uuid4()}"
    with Client(api.url, tenant[1]) as conveyor:
        first, again = [await in_thread(conveyor.upload, path, idempotency_key=key) for _ in range(2)]
    assert first.id == again.id


async def test_notify(api, tenant):
    send_at = datetime.now(UTC) + timedelta(hours=1)
    async with AsyncClient(api.url, tenant[1]) as conveyor:
        job = await conveyor.notify(**HOOK, data={"order": 7}, send_at=send_at, metadata={"order": 7})
        with pytest.raises(ApiError) as invalid:
            await conveyor.notify("pigeon", "someone", "welcome")
    assert job.kind == "notification" and job.status == "queued" and job.metadata == {"order": 7}
    assert invalid.value.status == 422 and invalid.value.body["field"] == "channel"
    assert "must be one of" in invalid.value.detail


async def test_errors_are_api_errors(api, tenant, tmp_path):
    unknown = str(uuid.uuid4())

    def scenario(key: str):
        with Client(api.url, key) as conveyor:
            try:
                conveyor.get(unknown)
            except ApiError as error:
                return error
        raise AssertionError("no ApiError")

    missing, unauthorised = await in_thread(scenario, tenant[1]), await in_thread(scenario, "cvk_wrong")
    assert missing.status == 404 and missing.type.endswith("/not-found") and missing.detail == "no such job"
    assert str(missing) == "404 Not Found: no such job"
    assert unauthorised.status == 401 and unauthorised.title == "Unauthorized"
    text = tmp_path / "notes.pdf"
    text.write_text("just words, whatever the name says")
    with Client(api.url, tenant[1]) as conveyor:
        with pytest.raises(UnsupportedFile, match="is not a PDF"):
            conveyor.upload(text)
        with pytest.raises(TypeError, match="unknown option"):
            conveyor.upload(pdf_file(tmp_path), priority="high")


async def test_429_is_waited_out_as_retry_after_says(database_url, redis_server, tmp_path, tenant):
    """20 requests a minute, all of them at once: one more waits Retry-After (3 s at most)
    for the next, unless the client may not wait that long."""
    settings = make_settings(database_url, redis_server.url, tmp_path, rate_limit_per_minute=20)
    server, log = _logged_api(settings)
    job_path = None
    async with server, AsyncClient(server.url, tenant[1]) as patient:
        job = await patient.upload(pdf_file(tmp_path))
        job_path = f"/v1/jobs/{job.id}"
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {tenant[1]}"}) as http:
            while (await http.get(job_path)).status_code != 429:
                pass
        async with AsyncClient(server.url, tenant[1], max_retry_wait=0.1) as hasty:
            with pytest.raises(ApiError) as limited:
                await hasty.get(job.id)
        fetched = await patient.get(job.id)
    assert limited.value.status == 429 and 0 < limited.value.retry_after <= 3
    assert fetched == job
    client_answers = [status for _, path, status in log.answers if path == job_path][-3:]
    assert client_answers == [429, 429, 200]  # hasty's refusal; patient's, then its retry


# Pure parts


@pytest.mark.integration  # a subprocess
def test_import_is_light():
    """`import conveyor.client` loads httpx and none of the service's own stack."""
    probe = "import sys, json, conveyor.client; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True).stdout)
    heavy = ("service", "pipelines", "starlette", "asyncpg", "aioboto3", "redis", "arq", "pydantic")
    assert [name for name in loaded if name.split(".")[0] in heavy] == []
    assert "httpx" in loaded


def test_sse_parser_follows_the_event_stream_format():
    lines = [
        ": ping",
        "event: status",
        "id: 1-0",
        'data: {"status": "running"}',
        "",
        "data: one",
        "data:two",
        "",
        "event: without-data",
        "",
        "retry: 10",
        "id: 2-0",
        "data: x",
        "",
    ]
    parser = EventParser()
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(event.event, event.data, event.id) for event in events] == [
        ("status", '{"status": "running"}', "1-0"),
        ("message", "one\ntwo", "1-0"),  # the last id carries over
        ("message", "x", "2-0"),
    ]


def test_a_stage_event_moves_the_stage_not_the_job_status():
    job = Job("j", "document", "running", progress=0.1, stage="store")
    staged = apply_event(
        job, Event("stage", {"type": "stage", "stage": "read", "status": "succeeded", "progress": 0.5})
    )
    assert (staged.status, staged.stage, staged.progress) == ("running", "read", 0.5)
    ended = apply_event(staged, Event("status", {"type": "status", "status": "failed", "error": {"type": "x"}}))
    assert ended.status == "failed" and ended.error is not None and ended.error.type == "x"
    assert ended.finished and not staged.finished


def test_job_bodies_follow_the_contract():
    """What submit and submit_many send (POST /v1/jobs and /v1/jobs/batch are the jobs API's)."""
    run_at = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    one = calls.submit("greet", {"name": "Ada"}, {"priority": "high", "run_at": run_at, "idempotency_key": "k-1"})
    assert (one.method, one.path, dict(one.headers)) == ("POST", "/v1/jobs", {"Idempotency-Key": "k-1"})
    assert one.json == {"kind": "greet", "input": {"name": "Ada"}, "priority": "high", "run_at": run_at.isoformat()}
    batch = calls.submit_many([{"kind": "greet", "input": {}, "concurrency_key": "acme"}], "b-1")
    assert batch.path == "/v1/jobs/batch" and batch.headers == {"Idempotency-Key": "b-1"}
    assert batch.json == {"jobs": [{"kind": "greet", "input": {}, "concurrency_key": "acme"}]}
    bulk = calls.bulk("retry", {"kind": "greet", "created_after": run_at, "dry_run": True})
    assert (bulk.path, bulk.json) == (
        "/v1/jobs/retry",
        {"kind": "greet", "created_after": run_at.isoformat(), "dry_run": True},
    )
    with pytest.raises(TypeError, match=r"unknown option.*prority"):
        calls.submit("greet", {}, {"prority": "high"})
    with pytest.raises(TypeError, match="whole batch"):
        calls.submit_many([{"kind": "greet", "input": {}, "idempotency_key": "k"}], None)


def test_a_kind_keeps_what_it_does_not_know():
    described = {"kind": "greet", "input_schema": {"type": "object"}, "stages": ["greet"], "tries": 3, "new": 1}
    kind = Kind.from_dict(described)
    assert (kind.kind, kind.stages, kind.tries, kind.concurrency, kind.extra) == (
        "greet",
        ["greet"],
        3,
        None,
        {"new": 1},
    )


def test_upload_target_reads_magic_numbers(tmp_path):
    samples = {
        "a.pdf": (text_pdf("x"), DOCUMENTS, "application/pdf"),
        "a.png": (b"\x89PNG\r\n\x1a\n" + bytes(8), DOCUMENTS, "image/png"),
        "a.mp4": (b"\x00\x00\x00\x18ftypisom" + bytes(8), VIDEOS, "video/mp4"),
        "a.mov": (b"\x00\x00\x00\x14ftypqt  " + bytes(8), VIDEOS, "video/quicktime"),
        "a.webm": (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", VIDEOS, "video/webm"),
        "a.mkv": (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", VIDEOS, "video/x-matroska"),
    }
    for name, (content, endpoint, mime) in samples.items():
        (tmp_path / name).write_bytes(content)
        assert upload_target(tmp_path / name) == (endpoint, mime), name
    (tmp_path / "a.txt").write_bytes(b"hello")
    assert upload_target(tmp_path / "a.txt") is None


def test_retry_after_takes_seconds_or_an_http_date():
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_seconds(answer("7")) == 7
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 < (retry_after_seconds(answer(in_a_minute)) or 0) <= 60
    assert retry_after_seconds(answer("soon")) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_no_key_is_refused_at_once(monkeypatch):
    monkeypatch.delenv("CONVEYOR_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no API key"):
        Client("http://127.0.0.1:1")
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvk_from_env")
    monkeypatch.setenv("CONVEYOR_URL", "http://conveyor.invalid:9000/")
    with Client() as conveyor:
        assert conveyor.settings.url == "http://conveyor.invalid:9000" and conveyor.settings.api_key == "cvk_from_env"
