import time

import aioboto3
import boto3
import pytest

from pipelines.documents.ocr.textract import TextractOCR, poll_wait, request_token_for
from service.errors import PermanentError, TransientError
from testkit.documents import image_bytes, scanned_pdf, text_image
from testkit.textract_server import BUCKET, Outcome


@pytest.fixture
def server(textract_server):
    """The module's server with counters, scripts and timing reset for each test."""
    textract_server.calls.clear()
    textract_server.in_progress_seconds = 0.0
    yield textract_server


@pytest.fixture(scope="module")
def two_page_tiff(s3_server):
    """A two-page scan in S3; its key."""
    pages = [text_image("Invoice 4711", size=(600, 120)), text_image("Total due", size=(600, 120))]
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(
        Bucket=BUCKET, Key="scan.tiff", Body=image_bytes(*pages, format="TIFF")
    )
    return "scan.tiff"


@pytest.fixture
async def ocr():
    """Makes clients like the worker's (closed after the test), polling and backing off fast."""
    made: list[TextractOCR] = []

    def make(server, **options) -> TextractOCR:
        options = {"poll_interval": 0.05, "backoff": 0.01, **options}
        made.append(
            TextractOCR(aioboto3.Session(), endpoint_url=server.endpoint_url, region_name="us-east-1", **options)
        )
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


def soon(seconds: float = 60) -> float:
    return time.time() + seconds


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


async def test_text_of_each_page_in_order(server, two_page_tiff, ocr):
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    result = await client.collect(job_id, deadline=soon())
    assert result.pages == ["Invoice 4711", "Total due"]
    assert result.warnings == []
    assert server.calls["StartDocumentTextDetection"] == 1


async def test_scanned_pdf_is_read(server, s3_server, ocr):
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(
        Bucket=BUCKET, Key="scan.pdf", Body=scanned_pdf("Quarterly Report")
    )
    client = ocr(server)
    job_id = await client.start(BUCKET, "scan.pdf", request_token_for(unique("job")))
    assert (await client.collect(job_id, deadline=soon())).pages == ["Quarterly Report"]


async def test_polls_while_in_progress(server, two_page_tiff, ocr):
    server.in_progress_seconds = 0.5
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    result = await client.collect(job_id, deadline=soon())
    assert result.pages[0] == "Invoice 4711"
    assert server.calls["GetDocumentTextDetection"] > 1


def test_poll_waits_grow_with_the_time_waited_within_bounds():
    assert all(0.8 <= poll_wait(0.0, 1.0, 20.0) <= 1.0 for _ in range(100))  # the first wait: the interval
    assert all(2.0 <= poll_wait(10.0, 1.0, 20.0) <= 2.5 for _ in range(100))  # a quarter of the wait so far
    assert all(16.0 <= poll_wait(3600.0, 1.0, 20.0) <= 20.0 for _ in range(100))  # never over the longest
    assert len({poll_wait(10.0, 1.0, 20.0) for _ in range(10)}) > 1  # jittered: jobs started together spread out


async def test_follows_next_token_to_the_last_block(server, two_page_tiff, ocr):
    client = ocr(server, max_results=2)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    result = await client.collect(job_id, deadline=soon())
    assert result.pages == ["Invoice 4711", "Total due"]
    blocks = len(server.jobs[job_id].blocks)
    assert blocks > 4
    assert server.calls["GetDocumentTextDetection:NextToken"] == (blocks + 1) // 2 - 1


async def test_resumes_from_a_checkpointed_job_id_with_a_new_client(server, two_page_tiff, ocr):
    job_id = await ocr(server).start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    result = await ocr(server).collect(job_id, deadline=soon())
    assert result.pages[1] == "Total due"


async def test_same_token_and_input_is_the_same_textract_job(server, two_page_tiff, ocr):
    token = request_token_for(unique("job"))
    first = await ocr(server).start(BUCKET, two_page_tiff, token)
    second = await ocr(server).start(BUCKET, two_page_tiff, token)
    assert first == second
    assert sum(job.request.get("ClientRequestToken") == token for job in server.jobs.values()) == 1


