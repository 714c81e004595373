"""A local AWS Textract that speaks the real wire protocol (AWS JSON 1.1) and really reads.

`StartDocumentTextDetection` fetches the object from the S3 server (moto) and OCRs every
page with tesseract in the background, producing PAGE/LINE/WORD blocks with geometry,
confidence and page numbers; `GetDocumentTextDetection` answers IN_PROGRESS until the work
is done and `in_progress_seconds` have passed, then pages the blocks by MaxResults and
NextToken. A job started with a `NotificationChannel` publishes Textract's completion
notice to that SNS topic (moto's, at `sns_endpoint_url`) once it is done. Tests script
faults (`fail_next`, `next_job`, `send_notices`) and assert on `calls`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pypdfium2
from PIL import Image, ImageSequence
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.storage.sniffing import PDF, SNIFF_BYTES, sniff_document

from .served_app import Served, ServedApp

CONTENT_TYPE = "application/x-amz-json-1.1"
SERVER_FAULTS = {"ThrottlingException", "InternalServerError"}  # 5xx in the service model; the rest are 400
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
BUCKET = "textract-uploads"
"""The bucket the `textract_server` fixture creates for tests' documents."""


class AwsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> Response:
        status = 500 if self.code in SERVER_FAULTS else 400
        body = json.dumps({"__type": self.code, "message": self.message})
        return Response(body, status_code=status, media_type=CONTENT_TYPE, headers={"x-amzn-ErrorType": self.code})


@dataclass
class Outcome:
    """How the next started job ends: FAILED with a message, or with some pages failing."""

    failed: str | None = None
    failed_pages: list[int] = field(default_factory=list)


@dataclass
class Job:
    request: dict[str, Any]
    outcome: Outcome
    ready_at: float
    status: str = "IN_PROGRESS"
    status_message: str | None = None
    pages: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


