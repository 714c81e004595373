"""OCR with AWS Textract's asynchronous text detection, resumable across worker restarts.

`start` is idempotent through `ClientRequestToken` (derive it from the job id with
`request_token_for`): a worker that dies after starting and restarts gets the same
Textract JobId back instead of paying for a second job. The caller checkpoints that JobId
and later calls `collect`, which polls until the job ends and pages through the result.

botocore's own retries are off so that every wait is ours: throttling answers are retried
with exponential backoff and full jitter, and everything else fails fast with a precise
`type`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from pipelines.documents.ocr import OcrResult
from pipelines.documents.ocr.textract_notices import TextractNotices
from service.errors import JobError, PermanentError, TransientError

#: Each wait between two polls, as a share of the time already waited.
POLL_GROWTH = 0.25
THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"}
UNAVAILABLE = {"InternalServerError", "ServiceUnavailableException"}
PERMANENT_TYPES = {
    "InvalidS3ObjectException": "invalid_s3_object",
    "UnsupportedDocumentException": "unsupported_document",
    "InvalidJobIdException": "textract_invalid_job",
    "BadDocumentException": "corrupt_document",
    "DocumentTooLargeException": "document_too_large",
    "IdempotentParameterMismatchException": "textract_token_conflict",
}

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def request_token_for(job_id: str, run: int = 0) -> str:
    """A valid `ClientRequestToken` (≤64 of [A-Za-z0-9-_]) that is stable for one run of a job.

    Bump `run` when a job is retried from scratch: the same token within 7 days returns the
    earlier Textract job, failed or not.
    """
    token = f"{job_id}-{run}"
    if _TOKEN.fullmatch(token):
        return token
    return hashlib.sha256(token.encode()).hexdigest()


def poll_wait(waited: float, shortest: float, longest: float) -> float:
    """The wait before the next poll of a job polled for `waited` seconds: `POLL_GROWTH` of
    that, within [`shortest`, `longest`], jittered down to 80 % so jobs started together
    spread their polls. A job is seen done at most about a quarter of its duration after it
    ended (doubling waits saw a 3 s job at 5 to 7 s), and a long one still costs few polls."""
    return min(longest, max(shortest, waited * POLL_GROWTH)) * random.uniform(0.8, 1.0)


class TextractOCR:
    def __init__(
        self,
        session: aioboto3.Session,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        max_results: int = 1000,
        poll_interval: float = 1.0,
        max_poll_interval: float = 20.0,
        retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        call_timeout: float = 30.0,
        max_connections: int = 50,
        notification_channel: dict[str, str] | None = None,
        notices: TextractNotices | None = None,
    ) -> None:
        """With `notification_channel` ({"SNSTopicArn", "RoleArn"}) and `notices` reading the
        queue subscribed to that topic, a job is checked when its notice comes, or else every
        `max_poll_interval`; without them, polled from `poll_interval` on."""
        self.session = session
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.max_results = max_results
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.notification_channel = notification_channel
        self.notices = notices
        self._config = AioConfig(
            retries={"total_max_attempts": 1},
            connect_timeout=call_timeout,
            read_timeout=call_timeout,
            max_pool_connections=max_connections,
        )
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        """The one client every job shares, made on first use: making a botocore client and
        its connection pool costs tens of milliseconds of CPU, more than a poll."""
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    self.session.client(
                        "textract", endpoint_url=self.endpoint_url, region_name=self.region_name, config=self._config
                    )
                )
        return self._client

    async def aclose(self) -> None:
        if self.notices is not None:
            await self.notices.aclose()
        await self._stack.aclose()
        self._client = None

    async def start(self, bucket: str, key: str, token: str) -> str:
        """Start text detection of s3://bucket/key; returns Textract's JobId (checkpoint it)."""
        client = await self.client()
        channel = {"NotificationChannel": self.notification_channel} if self.notification_channel else {}
        response = await self._call(
            client.start_document_text_detection,
            DocumentLocation={"S3Object": {"Bucket": bucket, "Name": key}},
            ClientRequestToken=token,
            **channel,
        )
        return response["JobId"]

    async def collect(self, job_id: str, *, deadline: float) -> OcrResult:
        """Wait for the job to end (until `deadline`, a `time.time()` timestamp, so it survives
        a restart when checkpointed) and return its text per page.

        PARTIAL_SUCCESS is a success whose `warnings` name the pages that failed.
        """
        client = await self.client()
        responses = [await self._wait_until_done(client, job_id, deadline)]
        while responses[-1].get("NextToken"):
            responses.append(
                await self._call(
                    client.get_document_text_detection,
                    JobId=job_id,
                    MaxResults=self.max_results,
                    NextToken=responses[-1]["NextToken"],
                )
            )
        return _assemble(responses)

    async def _wait_until_done(self, client: Any, job_id: str, deadline: float) -> dict[str, Any]:
        started = time.monotonic()
        while True:
            if self.notices is None:
                wait = poll_wait(time.monotonic() - started, self.poll_interval, self.max_poll_interval)
            else:  # a notice wakes it sooner; this poll is for a notice that got lost
                wait = self.max_poll_interval * random.uniform(0.8, 1.0)
            wait = max(0.0, min(deadline - time.time(), wait))
            await (asyncio.sleep(wait) if self.notices is None else self.notices.wait(job_id, timeout=wait))
            response = await self._call(client.get_document_text_detection, JobId=job_id, MaxResults=self.max_results)
            status = response["JobStatus"]
            if status in ("SUCCEEDED", "PARTIAL_SUCCESS"):
                return response
            if status == "FAILED":
                raise PermanentError(
                    f"Textract failed: {response.get('StatusMessage') or 'no reason given'}", type="textract_failed"
                )
            if time.time() >= deadline:
                raise PermanentError(
                    f"Textract job {job_id} was still {status} at the deadline", type="textract_timeout"
                )

    async def _call(self, operation: Any, **params: Any) -> dict[str, Any]:
        """One Textract call, retried with backoff while throttled or unreachable."""
        attempt = 0
        while True:
            try:
                return await operation(**params)
            except ClientError as exc:
                failure = _classify(exc)
            except (BotocoreConnectionError, HTTPClientError) as exc:
                failure = TransientError(f"Textract is unreachable: {exc}", type="textract_unavailable")
            if not failure.retryable or attempt >= self.retries:
                raise failure
            await asyncio.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt)))
            attempt += 1


