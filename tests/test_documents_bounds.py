"""Documents that cost more than they look: dense text and pages too large to OCR, through
the real API, a worker, pdfium and tesseract.

A small PDF can hold millions of characters; the text kept is bounded per page and per
document, the Job shows only its start, and the rest is read a page at a time. A PDF of
huge blank pages would cost tesseract minutes of CPU each; it fails before any is rendered.
"""

import asyncio
import os

import pytest

from pipelines.documents.pipeline import DOCUMENT_PIPELINE
from testkit.documents import blank_poster_pdf, dense_pdf, scanned_pdf, text_pdf
from testkit.files import multipart_file
from testkit.service import ApiServer, client, make_settings, new_tenant, running_worker, wait_for_job

PAGE_CHARS, DOCUMENT_CHARS, RESULT_CHARS = 4_000, 30_000, 2_000
DENSE_PAGES = 12
JOB_BYTES = 12_000
"""What one document Job may weigh as JSON here: the text shown, fields, stages, links."""


def dense_page(number: int) -> str:
    """~12,000 characters, every line saying which page it is on."""
    return "\n".join(f"Page {number} line {line:03d} " + "lorem ipsum dolor sit amet " * 3 for line in range(120))


@pytest.fixture
def bounded_settings(database_url, redis_server, tmp_path):
    return make_settings(
        database_url,
        redis_server.url,
        tmp_path / "storage",
        queue_name=f"conveyor-test-{os.urandom(4).hex()}",
        max_page_text_chars=PAGE_CHARS,
        max_document_text_chars=DOCUMENT_CHARS,
        max_result_text_chars=RESULT_CHARS,
    )


async def submit(http, content: bytes) -> str:
    response = await http.post("/v1/documents", files=multipart_file(content))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def read_pages(http, job_id: str) -> list[dict]:
    """Every page of the job's text, following `next_page` from page 1."""
    pages, number = [], 1
    while number is not None:
        response = await http.get(f"/v1/jobs/{job_id}/text", params={"page": number})
        assert response.status_code == 200, response.text
        pages.append(response.json())
        number = pages[-1]["next_page"]
    return pages


async def test_dense_text_is_bounded_shown_in_part_and_read_page_by_page(bounded_settings):
    _, key = await new_tenant(bounded_settings)
    _, other_key = await new_tenant(bounded_settings)
    pdf = dense_pdf("Jane Doe\njane@example.com", *(dense_page(number) for number in range(2, DENSE_PAGES + 1)))
    assert len(pdf) < 25_000  # ~130,000 characters of text in a few kilobytes
    async with ApiServer(bounded_settings) as api, client(api.url, key) as http, client(api.url, other_key) as other:
        async with running_worker(bounded_settings, [DOCUMENT_PIPELINE]):
            job_id = await submit(http, pdf)
            job = await wait_for_job(http, job_id, timeout=90)
        assert job["status"] == "succeeded", job
        answers = await asyncio.gather(
            *(http.get(f"/v1/jobs/{job_id}") for _ in range(8)),
            *(http.get("/v1/jobs", params={"limit": 200}) for _ in range(4)),
        )
        pages = await read_pages(http, job_id)
        stored = await http.get(job["result"]["text_file"]["url"])
        walled = [await other.get(f"/v1/jobs/{job_id}/text"), await other.get(job["result"]["text_file"]["url"])]
        beyond = await http.get(f"/v1/jobs/{job_id}/text", params={"page": DENSE_PAGES + 1})
        malformed = await http.get(f"/v1/jobs/{job_id}/text", params={"page": "0"})

    assert [answer.status_code for answer in answers] == [200] * 12
    assert max(len(answer.content) for answer in answers[:8]) < JOB_BYTES
    assert max(len(answer.content) for answer in answers[8:]) < JOB_BYTES
    result = job["result"]
    # Extraction ran on the bounded text (whether pages of filler read as a résumé is the
    # judgement's business: tests/test_extraction_judgement.py).
    assert result["pages"] == DENSE_PAGES and "resume_confidence" in result and "email" in result["fields"]
    assert len(result["text"]) == RESULT_CHARS and result["text"].startswith("Jane Doe")
    assert result["text_truncated"] is True

    # Page 1 is whole; each dense page is cut at the page limit until the document's limit,
    # which cuts page 9 short; pages after it are not read.
    texts = [page["text"] for page in pages]
    assert [page["page"] for page in pages] == list(range(1, DENSE_PAGES + 1))
    assert {page["pages"] for page in pages} == {DENSE_PAGES}
    assert "jane@example.com" in texts[0] and not pages[0]["truncated"]
    kept = DOCUMENT_CHARS - len(texts[0])
    expected = [min(PAGE_CHARS, max(0, kept - PAGE_CHARS * index)) for index in range(DENSE_PAGES - 1)]
    assert [len(text) for text in texts[1:]] == expected
    assert result["truncated_pages"] == list(range(2, DENSE_PAGES + 1))
    assert all(page["truncated"] for page in pages[1:])
    for number, text in enumerate(texts, start=1):
        assert all(line.startswith(f"Page {number} ") for line in text.splitlines()[:-1] if number > 1)
    whole = "\n\n".join(text for text in texts if text)
    assert result["text_chars"] == len(whole) and whole.startswith(result["text"])
    assert stored.status_code == 200 and stored.text == whole

    assert [answer.status_code for answer in walled] == [404, 404]
    for problem in (*walled, beyond, malformed):
        assert problem.headers["content-type"] == "application/problem+json"
    assert beyond.status_code == 404 and beyond.json()["type"].endswith("no-such-page")
    assert malformed.status_code == 400


