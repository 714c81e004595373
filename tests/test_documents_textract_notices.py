"""Textract completion notices: SNS → SQS (moto's) → every worker through Redis."""

import asyncio
import json
import time

import aioboto3
import boto3
import pytest
from redis.asyncio import Redis

from pipelines.documents.ocr import textract_notices
from pipelines.documents.ocr.textract import TextractOCR, request_token_for
from pipelines.documents.ocr.textract_notices import TextractNotices, parse_notice, status_key
from testkit.documents import image_bytes, text_image
from testkit.textract_server import BUCKET, ROLE_ARN, notice_channel

FALLBACK_POLL = 60.0
"""So long that a job seen done sooner was woken by its notice, not by a poll."""


@pytest.fixture
def server(textract_server):
    textract_server.calls.clear()
    textract_server.in_progress_seconds = 0.5
    textract_server.send_notices = True
    yield textract_server
    textract_server.send_notices = True


@pytest.fixture(scope="module")
def scan(s3_server):
    boto3.client("s3", endpoint_url=s3_server.endpoint_url).put_object(
        Bucket=BUCKET,
        Key="notice-scan.png",
        Body=image_bytes(text_image("Invoice 4711", size=(600, 120)), format="PNG"),
    )
    return "notice-scan.png"


@pytest.fixture
async def workers(s3_server, redis_server):
    """Makes Textract clients wired like two workers' (one notice queue, one Redis), closed after."""
    topic, queue_url = notice_channel(s3_server.endpoint_url)
    redis = Redis.from_url(redis_server.url)
    made: list[TextractOCR] = []

    def make(server, max_poll_interval: float = FALLBACK_POLL) -> TextractOCR:
        session = aioboto3.Session()
        notices = TextractNotices(
            session, redis, queue_url, endpoint_url=s3_server.endpoint_url, region_name="us-east-1"
        )
        made.append(
            TextractOCR(
                session,
                endpoint_url=server.endpoint_url,
                region_name="us-east-1",
                poll_interval=0.05,
                max_poll_interval=max_poll_interval,
                backoff=0.01,
                notification_channel={"SNSTopicArn": topic, "RoleArn": ROLE_ARN},
                notices=notices,
            )
        )
        return made[-1]

    make.queue_url = queue_url
    yield make
    for client in made:
        await client.aclose()
    await redis.aclose()


def token() -> str:
    return request_token_for(f"job-{time.monotonic_ns()}")


async def test_a_job_is_checked_once_when_its_notice_comes(server, scan, workers):
    client = workers(server)
    job_id = await client.start(BUCKET, scan, token())
    async with asyncio.timeout(FALLBACK_POLL / 2):  # a poll would come after 48-60 s
        result = await client.collect(job_id, deadline=time.time() + 120)
    assert result.pages == ["Invoice 4711"]
    assert server.jobs[job_id].request["NotificationChannel"]["RoleArn"] == ROLE_ARN
    assert server.calls["notices"] == 1
    assert server.calls["GetDocumentTextDetection"] == 1  # no polls while it was in progress


async def test_a_notice_received_by_one_worker_wakes_the_one_waiting(server, scan, workers):
    first, second = workers(server), workers(server)  # both read the queue: either may get a notice
    jobs = [await first.start(BUCKET, scan, token()) for _ in range(6)]
    async with asyncio.timeout(FALLBACK_POLL / 2):
        results = await asyncio.gather(
            *((first if n % 2 else second).collect(job_id, deadline=time.time() + 120) for n, job_id in enumerate(jobs))
        )
    assert [result.pages for result in results] == [["Invoice 4711"]] * 6
    assert server.calls["notices"] == 6
    assert server.calls["GetDocumentTextDetection"] == 6


async def test_the_worker_that_reads_a_notice_wakes_its_own_waiter_at_once(server, scan, workers, monkeypatch):
    """No lookup in Redis is needed for a job whose notice this process read itself."""
    monkeypatch.setattr(textract_notices, "CHECK_INTERVAL", FALLBACK_POLL)
    client = workers(server)
    jobs = [await client.start(BUCKET, scan, token()) for _ in range(12)]  # more than one receive's ten
    async with asyncio.timeout(FALLBACK_POLL / 2):
        results = await asyncio.gather(*(client.collect(job_id, deadline=time.time() + 120) for job_id in jobs))
    assert [result.pages for result in results] == [["Invoice 4711"]] * 12
    assert server.calls["GetDocumentTextDetection"] == 12


async def test_a_lost_notice_only_delays_the_job_to_its_next_poll(server, scan, workers):
    server.send_notices = False
    client = workers(server, max_poll_interval=0.3)
    job_id = await client.start(BUCKET, scan, token())
    result = await client.collect(job_id, deadline=time.time() + 60)
    assert result.pages == ["Invoice 4711"]
    assert server.calls["notices"] == 0
    assert server.calls["GetDocumentTextDetection"] >= 2  # IN_PROGRESS at first, then done


async def test_a_notice_that_came_before_the_wait_is_found_in_redis(server, scan, workers, redis_server):
    """A worker restarted after the notice was consumed still finds the job's status."""
    client = workers(server)
    job_id = await client.start(BUCKET, scan, token())
    redis = Redis.from_url(redis_server.url)
    try:
        async with asyncio.timeout(30):
            while await redis.get(status_key(job_id)) is None:
                await client.notices.wait("someone-elses-job", timeout=0.05)  # keeps the reader running
    finally:
        await redis.aclose()
    resumed = workers(server)  # a new process: no waiter was registered when the notice came
    async with asyncio.timeout(FALLBACK_POLL / 2):
        result = await resumed.collect(job_id, deadline=time.time() + 120)
    assert result.pages == ["Invoice 4711"]
    assert server.calls["GetDocumentTextDetection"] == 1


async def test_messages_that_are_not_notices_are_dropped_and_reading_goes_on(server, scan, workers, s3_server):
    client = workers(server)
    sqs = boto3.client("sqs", endpoint_url=s3_server.endpoint_url)
    sqs.send_message(QueueUrl=workers.queue_url, MessageBody="not json at all")
    sqs.send_message(QueueUrl=workers.queue_url, MessageBody=json.dumps({"Type": "Notification", "Message": "{}"}))
    job_id = await client.start(BUCKET, scan, token())
    async with asyncio.timeout(FALLBACK_POLL / 2):
        result = await client.collect(job_id, deadline=time.time() + 120)
    assert result.pages == ["Invoice 4711"]
    empty = {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    async with asyncio.timeout(10):  # a waiter is woken before its notice's deletion is answered
        while queue_counts(sqs, workers.queue_url) != empty:
            await asyncio.sleep(0.05)


def queue_counts(sqs, queue_url: str) -> dict[str, str]:
    return sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            json.dumps({"Type": "Notification", "Message": json.dumps({"JobId": "j1", "Status": "SUCCEEDED"})}),
            ("j1", "SUCCEEDED"),
        ),
        (json.dumps({"JobId": "j2", "Status": "FAILED", "API": "StartDocumentTextDetection"}), ("j2", "FAILED")),
        (json.dumps({"Type": "Notification", "Message": "not json"}), None),
        (json.dumps({"JobId": 7, "Status": "SUCCEEDED"}), None),
        (json.dumps(["JobId"]), None),
        ("", None),
    ],
)
def test_parse_notice(body, expected):
    assert parse_notice(body) == expected
