"""The contract's job API against a real PostgreSQL, Redis, uvicorn and an arq worker."""

import asyncio
import uuid

from conveyor.kinds import Pipeline, Stage
from service import ledger
from service.databases.database import Database
from testkit.files import multipart_file, text_pdf
from testkit.service import client, new_tenant, running_worker, until, wait_for_job

PROBLEM = "application/problem+json"


async def _read_input(run, input):
    size = await run.resources.storage.size(run.payload["input"]["key"])
    return {"size": size}


async def _slow(run, input):
    for step in range(50):
        await run.progress(step / 50)
        await asyncio.sleep(0.1)
    return {}


def quick_pipeline():
    return Pipeline(
        "document",
        (Stage("store", _read_input),),
        timeout=30,
        result=lambda outputs: {"bytes": outputs["store"]["size"]},
    )


def slow_pipeline():
    return Pipeline("document", (Stage("store", _read_input), Stage("wait", _slow, weight=5)), timeout=60)


async def upload(http, content=None, **kwargs):
    return await http.post("/v1/documents", files=multipart_file(content or text_pdf("hi")), **kwargs)


async def test_upload_runs_to_success(api, settings, tenant):
    _, key = tenant
    pdf = text_pdf("A resume")
    async with client(api.url, key) as http, running_worker(settings, [quick_pipeline()]):
        response = await upload(http, pdf, data={"metadata": '{"post": 7}'})
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["status"] == "queued" and job["kind"] == "document" and job["metadata"] == {"post": 7}
        polled = await http.get(f"/v1/jobs/{job['id']}")
        assert polled.status_code == 200
        done = await wait_for_job(http, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {"bytes": len(pdf)}
    assert done["progress"] == 1
    assert [stage["name"] for stage in done["stages"]] == ["store"]
    assert done["stages"][0]["status"] == "succeeded" and done["attempts"] == 1


async def test_retry_after_while_unfinished(api, tenant):
    async with client(api.url, tenant[1]) as http:
        job = (await upload(http)).json()
        polled = await http.get(f"/v1/jobs/{job['id']}")
    assert polled.headers["retry-after"] == "1"


async def test_auth_is_required_and_problem_json(api):
    async with client(api.url) as http:
        missing = await http.get("/v1/jobs")
    async with client(api.url, "cvk_not-a-key") as http:
        wrong = await http.get("/v1/jobs")
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 401


async def test_another_tenants_job_is_404(api, settings, tenant):
    _, other_key = await new_tenant(settings)
    async with client(api.url, tenant[1]) as mine, client(api.url, other_key) as theirs:
        job = (await upload(mine)).json()
        for path in (f"/v1/jobs/{job['id']}",):
            assert (await theirs.get(path)).status_code == 404
        assert (await theirs.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 404
        assert (await theirs.post(f"/v1/jobs/{job['id']}/retry")).status_code == 404
        unknown = await theirs.get(f"/v1/jobs/{uuid.uuid4()}")
        garbage = await theirs.get("/v1/jobs/not-a-uuid")
        assert unknown.status_code == garbage.status_code == 404
        assert unknown.json()["type"] == (await theirs.get(f"/v1/jobs/{job['id']}")).json()["type"]
        assert (await theirs.get("/v1/jobs")).json()["items"] == []


async def test_pagination_has_no_gaps_or_duplicates(api, tenant):
    async with client(api.url, tenant[1]) as http:
        created = [(await upload(http)).json()["id"] for _ in range(7)]
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/jobs", params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(created))
        assert (await http.get("/v1/jobs", params={"status": "queued", "kind": "document"})).json()["items"]
        assert (await http.get("/v1/jobs", params={"status": "exploded"})).status_code == 400
        assert (await http.get("/v1/jobs", params={"cursor": "garbage"})).status_code == 400
        assert (await http.get("/v1/jobs", params={"limit": "0"})).status_code == 400


async def insert_jobs(settings, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """Jobs with the ids given (uploads get random ones), straight into the ledger."""
    db = Database(settings)
    await db.open()
    try:
        async with db.transaction() as conn:
            for job_id in ids:
                await ledger.create_job(conn, job_id=job_id, tenant_id=tenant_id, kind="document", queue="q")
    finally:
        await db.close()


def ids_starting(prefix: str, count: int) -> list[uuid.UUID]:
    return [uuid.UUID(prefix + uuid.uuid4().hex[len(prefix) :]) for _ in range(count)]


async def test_jobs_are_found_by_the_start_of_their_id_within_the_tenant(api, settings, tenant):
    shared = uuid.uuid4().hex[:8]  # random, so runs on one database never meet
    mine = ids_starting(shared, 2)
    [theirs] = ids_starting(shared, 1)
    await insert_jobs(settings, tenant[0], mine)
    await insert_jobs(settings, (await new_tenant(settings))[0], [theirs])

    async def matches(prefix: str) -> list[str]:
        response = await http.get("/v1/jobs", params={"id_prefix": prefix})
        assert response.status_code == 200, response.text
        return sorted(item["id"] for item in response.json()["items"])

    async with client(api.url, tenant[1]) as http:
        assert await matches(shared) == sorted(map(str, mine))  # not the other tenant's
        assert await matches(shared[:4].upper()) == sorted(map(str, mine))
        assert await matches(str(mine[0])[:13]) == [str(mine[0])]  # dashes where the id has them
        assert await matches(shared + "-") == sorted(map(str, mine))
        assert await matches(mine[0].hex[:12]) == [str(mine[0])]  # or none
        assert await matches(str(mine[0])) == [str(mine[0])]
        assert await matches(str(theirs)[:20]) == []
        for bad in ("abc", "abcx", "ab-cd", "abcd12345-", "%", "a" * 33, "abcd ", "'; --"):
            response = await http.get("/v1/jobs", params={"id_prefix": bad})
            assert response.status_code == 400 and response.headers["content-type"] == PROBLEM, bad
            assert "id_prefix must be the start of a job id" in response.json()["detail"]


async def test_idempotency_key(api, tenant):
    pdf = text_pdf("same")
    async with client(api.url, tenant[1]) as http:
        first = await upload(http, pdf, headers={"Idempotency-Key": "k1"}, data={"metadata": "{}"})
        again = await upload(http, pdf, headers={"Idempotency-Key": "k1"}, data={"metadata": "{}"})
        other = await upload(http, text_pdf("different"), headers={"Idempotency-Key": "k1"}, data={"metadata": "{}"})
        fresh = await upload(http, pdf, headers={"Idempotency-Key": "k2"})
        listed = (await http.get("/v1/jobs")).json()["items"]
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.headers["content-type"] == PROBLEM
    assert fresh.json()["id"] != first.json()["id"]
    assert len(listed) == 2


async def test_idempotency_in_flight_is_409(api, tenant):
    """While a slow upload with a key is still streaming, the same key gets 409."""
    started = asyncio.Event()

    async def slow_body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        yield text_pdf("slow")
        started.set()
        await asyncio.sleep(1.5)
        yield b"\r\n--b--\r\n"

    headers = {"Idempotency-Key": "slow", "Content-Type": "multipart/form-data; boundary=b"}
    async with client(api.url, tenant[1]) as http:
        first = asyncio.create_task(http.post("/v1/documents", content=slow_body(), headers=headers))
        await started.wait()
        await asyncio.sleep(0.2)
        second = await upload(http, headers={"Idempotency-Key": "slow"})
        assert second.status_code == 409
        assert (await first).status_code == 202


async def test_type_is_judged_from_bytes(api, tenant):
    async with client(api.url, tenant[1]) as http:
        fake = await http.post("/v1/documents", files=multipart_file(b"MZ\x90\x00 not a pdf" * 10, "resume.pdf"))
        empty = await http.post("/v1/documents", files=multipart_file(b"", "empty.pdf"))
        json_body = await http.post("/v1/documents", json={"file": "x"})
        no_file = await http.post("/v1/documents", data={"metadata": "{}"}, files={"other": ("a", b"%PDF-1.4")})
        bad_meta = await upload(http, data={"metadata": "[1, 2]"})
        bad_callback = await upload(http, data={"callback_url": "ftp://example.com/x"})
    assert fake.status_code == 415 and fake.headers["content-type"] == PROBLEM
    assert empty.status_code == 400
    assert json_body.status_code == 415
    assert no_file.status_code == 400
    assert bad_meta.status_code == 422 and bad_callback.status_code == 422


async def test_too_large_is_413(database_url, redis_server, tmp_path, tenant):
    from testkit.service import ApiServer, make_settings

    small = make_settings(database_url, redis_server.url, tmp_path / "s", max_upload_bytes=50_000)
    async with ApiServer(small) as server, client(server.url, tenant[1]) as http:
        response = await upload(http, b"%PDF-1.4\n" + b"0" * 200_000)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert not list((tmp_path / "s").rglob("original*"))


async def test_cancel_queued_and_running(api, settings, tenant):
    async with client(api.url, tenant[1]) as http:
        queued = (await upload(http)).json()
        cancelled = await http.post(f"/v1/jobs/{queued['id']}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert (await http.post(f"/v1/jobs/{queued['id']}/cancel")).status_code == 409
        async with running_worker(settings, [slow_pipeline()]):
            running = (await upload(http)).json()
            await wait_for_job(http, running["id"], statuses=("running",))
            await asyncio.sleep(0.5)
            assert (await http.post(f"/v1/jobs/{running['id']}/cancel")).status_code == 202
            ended = await wait_for_job(http, running["id"], timeout=10)
            still = (await http.get(f"/v1/jobs/{queued['id']}")).json()
    assert ended["status"] == "cancelled"
    assert ended["finished_at"] is not None
    assert still["status"] == "cancelled" and still["attempts"] == 0


async def test_failed_job_is_recorded_and_retried(api, settings, tenant):
    attempts = []

    async def flaky(run, input):
        attempts.append(run.attempt)
        if len(attempts) == 1:
            from service.errors import PermanentError

            raise PermanentError("the parser choked", type="corrupt_pdf")
        return {"ok": True}

    pipeline = Pipeline("document", (Stage("store", _read_input), Stage("parse", flaky)), timeout=30)
    async with client(api.url, tenant[1]) as http, running_worker(settings, [pipeline]):
        job = (await upload(http)).json()
        failed = await wait_for_job(http, job["id"])
        assert failed["status"] == "failed"
        assert failed["error"] == {"type": "corrupt_pdf", "message": "the parser choked"}
        assert [s["status"] for s in failed["stages"]] == ["succeeded", "failed"]
        listed = (await http.get("/v1/jobs", params={"status": "failed"})).json()["items"]
        assert [item["id"] for item in listed] == [job["id"]]
        assert (await http.post(f"/v1/jobs/{job['id']}/retry")).status_code == 202
        done = await wait_for_job(http, job["id"])
        assert (await http.post(f"/v1/jobs/{job['id']}/retry")).status_code == 409
    assert done["status"] == "succeeded" and done["attempts"] == 2 and done["error"] is None
    assert attempts == [1, 2]


def _statuses(job) -> list[str]:
    return [stage["status"] for stage in job["stages"]]


async def _done_then_fails(run, input):
    """Reaches 100% of its own share, then fails: transiently or for good (as the job's
    metadata says), and succeeds once retried by hand."""
    await run.progress(1.0)
    from service.errors import PermanentError, TransientError

    if run.job["metadata"].get("transient"):
        raise TransientError("the parser is busy", type="busy", retry_after=60)
    if run.attempt == 1:
        raise PermanentError("the parser choked", type="corrupt_pdf")
    return {}


def _three_stages():
    return Pipeline(
        "document",
        (Stage("store", _read_input), Stage("parse", _done_then_fails), Stage("persist", _read_input)),
        timeout=30,
    )


async def test_failed_job_shows_what_was_done_and_skips_later_stages(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, [_three_stages()]):
        job = (await upload(http)).json()
        assert job["progress"] == 0
        failed = await wait_for_job(http, job["id"])
        assert failed["status"] == "failed" and failed["progress"] == round(1 / 3, 4)  # only `store` finished
        assert _statuses(failed) == ["succeeded", "failed", "skipped"]
        assert failed["stages"][2]["started_at"] is None and failed["stages"][2]["finished_at"] is None
        assert (await http.post(f"/v1/jobs/{job['id']}/retry")).status_code == 202
        done = await wait_for_job(http, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1
    assert _statuses(done) == ["succeeded", "succeeded", "succeeded"]  # the skipped stage ran this time


async def test_requeued_and_cancelled_jobs_show_what_was_done(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, [_three_stages()]):
        job = (await upload(http, data={"metadata": '{"transient": true}'})).json()

        async def requeued():
            body = (await http.get(f"/v1/jobs/{job['id']}")).json()
            return body if body["status"] == "queued" and body["attempts"] == 1 else None

        waiting = await until(requeued)
        assert waiting["progress"] == round(1 / 3, 4) and waiting["error"]["type"] == "busy"
        assert (await http.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
        cancelled = (await http.get(f"/v1/jobs/{job['id']}")).json()
    assert cancelled["status"] == "cancelled" and cancelled["progress"] == round(1 / 3, 4)
    assert _statuses(cancelled) == ["succeeded", "cancelled", "skipped"]


async def test_repeated_cancel_and_retry_with_an_idempotency_key_get_the_first_answer(api, settings, tenant):
    async def fail_once(run, input):
        if run.attempt == 1:
            from service.errors import PermanentError

            raise PermanentError("the parser choked", type="corrupt_pdf")
        return {"ok": True}

    pipeline = Pipeline("document", (Stage("parse", fail_once),), timeout=30)
    async with client(api.url, tenant[1]) as http:
        queued = (await upload(http)).json()
        first = await http.post(f"/v1/jobs/{queued['id']}/cancel", headers={"Idempotency-Key": "cancel-1"})
        again = await http.post(f"/v1/jobs/{queued['id']}/cancel", headers={"Idempotency-Key": "cancel-1"})
        assert (first.status_code, again.status_code) == (202, 202)  # without the key: 409, it has ended
        assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
        other = (await upload(http)).json()
        reused = await http.post(f"/v1/jobs/{other['id']}/cancel", headers={"Idempotency-Key": "cancel-1"})
        assert reused.status_code == 422

        async with running_worker(settings, [pipeline]):
            job = (await upload(http)).json()
            assert (await wait_for_job(http, job["id"]))["status"] == "failed"
            retries = [
                await http.post(f"/v1/jobs/{job['id']}/retry", headers={"Idempotency-Key": "retry-1"}) for _ in range(2)
            ]
            assert [response.status_code for response in retries] == [202, 202]
            assert retries[1].headers["idempotent-replayed"] == "true"
            done = await wait_for_job(http, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2  # queued again once, run once


async def test_health(api):
    async with client(api.url) as http:
        live = await http.get("/livez")
        ready = await http.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.headers["content-type"].startswith("application/health+json")
    checks = ready.json()["checks"]
    assert {entry["status"] for name, entries in checks.items() if name != "workers" for entry in entries} == {"pass"}
    assert ready.json()["status"] == "warn"  # no worker runs in this test: accepted, but reported


async def test_openapi_documents_every_route(api):
    from service.app import routes

    async with client(api.url) as http:
        spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for route in routes():
        if route.path == "/openapi.json":
            continue
        for method in route.methods - {"HEAD"}:
            assert (route.path, method.lower()) in documented, route.path