async def test_a_short_document_is_shown_whole(api, settings, tenant):
    async with client(api.url, tenant[1]) as http, running_worker(settings, [DOCUMENT_PIPELINE]):
        job = await wait_for_job(http, await submit(http, text_pdf("Jane Doe", "Second page")), timeout=60)
        pages = await read_pages(http, job["id"])
    result = job["result"]
    assert result["text_truncated"] is False and result["truncated_pages"] == []
    assert [page["text"].strip() for page in pages] == ["Jane Doe", "Second page"]
    assert result["text"] == "\n\n".join(page["text"] for page in pages)


async def test_text_of_jobs_that_have_none(api, settings, tenant):
    async with client(api.url, tenant[1]) as http:
        queued = await submit(http, text_pdf("Not read yet"))
        not_ready = await http.get(f"/v1/jobs/{queued}/text")
        unknown = await http.get("/v1/jobs/00000000-0000-4000-8000-000000000000/text")
        export = await http.post("/v1/exports", json={"dataset": "events", "from": "2026-01-01", "to": "2026-01-02"})
        no_text = await http.get(f"/v1/jobs/{export.json()['id']}/text")
    assert not_ready.status_code == 409 and not_ready.headers["retry-after"]
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("not-found")
    assert no_text.status_code == 404 and no_text.json()["type"].endswith("no-text")


async def test_huge_blank_pages_fail_before_any_ocr_and_scans_still_work(api, settings, tenant):
    """200 poster pages are 8 billion pixels to render and OCR at the default limits: over
    the budget (2 billion), the job fails in the text stage at once, and is not retried."""
    async with client(api.url, tenant[1]) as http, running_worker(settings, [DOCUMENT_PIPELINE]):
        posters = await submit(http, blank_poster_pdf(200))
        scan = await submit(http, scanned_pdf("Jane Doe"))
        failed = await wait_for_job(http, posters, timeout=30)
        succeeded = await wait_for_job(http, scan, timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["error"]["type"] == "ocr_budget_exceeded"
    assert "200 pages to OCR" in failed["error"]["message"]
    assert failed["attempts"] == 1
    assert {stage["name"]: stage["status"] for stage in failed["stages"]}["text"] == "failed"
    assert succeeded["status"] == "succeeded" and "jane doe" in succeeded["result"]["text"].lower()
