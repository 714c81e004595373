"""Textract's completion notices: SNS, an SQS queue, then every worker through Redis.

Polling costs a GetDocumentTextDetection call a second or so for each document in flight
(~1–2 ms of a worker's CPU each, and Textract's request rate is per account). With a
notification channel, Textract publishes each job's end to an SNS topic, and one SQS
queue subscribed to it is read by every worker process, ten notices a long poll and
`RECEIVERS` long polls at once: documents started together end together, and a burst of
notices read ten at a time, one call after another, would hold the last of them back by
as many round trips. The worker that receives a notice records the job's status in Redis
(for a day: a job resumed after a restart finds it there) before deleting the message,
and wakes its own waiter for that job at once; the others look up the jobs they wait for
in one MGET every `CHECK_INTERVAL`. A waiter still polls Textract itself, rarely, so a
lost notice only delays its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("conveyor.textract")

CHECK_INTERVAL = 0.1
"""Seconds between a worker's lookups of the statuses its waiting jobs were given."""
STATUS_TTL = 86_400
RECEIVE_WAIT = 20
"""SQS long poll: an idle queue costs `RECEIVERS` calls every 20 s."""
RECEIVERS = 4
"""Long polls in flight at once, each answered with up to ten notices."""
RETRY_AFTER = 1.0


def status_key(job_id: str) -> str:
    return f"conveyor:textract:done:{job_id}"


def parse_notice(body: str) -> tuple[str, str] | None:
    """(JobId, Status) of a Textract notice, delivered by SNS in its envelope or raw."""
    try:
        notice = json.loads(body)
        if isinstance(notice, dict) and notice.get("Type") == "Notification":
            notice = json.loads(notice["Message"])
        job_id, status = notice["JobId"], notice["Status"]
    except (ValueError, KeyError, TypeError):
        return None
    return (job_id, status) if isinstance(job_id, str) and isinstance(status, str) else None


class TextractNotices:
    """One worker process's reader of the notice queue, and its waiters."""

    def __init__(
        self,
        session: aioboto3.Session,
        redis: Redis,
        queue_url: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
    ) -> None:
        self.session = session
        self.redis = redis
        self.queue_url = queue_url
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self._waiters: dict[str, asyncio.Future] = {}
        self._waiting = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stack = AsyncExitStack()

    async def wait(self, job_id: str, *, timeout: float) -> str | None:
        """The status Textract's notice gave `job_id`, or None if none came within `timeout`."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._receive_forever()), asyncio.create_task(self._check_forever())]
        waiter = self._waiters.get(job_id) or asyncio.get_running_loop().create_future()
        self._waiters[job_id] = waiter
        self._waiting.set()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiter)
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(job_id) is waiter:
                del self._waiters[job_id]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._stack.aclose()

    async def _receive_forever(self) -> None:
        sqs = await self._stack.enter_async_context(
            self.session.client(
                "sqs",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                config=AioConfig(read_timeout=RECEIVE_WAIT + 10, retries={"mode": "standard"}),
            )
        )
        await asyncio.gather(*(self._receive_on(sqs) for _ in range(RECEIVERS)))

    async def _receive_on(self, sqs: Any) -> None:
        while True:
            try:
                await self._receive(sqs)
            except (BotoCoreError, ClientError, RedisError) as exc:
                log.warning("textract notices unavailable", error=str(exc), queue=self.queue_url)
                await asyncio.sleep(RETRY_AFTER)
            except Exception:  # this loop must outlive any one bad answer: waiters depend on it
                log.exception("textract notices failed", queue=self.queue_url)
                await asyncio.sleep(RETRY_AFTER)

    async def _receive(self, sqs: Any) -> None:
        """One long poll: record each notice's status, then delete what was received."""
        answer = await sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=RECEIVE_WAIT
        )
        messages = answer.get("Messages", [])
        if not messages:
            return
        statuses = {}
        for message in messages:
            notice = parse_notice(message.get("Body", ""))
            if notice is None:
                log.warning("not a Textract notice: deleted", queue=self.queue_url, body=message.get("Body", "")[:200])
            else:
                statuses[notice[0]] = notice[1]
        if statuses:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, status in statuses.items():
                    pipe.set(status_key(job_id), status, ex=STATUS_TTL)
                await pipe.execute()
            for job_id, status in statuses.items():
                self._wake(job_id, status)
        entries = [{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(messages)]
        await sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    async def _check_forever(self) -> None:
        while True:
            await self._waiting.wait()
            await asyncio.sleep(CHECK_INTERVAL)
            job_ids = list(self._waiters)
            if not job_ids:
                self._waiting.clear()
                continue
            try:
                statuses = await self.redis.mget([status_key(job_id) for job_id in job_ids])
            except RedisError as exc:  # the waiters' own polls carry on meanwhile
                log.warning("textract notices unreadable", error=str(exc))
                await asyncio.sleep(RETRY_AFTER)
                continue
            for job_id, status in zip(job_ids, statuses, strict=True):
                if status is not None:
                    self._wake(job_id, status.decode() if isinstance(status, bytes) else status)

    def _wake(self, job_id: str, status: str) -> None:
        """Hand `status` to this process's waiter for `job_id`, if it has one."""
        waiter = self._waiters.get(job_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(status)