def _classify(exc: ClientError) -> JobError:
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "") or code
    if code in THROTTLED:
        return TransientError(f"Textract is throttling ({code}): {message}", type="textract_throttled")
    if code in UNAVAILABLE:
        return TransientError(f"Textract is unavailable ({code}): {message}", type="textract_unavailable")
    return PermanentError(f"Textract refused ({code}): {message}", type=PERMANENT_TYPES.get(code, "textract_failed"))


def _assemble(responses: list[dict[str, Any]]) -> OcrResult:
    """LINE blocks joined per page, pages in order (a page without lines is '')."""
    lines: dict[int, list[str]] = defaultdict(list)
    warnings: dict[str, None] = {}
    for response in responses:
        for block in response.get("Blocks", []):
            if block["BlockType"] == "LINE":
                lines[block.get("Page", 1)].append(block["Text"])
        for warning in response.get("Warnings", []):
            warnings[f"{warning.get('ErrorCode', 'warning')} on pages {warning.get('Pages', [])}"] = None
        if response["JobStatus"] == "PARTIAL_SUCCESS" and response.get("StatusMessage"):
            warnings[response["StatusMessage"]] = None
    count = max(responses[0].get("DocumentMetadata", {}).get("Pages", 0), max(lines, default=0))
    return OcrResult(pages=["\n".join(lines[number]) for number in range(1, count + 1)], warnings=list(warnings))
