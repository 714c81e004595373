"""The document pipeline end to end: the API, a worker in this process, real tesseract,
moto's S3 over HTTP, the local Textract and the local OpenAI-compatible server."""

import asyncio
import contextlib
import json
import os
import stat
import uuid
from pathlib import Path

import asyncpg
import pytest

from pipelines.documents.ocr.textract import request_token_for
from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from service.api.submissions import input_key
from testkit.documents import image_bytes, mixed_pdf, png_claiming_size, scanned_pdf, text_image, text_pdf
from testkit.files import multipart_file
from testkit.llm_servers import API_KEY, Fault
from testkit.service import ApiServer, client, make_settings, new_tenant, running_worker, wait_for_job
from testkit.textract_server import BUCKET, ROLE_ARN, notice_channel

RESUME = """Jane Doe
jane.doe@example.com | Phone: +49 30 1234 5678

Skills: Python, PostgreSQL, Kubernetes
"""
SCANNED_RESUME = ("Jane Doe\nSkills: Python", "jane@example.com")
"""Two scanned pages that read as a (short) résumé, so its fields are kept."""
STAGES = ["store", "text", "ocr", "extract", "persist"]
PDF, PNG = "application/pdf", "image/png"


async def submit(http, content: bytes, content_type: str = PDF, metadata: dict | None = None) -> str:
    data = {"metadata": json.dumps(metadata)} if metadata else {}
    response = await http.post("/v1/documents", files=multipart_file(content, "upload", content_type), data=data)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def run_one(api, settings, key, content: bytes, content_type: str = PDF, metadata=None) -> dict:
    async with client(api.url, key) as http, running_worker(settings, [DOCUMENT_PIPELINE]):
        return await wait_for_job(http, await submit(http, content, content_type, metadata), timeout=90)


def stage_statuses(job: dict) -> dict[str, str]:
    return {stage["name"]: stage["status"] for stage in job["stages"]}


def words(text: str) -> str:
    return " ".join(text.split()).lower()


# -- tesseract (the embedded default) ------------------------------------------------------


async def test_text_layer_pdf_needs_no_ocr(api, settings, tenant):
    job = await run_one(
        api, settings, tenant[1], text_pdf(RESUME, "References on request, gladly given."), metadata={"candidate": 1}
    )
    assert job["status"] == "succeeded", job
    assert stage_statuses(job) == dict(
        zip(STAGES, ["succeeded", "succeeded", "skipped", "succeeded", "succeeded"], strict=True)
    )
    result = job["result"]
    assert result["pages"] == 2 and result["ocr"] is None
    assert "jane.doe@example.com" in result["text"] and "References on request" in result["text"]
    assert result["fields"]["email"] == "jane.doe@example.com"
    assert result["fields"]["name"] == "Jane Doe"
    assert {"Python", "PostgreSQL", "Kubernetes"} <= set(result["fields"]["skills"])
    assert result["field_confidence"]["email"] > 0.5 and result["field_confidence"]["summary"] is None
    assert result["resume_confidence"] >= 0.5
    assert job["progress"] == 1


async def test_scanned_pdf_is_ocrd(api, settings, tenant):
    job = await run_one(api, settings, tenant[1], scanned_pdf(*SCANNED_RESUME))
    assert job["status"] == "succeeded", job
    assert stage_statuses(job)["ocr"] == "succeeded"
    result = job["result"]
    assert result["pages"] == 2 and result["ocr"] == {"engine": "tesseract", "pages": [1, 2]}
    assert "jane doe" in words(result["text"]) and "jane@example.com" in result["text"]
    assert result["fields"]["email"] == "jane@example.com"


async def test_png_is_ocrd(api, settings, tenant):
    png = image_bytes(text_image("Invoice 4711\nsam@example.org"), format="PNG")
    job = await run_one(api, settings, tenant[1], png, PNG)
    assert job["status"] == "succeeded", job
    assert job["result"]["pages"] == 1 and job["result"]["content_type"] == PNG
    assert "invoice 4711" in words(job["result"]["text"])
    assert job["result"]["fields"]["email"] is None  # an invoice, not a résumé: no candidate's email
    assert job["result"]["field_confidence"]["email"] < 0.4 and job["result"]["resume_confidence"] < 0.5


