"""Running jobs are parked out of arq's poll window, and come back when they must."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from arq.constants import in_progress_key_prefix

from conveyor.kinds import Pipeline, Stage
from service import queue
from service.errors import TransientError
from service.telemetry import monitoring
from testkit.files import multipart_file, text_pdf
from testkit.service import client, running_worker, until, wait_for_job


async def _submit(http) -> str:
    response = await http.post("/v1/documents", files=multipart_file(text_pdf("x")))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _parking_soon(settings):
    return settings.model_copy(update={"worker_park_after": 0.1})


@contextlib.asynccontextmanager
async def _held_job(api, key: str, worker_settings) -> AsyncIterator[str]:
    """A job running until the block ends, then awaited to success."""
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(run, input):
        started.set()
        await release.wait()
        return {}

    pipeline = Pipeline("document", (Stage("hold", hold),), timeout=60)
    async with client(api.url, key) as http, running_worker(worker_settings, [pipeline]):
        job_id = await _submit(http)
        await asyncio.wait_for(started.wait(), 10)
        yield job_id
        release.set()
        assert (await wait_for_job(http, job_id, timeout=10))["status"] == "succeeded"


async def test_a_running_job_is_parked_until_its_in_progress_key_expires(api, settings, tenant):
    redis = queue.connect(settings.redis_url)
    try:
        async with _held_job(api, tenant[1], _parking_soon(settings)) as job_id:

            async def parked_score():
                score = await redis.zscore(settings.queue_name, job_id)
                return score if score and score > time.time() * 1000 else None

            score = await until(parked_score)
            expires_at = time.time() * 1000 + await redis.pttl(in_progress_key_prefix + job_id)
            assert abs(score - expires_at) < 2000  # due again exactly when arq would rerun it
            [state] = await monitoring.queue_states(
                redis, settings, workers=[{"jobs": [job_id]}], names=[settings.queue_name]
            )
            assert (state.queued, state.running, state.scheduled) == (0, 1, 0)
        await until(lambda: _absent(redis, settings.queue_name, job_id))
    finally:
        await redis.aclose()


async def test_a_job_shorter_than_park_after_stays_due(api, settings, tenant):
    redis = queue.connect(settings.redis_url)
    scores = []
    try:
        async with _held_job(api, tenant[1], settings) as job_id:
            for _ in range(8):  # 0.16 s of the job's run, under WORKER_PARK_AFTER (0.25 s)
                scores.append((await redis.zscore(settings.queue_name, job_id), time.time() * 1000))
                await asyncio.sleep(0.02)
    finally:
        await redis.aclose()
    assert all(score is not None and score <= now for score, now in scores), scores


async def _absent(redis, name: str, job_id: str) -> bool:
    return await redis.zscore(name, job_id) is None


async def test_a_retried_job_is_due_after_its_backoff_not_its_park(api, settings, tenant):
    attempts = []

    async def flaky(run, input):
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            await asyncio.sleep(0.5)  # long enough to be parked
            raise TransientError("the dependency is briefly down", retry_after=1.0)
        return {}

    # Parked, the job would only be due again when its in-progress key expires: minutes.
    pipeline = Pipeline("document", (Stage("flaky", flaky),), timeout=300)
    async with client(api.url, tenant[1]) as http, running_worker(_parking_soon(settings), [pipeline]):
        job_id = await _submit(http)
        done = await wait_for_job(http, job_id, timeout=20)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert 1.5 <= attempts[1] - attempts[0] < 10


async def test_a_dead_workers_parked_job_is_released_at_once(settings):
    """The reconciler's hand-back: the marker goes and the job is due again now."""
    redis = queue.connect(settings.redis_url)
    job_id = "00000000-0000-4000-8000-00000000beef"
    try:
        assert await queue.enqueue(redis, job_id=job_id, kind="document", queue=settings.queue_name)
        parked_until = (time.time() + 300) * 1000
        await redis.zadd(settings.queue_name, {job_id: parked_until})
        await redis.psetex(in_progress_key_prefix + job_id, 300_000, b"1")

        await queue.release(redis, job_id=job_id, queue=settings.queue_name)

        assert await redis.exists(in_progress_key_prefix + job_id) == 0
        assert await redis.zscore(settings.queue_name, job_id) <= time.time() * 1000
        await queue.release(redis, job_id="not-queued", queue=settings.queue_name)
        assert await redis.zscore(settings.queue_name, "not-queued") is None  # not put on the queue
    finally:
        await queue.dequeue(redis, job_id=job_id, queue=settings.queue_name)
        await redis.aclose()