class TextractServer(Served):
    def __init__(
        self, s3_endpoint_url: str, *, in_progress_seconds: float = 0.0, sns_endpoint_url: str | None = None
    ) -> None:
        self.s3 = boto3.client("s3", endpoint_url=s3_endpoint_url)
        self.sns = boto3.client("sns", endpoint_url=sns_endpoint_url or s3_endpoint_url)
        self.in_progress_seconds = in_progress_seconds
        self.send_notices = True
        """False: notices are lost on the way (the channel is still accepted)."""
        self.max_blocks_per_response = 1000
        """Fewer blocks per answer than MaxResults asks for, so small documents page too."""
        self.calls: collections.Counter[str] = collections.Counter()
        self.jobs: dict[str, Job] = {}
        self._tokens: dict[str, tuple[str, str]] = {}
        self._faults: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._outcomes: collections.deque[Outcome] = collections.deque()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.served = ServedApp(Starlette(routes=[Route("/", self._endpoint, methods=["POST"])]))

    @property
    def endpoint_url(self) -> str:
        return self.url

    def fail_next(self, operation: str, code: str, times: int = 1) -> None:
        """Answer the next `times` calls of `operation` with the AWS error `code`."""
        with self._lock:
            self._faults[operation].extend([code] * times)

    def next_job(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    # -- the wire protocol -----------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        service, _, operation = target.partition(".")
        try:
            if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")
            if request.headers.get("content-type") != CONTENT_TYPE or service != "Textract":
                raise AwsError("UnknownOperationException", f"unknown operation {target!r}")
            handler = {
                "StartDocumentTextDetection": self._start,
                "GetDocumentTextDetection": self._get,
            }.get(operation)
            if handler is None:
                raise AwsError("UnknownOperationException", f"unknown operation {target!r}")
            with self._lock:
                self.calls[operation] += 1
                fault = self._faults[operation].popleft() if self._faults[operation] else None
            if fault:
                raise AwsError(fault, f"{fault} (scripted)")
            body = await handler(json.loads(await request.body() or b"{}"))
        except AwsError as error:
            return error.response()
        return Response(json.dumps(body), media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _start(self, params: dict[str, Any]) -> dict[str, Any]:
        s3_object = params.get("DocumentLocation", {}).get("S3Object", {})
        if not s3_object.get("Bucket") or not s3_object.get("Name"):
            raise AwsError("InvalidParameterException", "Request has invalid parameters")
        channel = params.get("NotificationChannel")
        if channel is not None and not (channel.get("SNSTopicArn") and channel.get("RoleArn")):
            raise AwsError("InvalidParameterException", "Request has invalid parameters")
        token = params.get("ClientRequestToken")
        if token is not None and not TOKEN.fullmatch(token):
            raise AwsError("ValidationException", "1 validation error detected: Value at 'clientRequestToken'")
        fingerprint = json.dumps({k: v for k, v in params.items() if k != "ClientRequestToken"}, sort_keys=True)
        with self._lock:
            if token in self._tokens:
                earlier_fingerprint, job_id = self._tokens[token]
                if earlier_fingerprint != fingerprint:
                    raise AwsError("IdempotentParameterMismatchException", "The request token is already in use")
                return {"JobId": job_id}
        data = await run_in_threadpool(self._fetch, s3_object["Bucket"], s3_object["Name"])
        if sniff_document(data[:SNIFF_BYTES]) is None:
            raise AwsError("UnsupportedDocumentException", "Request has unsupported document format")
        with self._lock:
            if token in self._tokens:  # a concurrent duplicate won the race
                return {"JobId": self._tokens[token][1]}
            job_id = uuid.uuid4().hex + uuid.uuid4().hex
            outcome = self._outcomes.popleft() if self._outcomes else Outcome()
            self.jobs[job_id] = Job(params, outcome, ready_at=time.monotonic() + self.in_progress_seconds)
            if token is not None:
                self._tokens[token] = (fingerprint, job_id)
        task = asyncio.create_task(self._run(job_id, self.jobs[job_id], data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"JobId": job_id}

    def _fetch(self, bucket: str, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.ClientError:
            raise AwsError(
                "InvalidS3ObjectException",
                "Unable to get object metadata from S3. Check object key, region and/or access permissions.",
            ) from None

    async def _get(self, params: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(params.get("JobId", ""))
        if job is None:
            raise AwsError("InvalidJobIdException", "Request has invalid Job Id")
        max_results = params.get("MaxResults", 1000)
        if not 1 <= max_results <= 1000:
            raise AwsError("InvalidParameterException", "Request has invalid parameters")
        if not job.done or time.monotonic() < job.ready_at:
            return {"JobStatus": "IN_PROGRESS", "DetectDocumentTextModelVersion": "1.0"}
        if job.status == "FAILED":
            return {"JobStatus": "FAILED", "StatusMessage": job.status_message, "DetectDocumentTextModelVersion": "1.0"}
        max_results = min(max_results, self.max_blocks_per_response)
        offset = _decode_token(params["NextToken"], params["JobId"]) if "NextToken" in params else 0
        if "NextToken" in params:
            self.calls["GetDocumentTextDetection:NextToken"] += 1
        body: dict[str, Any] = {
            "JobStatus": job.status,
            "DocumentMetadata": {"Pages": job.pages},
            "Blocks": job.blocks[offset : offset + max_results],
            "DetectDocumentTextModelVersion": "1.0",
        }
        if offset + max_results < len(job.blocks):
            body["NextToken"] = _encode_token(params["JobId"], offset + max_results)
        if job.warnings:
            body["Warnings"] = job.warnings
        if job.status_message:
            body["StatusMessage"] = job.status_message
        return body

    # -- the work ----------------------------------------------------------------------------

    async def _run(self, job_id: str, job: Job, data: bytes) -> None:
        await self._process(job, data)
        channel = job.request.get("NotificationChannel")
        if channel and self.send_notices:
            await asyncio.sleep(max(0.0, job.ready_at - time.monotonic()))  # when Get says it is done
            location = job.request["DocumentLocation"]["S3Object"]
            notice = {
                "JobId": job_id,
                "Status": job.status,
                "API": "StartDocumentTextDetection",
                "Timestamp": int(time.time() * 1000),
                "DocumentLocation": {"S3ObjectName": location["Name"], "S3Bucket": location["Bucket"]},
            }
            await run_in_threadpool(self.sns.publish, TopicArn=channel["SNSTopicArn"], Message=json.dumps(notice))
            with self._lock:
                self.calls["notices"] += 1

    async def _process(self, job: Job, data: bytes) -> None:
        try:
            if job.outcome.failed:
                job.status, job.status_message = "FAILED", job.outcome.failed
                return
            images = await run_in_threadpool(_page_images, data)
            job.pages = len(images)
            for number, image in enumerate(images, start=1):
                if number in job.outcome.failed_pages:
                    continue
                job.blocks.extend(await _ocr_blocks(image, number))
            if job.outcome.failed_pages:
                job.status = "PARTIAL_SUCCESS"
                job.warnings = [{"ErrorCode": "PAGE_PROCESSING_FAILED", "Pages": job.outcome.failed_pages}]
            else:
                job.status = "SUCCEEDED"
        except Exception as exc:  # a document the fake cannot read fails like Textract's would
            job.status, job.status_message = "FAILED", f"Unable to process document: {exc}"
        finally:
            job.done = True


def _encode_token(job_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{job_id}:{offset}".encode()).decode()


def _decode_token(token: str, job_id: str) -> int:
    try:
        owner, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if owner == job_id:
            return int(offset)
    except ValueError:
        pass
    raise AwsError("InvalidParameterException", "Request has invalid parameters")


def _page_images(data: bytes) -> list[bytes]:
    """Each page as a PNG: PDFs rendered at 150 dpi, image frames as they are."""
    images = []
    if sniff_document(data[:SNIFF_BYTES]) == PDF:
        pdf = pypdfium2.PdfDocument(data)
        for page in pdf:
            images.append(_png(page.render(scale=150 / 72).to_pil()))
    else:
        with Image.open(io.BytesIO(data)) as image:
            images = [_png(frame) for frame in ImageSequence.Iterator(image)]
    return images


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


async def _ocr_blocks(png: bytes, page_number: int) -> list[dict[str, Any]]:
    """PAGE, LINE and WORD blocks from tesseract's TSV output for one page."""
    process = await asyncio.create_subprocess_exec(
        "tesseract",
        "stdin",
        "stdout",
        "tsv",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    output, _ = await process.communicate(png)
    rows = [line.split("\t") for line in output.decode().splitlines()[1:]]
    page_row = next(row for row in rows if row[0] == "1")
    width, height = int(page_row[8]), int(page_row[9])
    lines: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row[0] == "5" and len(row) == 12 and row[11].strip():
            word = _block("WORD", page_number, row[11], float(row[10]), [int(v) for v in row[6:10]], width, height)
            lines.setdefault((row[2], row[3], row[4]), []).append(word)
    page = _block("PAGE", page_number, None, None, [0, 0, width, height], width, height)
    line_blocks = []
    for words in lines.values():
        left = min(w["_box"][0] for w in words)
        top = min(w["_box"][1] for w in words)
        right = max(w["_box"][0] + w["_box"][2] for w in words)
        bottom = max(w["_box"][1] + w["_box"][3] for w in words)
        text = " ".join(w["Text"] for w in words)
        confidence = sum(w["Confidence"] for w in words) / len(words)
        line = _block("LINE", page_number, text, confidence, [left, top, right - left, bottom - top], width, height)
        line["Relationships"] = [{"Type": "CHILD", "Ids": [w["Id"] for w in words]}]
        line_blocks.append(line)
    page["Relationships"] = [{"Type": "CHILD", "Ids": [line["Id"] for line in line_blocks]}]
    words = [word for group in lines.values() for word in group]
    blocks = [page, *line_blocks, *words]
    for block in blocks:
        del block["_box"]
    return blocks


def _block(kind: str, page: int, text: str | None, confidence: float | None, box: list[int], width: int, height: int):
    left, top, w, h = box[0] / width, box[1] / height, box[2] / width, box[3] / height
    block: dict[str, Any] = {
        "BlockType": kind,
        "Id": str(uuid.uuid4()),
        "Page": page,
        "Geometry": {
            "BoundingBox": {"Width": w, "Height": h, "Left": left, "Top": top},
            "Polygon": [
                {"X": left, "Y": top},
                {"X": left + w, "Y": top},
                {"X": left + w, "Y": top + h},
                {"X": left, "Y": top + h},
            ],
        },
        "_box": box,
    }
    if text is not None:
        block["Text"] = text
        block["TextType"] = "PRINTED"
    if confidence is not None:
        block["Confidence"] = max(0.0, min(100.0, confidence))
    return block


ROLE_ARN = "arn:aws:iam::123456789012:role/TextractPublishesToSns"


def notice_channel(endpoint_url: str) -> tuple[str, str]:
    """A new SNS topic with a new SQS queue subscribed to it, on moto: (topic ARN, queue URL)."""
    name = f"textract-notices-{uuid.uuid4().hex[:12]}"
    sns = boto3.client("sns", endpoint_url=endpoint_url)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue_url