async def test_same_token_with_other_input_is_refused(server, two_page_tiff, ocr):
    token = request_token_for(unique("job"))
    await ocr(server).start(BUCKET, two_page_tiff, token)
    with pytest.raises(PermanentError) as caught:
        await ocr(server).start(BUCKET, "another.tiff", token)
    assert caught.value.type == "textract_token_conflict"


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"]
)
async def test_throttled_start_is_retried(server, two_page_tiff, code, ocr):
    server.fail_next("StartDocumentTextDetection", code, times=2)
    job_id = await ocr(server).start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    assert job_id in server.jobs
    assert server.calls["StartDocumentTextDetection"] == 3


async def test_throttled_polls_are_retried(server, two_page_tiff, ocr):
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    server.fail_next("GetDocumentTextDetection", "ThrottlingException", times=3)
    result = await client.collect(job_id, deadline=soon())
    assert result.pages[0] == "Invoice 4711"
    assert server.calls["GetDocumentTextDetection"] >= 4


async def test_throttling_that_outlasts_the_retries_is_transient(server, two_page_tiff, ocr):
    server.fail_next("StartDocumentTextDetection", "LimitExceededException", times=3)
    with pytest.raises(TransientError) as caught:
        await ocr(server, retries=2).start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    assert caught.value.type == "textract_throttled"
    assert server.calls["StartDocumentTextDetection"] == 3


async def test_internal_errors_that_persist_are_transient(server, two_page_tiff, ocr):
    client = ocr(server, retries=1)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    server.fail_next("GetDocumentTextDetection", "InternalServerError", times=2)
    with pytest.raises(TransientError) as caught:
        await client.collect(job_id, deadline=soon())
    assert caught.value.type == "textract_unavailable"


async def test_partial_success_is_success_with_warnings(server, two_page_tiff, ocr):
    server.next_job(Outcome(failed_pages=[2]))
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    result = await client.collect(job_id, deadline=soon())
    assert result.pages == ["Invoice 4711", ""]
    assert result.warnings == ["PAGE_PROCESSING_FAILED on pages [2]"]


async def test_failed_job_carries_textracts_reason(server, two_page_tiff, ocr):
    server.next_job(Outcome(failed="Unable to process the document: bad page structure"))
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    with pytest.raises(PermanentError) as caught:
        await client.collect(job_id, deadline=soon())
    assert caught.value.type == "textract_failed"
    assert "bad page structure" in caught.value.message


async def test_missing_object_fails_fast(server, ocr):
    with pytest.raises(PermanentError) as caught:
        await ocr(server).start(BUCKET, "nowhere.pdf", request_token_for(unique("job")))
    assert caught.value.type == "invalid_s3_object"
    assert server.calls["StartDocumentTextDetection"] == 1


async def test_unsupported_document_fails_fast(server, s3_server, ocr):
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(Bucket=BUCKET, Key="notes.txt", Body=b"hi")
    with pytest.raises(PermanentError) as caught:
        await ocr(server).start(BUCKET, "notes.txt", request_token_for(unique("job")))
    assert caught.value.type == "unsupported_document"
    assert server.calls["StartDocumentTextDetection"] == 1


async def test_unknown_job_id_fails_fast(server, ocr):
    with pytest.raises(PermanentError) as caught:
        await ocr(server).collect("f" * 64, deadline=soon())
    assert caught.value.type == "textract_invalid_job"
    assert server.calls["GetDocumentTextDetection"] == 1


async def test_gives_up_at_the_deadline(server, two_page_tiff, ocr):
    server.in_progress_seconds = 600
    client = ocr(server)
    job_id = await client.start(BUCKET, two_page_tiff, request_token_for(unique("job")))
    with pytest.raises(PermanentError) as caught:
        await client.collect(job_id, deadline=soon(0.3))
    assert caught.value.type == "textract_timeout"


@pytest.mark.parametrize("job_id", ["0b5c3f2e-9d7a-4c1e-8f3a-2b6d9e0c1a47", "tenant/job:1", "x" * 80])
def test_request_tokens_are_valid_and_stable(job_id):
    token = request_token_for(job_id)
    assert token == request_token_for(job_id)
    assert token != request_token_for(job_id, run=1)
    assert 1 <= len(token) <= 64
    assert all(char.isalnum() or char in "-_" for char in token)