async def test_a_document_without_text_has_empty_fields_and_no_confidence(api, settings, tenant):
    job = await run_one(api, settings, tenant[1], text_pdf(" "))
    assert job["status"] == "succeeded", job
    assert stage_statuses(job)["extract"] == "skipped"
    result = job["result"]
    assert result["fields"]["name"] is None and result["fields"]["skills"] == []
    assert result["field_confidence"] == dict.fromkeys(result["fields"]) and result["resume_confidence"] is None


async def test_the_workspace_is_made_under_work_dir(api, settings, tenant, tmp_path):
    """WORK_DIR holds a document job's scratch files, as it does a video's: a private (0700)
    directory named after the job while the attempt runs, gone once it ends."""
    work_dir = tmp_path / "work"
    settings = settings.model_copy(update={"work_dir": str(work_dir)})
    seen: dict[str, int] = {}

    async def watch() -> None:
        while True:
            for path in work_dir.iterdir() if work_dir.exists() else ():
                with contextlib.suppress(FileNotFoundError):
                    seen.setdefault(path.name, stat.S_IMODE(path.stat().st_mode))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        job = await run_one(api, settings, tenant[1], scanned_pdf(*SCANNED_RESUME))
    finally:
        watcher.cancel()
    assert job["status"] == "succeeded", job
    assert [name for name in seen if name.startswith(f"conveyor-{job['id']}-")], seen
    assert set(seen.values()) == {0o700}
    assert list(work_dir.iterdir()) == []


async def test_mixed_pdf_ocrs_only_the_scanned_page(api, settings, tenant):
    job = await run_one(api, settings, tenant[1], mixed_pdf(RESUME, "Scanned Appendix"))
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["pages"] == 2 and result["ocr"] == {"engine": "tesseract", "pages": [2]}
    text = words(result["text"])
    assert 0 <= text.index("jane.doe@example.com") < text.index("scanned appendix")  # page order kept


async def test_documents_table_holds_pages_and_fields(api, settings, tenant):
    job = await run_one(
        api, settings, tenant[1], text_pdf(RESUME, "Second page of the resume text."), metadata={"post": 7}
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM documents WHERE job_id = $1", uuid.UUID(job["id"]))
    finally:
        await conn.close()
    assert row["tenant_id"] == tenant[0] and row["page_count"] == 2
    assert "Second page" in json.loads(row["pages"])[1]
    assert row["email"] == "jane.doe@example.com" and row["name"] == "Jane Doe"
    assert json.loads(row["metadata"]) == {"post": "7"}  # searchable as metadata.post=7
    assert row["content_type"] == PDF
    assert row["text"] == job["result"]["text"]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "error_type"),
    [
        (text_pdf("secret", user_password="pw"), PDF, "encrypted_pdf"),
        (text_pdf(RESUME)[:400], PDF, "corrupt_pdf"),
        (png_claiming_size(60_000, 60_000), PNG, "image_too_large"),
        (text_pdf("one page here", "two pages here", "three pages here"), PDF, "too_many_pages"),
    ],
    ids=["encrypted", "truncated", "bomb", "too-many-pages"],
)
async def test_bad_input_fails_precisely_and_the_worker_carries_on(
    api, database_url, redis_server, tmp_path, tenant, content, content_type, error_type
):
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        max_document_pages=2,
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
    )
    async with ApiServer(settings) as server, client(server.url, tenant[1]) as http:
        async with running_worker(settings, [DOCUMENT_PIPELINE]):
            bad = await submit(http, content, content_type)
            good = await submit(http, text_pdf(RESUME))
            failed = await wait_for_job(http, bad, timeout=60)
            succeeded = await wait_for_job(http, good, timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == error_type, failed["error"]
    assert failed["error"]["message"]
    assert stage_statuses(failed)["text"] == "failed"
    assert succeeded["status"] == "succeeded"


async def test_tampered_original_fails_verification(api, settings, tenant):
    async with client(api.url, tenant[1]) as http:
        job_id = await submit(http, text_pdf(RESUME))
        [stored] = Path(settings.storage_url.removeprefix("file://")).rglob("original")
        stored.write_bytes(stored.read_bytes()[:-1] + b"X")
        async with running_worker(settings, [DOCUMENT_PIPELINE]):
            failed = await wait_for_job(http, job_id, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["type"] == "input_mismatch"
    assert stage_statuses(failed)["store"] == "failed"


async def test_textract_with_file_storage_is_a_configuration_error(database_url, redis_server, tmp_path, tenant):
    settings = make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        ocr_provider="textract",
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
    )
    async with ApiServer(settings) as server:
        job = await run_one(server, settings, tenant[1], scanned_pdf("Needs OCR"))
    assert job["status"] == "failed"
    assert job["error"]["type"] == "configuration_error"
    assert "STORAGE_URL=s3://" in job["error"]["message"]


# -- Textract on S3, OpenAI-compatible extraction ------------------------------------------


@pytest.fixture
def cloud_settings(database_url, redis_server, s3_server, textract_server, llm_servers, tmp_path):
    textract_server.calls.clear()
    textract_server.in_progress_seconds = 0.0
    llm_servers.reset()
    return make_settings(
        database_url,
        redis_server.url,
        tmp_path / "unused",
        storage_url=f"s3://{BUCKET}/prefix-{os.urandom(3).hex()}",
        s3_endpoint_url=s3_server.endpoint_url,
        ocr_provider="textract",
        textract_endpoint_url=textract_server.endpoint_url,
        region="us-east-1",
        textract_poll_interval=0.1,
        textract_max_poll_interval=0.4,
        llm_provider="openai",
        llm_base_url=llm_servers.openai_base_url,
        llm_api_key=API_KEY,
        llm_model="gpt-test",
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
    )


async def test_textract_and_openai_through_s3(cloud_settings, textract_server, llm_servers, tenant):
    textract_server.in_progress_seconds = 1.5
    llm_servers.script(Fault("rate_limited", retry_after_ms="50"))
    async with ApiServer(cloud_settings) as server:
        job = await run_one(server, cloud_settings, tenant[1], scanned_pdf(*SCANNED_RESUME))
    assert job["status"] == "succeeded", job
    assert job["result"]["ocr"] == {"engine": "textract", "pages": [1, 2]}
    assert "jane@example.com" in job["result"]["text"]
    assert job["result"]["fields"]["email"] == "jane@example.com"
    assert textract_server.calls["StartDocumentTextDetection"] == 1
    assert textract_server.calls["GetDocumentTextDetection"] >= 2  # IN_PROGRESS at least once
    assert llm_servers.calls["openai"] == 2  # one 429, then the answer
    assert "jane@example.com" in llm_servers.requests[-1]["messages"][-1]["content"]
    [started] = [
        started
        for started in textract_server.jobs.values()
        if started.request["ClientRequestToken"] == request_token_for(job["id"])
    ]
    s3_object = started.request["DocumentLocation"]["S3Object"]
    prefix = cloud_settings.storage_url.removeprefix(f"s3://{BUCKET}/")
    assert s3_object == {"Bucket": BUCKET, "Name": f"{prefix}/{input_key(tenant[0], uuid.UUID(job['id']))}"}


async def test_textract_notices_take_the_place_of_polls(cloud_settings, s3_server, textract_server, tenant):
    topic, queue_url = notice_channel(s3_server.endpoint_url)
    settings = cloud_settings.model_copy(
        update={
            "textract_sns_topic_arn": topic,
            "textract_sns_role_arn": ROLE_ARN,
            "textract_sqs_queue_url": queue_url,
            "sqs_endpoint_url": s3_server.endpoint_url,
            "textract_max_poll_interval": 600.0,
        }
    )
    textract_server.in_progress_seconds = 1.0
    async with ApiServer(settings) as server:
        job = await run_one(server, settings, tenant[1], scanned_pdf("Noticed Scan", "second page"))
    assert job["status"] == "succeeded", job
    assert "noticed scan" in words(job["result"]["text"])
    assert textract_server.calls["notices"] == 1
    assert textract_server.calls["GetDocumentTextDetection"] == 1  # no polling while it ran


async def test_textract_pages_through_next_token(cloud_settings, textract_server, tenant):
    textract_server.max_blocks_per_response = 5  # a few words per response, as a long document would need
    try:
        async with ApiServer(cloud_settings) as server:
            job = await run_one(
                server, cloud_settings, tenant[1], scanned_pdf("First page here", "Second page there and more")
            )
    finally:
        textract_server.max_blocks_per_response = 1000
    assert job["status"] == "succeeded", job
    assert textract_server.calls["GetDocumentTextDetection:NextToken"] >= 2
    assert words(job["result"]["text"]) == "first page here second page there and more"


async def test_restarted_worker_resumes_the_same_textract_job(cloud_settings, textract_server, tenant):
    textract_server.in_progress_seconds = 4.0
    conn = await asyncpg.connect(cloud_settings.database_url)
    async with ApiServer(cloud_settings) as server, client(server.url, tenant[1]) as http:
        job_id = await submit(http, scanned_pdf("Resumed Scan"))
        doomed = await running_worker(cloud_settings, [DOCUMENT_PIPELINE]).__aenter__()
        while True:
            checkpoint = await conn.fetchval(
                "SELECT checkpoint FROM job_stages WHERE job_id = $1::uuid AND name = 'ocr'", job_id
            )
            if checkpoint and "textract_job_id" in json.loads(checkpoint):
                break
            await asyncio.sleep(0.05)
        await doomed.crash()
        async with running_worker(cloud_settings, [DOCUMENT_PIPELINE]):
            done = await wait_for_job(http, job_id, timeout=60)
    await conn.close()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert textract_server.calls["StartDocumentTextDetection"] == 1
    assert textract_server.calls["GetDocumentTextDetection"] >= 1  # how many depends on the machine's pace
    assert json.loads(checkpoint)["textract_job_id"] in textract_server.jobs
    assert "resumed scan" in words(done["result"]["text"])


# -- search ----------------------------------------------------------------------------------


async def test_search_by_email_status_and_metadata_with_pages_and_tenants(api, settings, tenant):
    _, other_key = await new_tenant(settings)
    mine = []
    async with client(api.url, tenant[1]) as http, client(api.url, other_key) as theirs:
        async with running_worker(settings, [DOCUMENT_PIPELINE]):
            for n in range(5):
                resume = RESUME.replace("jane.doe@", f"{'jane.doe' if n % 2 == 0 else 'john'}@")
                mine.append(await submit(http, text_pdf(resume), metadata={"batch": "b1", "n": n}))
            foreign = await submit(theirs, text_pdf(RESUME), metadata={"batch": "b1", "n": 0})
            for job_id in mine:
                await wait_for_job(http, job_id, timeout=90)
            await wait_for_job(theirs, foreign, timeout=90)

        async def search(session, **params) -> list[str]:
            found, cursor = [], None
            while True:
                page = await session.get("/v1/documents", params={**params, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                found += [item["id"] for item in page.json()["items"]]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    return found

        newest_first = list(reversed(mine))
        janes = [job_id for n, job_id in enumerate(mine) if n % 2 == 0][::-1]
        assert await search(http, limit=2) == newest_first
        assert await search(http, email="Jane.Doe@Example.com", limit=2) == janes
        assert await search(http, email="jane.doe@example.com", status="succeeded", limit=1) == janes
        assert await search(http, status="failed") == []
        assert await search(http, status="succeeded", limit=3) == newest_first
        assert await search(http, **{"metadata.batch": "b1", "limit": 2}) == newest_first
        assert await search(http, **{"metadata.batch": "b1", "metadata.n": "3"}) == [mine[3]]
        assert await search(http, **{"metadata.n": "2", "email": "jane.doe@example.com"}) == [mine[2]]
        assert await search(http, **{"metadata.n": "1", "email": "jane.doe@example.com"}) == []
        assert await search(theirs, email="jane.doe@example.com") == [foreign]
        assert await search(theirs, **{"metadata.batch": "b1"}) == [foreign]
        item = (await http.get("/v1/documents", params={"limit": 1})).json()["items"][0]
        assert item["result"]["fields"]["email"] and item["stages"]
        assert (await http.get("/v1/documents", params={"colour": "red"})).status_code == 400
        assert (await http.get("/v1/documents", params={"status": "exploded"})).status_code == 400
        assert (await http.get("/v1/documents", params={"cursor": "garbage"})).status_code == 400
