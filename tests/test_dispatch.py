"""The dispatcher speaks arq's protocol: jobs enqueued by arq's own client run, with arq's
rules for tries, retries, timeouts and results, many claimed a round trip."""

import asyncio
import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.jobs import Job, JobStatus
from arq.worker import func

from pipelines.dispatch import Dispatcher
from service import queue
from service.queue import deserialize, serialize
from testkit.service import until


@pytest.fixture
async def redis(redis_server):
    client = ArqRedis.from_url(redis_server.url)
    client.job_serializer, client.job_deserializer = serialize, deserialize
    yield client
    await client.aclose()


@pytest.fixture
def queue_name():
    return f"dispatch-{uuid.uuid4().hex[:8]}"


def dispatcher(redis, queue_name, functions, *, max_jobs=10, poll_delay=0.01) -> Dispatcher:
    return Dispatcher(
        redis,
        {"redis": redis},
        functions,
        queue=queue_name,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        read_limit=100,
        serializer=serialize,
        deserializer=deserialize,
        max_tries=5,
    )


async def test_jobs_from_arqs_own_client_run_and_leave_no_keys(redis, queue_name):
    seen = []

    async def work(ctx, n):
        seen.append((n, ctx["job_try"], ctx["job_id"]))

    running = dispatcher(redis, queue_name, [func(work, name="work")])
    jobs = [await redis.enqueue_job("work", n, _queue_name=queue_name) for n in range(25)]
    running.start()
    try:
        await until(lambda: _queue_empty(redis, queue_name))
    finally:
        await running.stop(grace=1)
    assert sorted(n for n, _, _ in seen) == list(range(25))
    assert {job_try for _, job_try, _ in seen} == {1}
    assert {job_id for _, _, job_id in seen} == {job.job_id for job in jobs}
    for job in jobs:
        assert not await redis.exists(
            job_key_prefix + job.job_id, in_progress_key_prefix + job.job_id, retry_key_prefix + job.job_id
        )
    assert (running.complete, running.failed, running.retried) == (25, 0, 0)


async def _queue_empty(redis, queue_name) -> bool:
    return await redis.zcard(queue_name) == 0


async def test_one_script_claims_every_free_slot_and_skips_jobs_running_elsewhere(redis, queue_name):
    async def work(ctx):
        return None

    for _ in range(8):
        await redis.enqueue_job("work", _queue_name=queue_name)
    taken = (await redis.zrange(queue_name, 0, 0))[0].decode()
    await redis.psetex(in_progress_key_prefix + taken, 60_000, b"1")  # another worker runs it

    claimed = await dispatcher(redis, queue_name, [func(work, name="work")]).claim(5)

    assert len(claimed) == 5
    assert taken not in {job.job_id for job in claimed}
    for job in claimed:
        assert job.job_try == 1 and job.raw is not None
        assert 0 < await redis.pttl(in_progress_key_prefix + job.job_id) <= (300 + 10) * 1000
    assert len(await dispatcher(redis, queue_name, [func(work, name="work")]).claim(10)) == 2  # the rest


async def test_retry_defers_the_job_and_counts_the_try(redis, queue_name):
    tries = []

    async def flaky(ctx):
        tries.append((ctx["job_try"], time.time()))
        if len(tries) < 3:
            raise Retry(defer=0.2)

    running = dispatcher(redis, queue_name, [func(flaky, name="flaky")])
    job = await redis.enqueue_job("flaky", _queue_name=queue_name)
    running.start()
    try:
        await until(lambda: _queue_empty(redis, queue_name))
    finally:
        await running.stop(grace=1)
    assert [job_try for job_try, _ in tries] == [1, 2, 3]
    assert all(later - earlier >= 0.19 for (_, earlier), (_, later) in itertools.pairwise(tries))
    assert running.retried == 2 and running.complete == 1
    assert await Job(job.job_id, redis, _queue_name=queue_name).status() == JobStatus.not_found


async def test_failures_timeouts_and_used_up_tries_end_the_job_not_the_worker(redis, queue_name):
    async def broken(ctx):
        raise ValueError("bad input")

    async def slow(ctx):
        await asyncio.sleep(30)

    async def fine(ctx):
        return None

    functions = [
        func(broken, name="broken"),
        func(slow, name="slow", timeout=0.2),
        func(fine, name="fine", max_tries=2),
    ]
    exhausted = await redis.enqueue_job("fine", _queue_name=queue_name)
    await redis.set(retry_key_prefix + exhausted.job_id, 2)  # two tries already used
    for name in ("broken", "slow", "nobody-has-this", "fine"):
        await redis.enqueue_job(name, _queue_name=queue_name)
    expired = await redis.enqueue_job("fine", _queue_name=queue_name)
    await redis.delete(job_key_prefix + expired.job_id)

    running = dispatcher(redis, queue_name, functions)
    running.start()
    try:
        await until(lambda: _queue_empty(redis, queue_name))
    finally:
        await running.stop(grace=1)
    # broken, slow (timed out), the unknown function, the used-up tries and the expired job
    assert (running.failed, running.complete) == (5, 1)


async def test_a_function_that_keeps_its_result_keeps_it(redis, queue_name):
    ran = []

    async def tick(ctx):
        ran.append(ctx["job_id"])
        return {"sent": 3}

    job_id = f"tick:{int(time.time() * 1000)}"
    await redis.enqueue_job("tick", _job_id=job_id, _queue_name=queue_name)
    running = dispatcher(redis, queue_name, [func(tick, name="tick", keep_result=60, max_tries=1)])
    running.start()
    try:
        await until(lambda: _queue_empty(redis, queue_name))
        await until(lambda: redis.exists(result_key_prefix + job_id))
    finally:
        await running.stop(grace=1)
    assert ran == [job_id]
    result = json.loads(await redis.get(result_key_prefix + job_id))
    assert result["r"] == {"sent": 3} and result["s"] is True and result["id"] == job_id
    assert 50_000 < await redis.pttl(result_key_prefix + job_id) <= 60_000
    assert not await redis.exists(in_progress_key_prefix + job_id)
    assert await redis.enqueue_job("tick", _job_id=job_id, _queue_name=queue_name) is None  # its result stands


async def test_never_more_than_max_jobs_at_once(redis, queue_name):
    now, peak = 0, 0

    async def hold(ctx):
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.05)
        now -= 1

    for _ in range(30):
        await redis.enqueue_job("hold", _queue_name=queue_name)
    running = dispatcher(redis, queue_name, [func(hold, name="hold")], max_jobs=4)
    running.start()
    try:
        await until(lambda: _queue_empty(redis, queue_name))
    finally:
        await running.stop(grace=1)
    assert peak == 4 and running.complete == 30


async def test_stopping_hands_unfinished_jobs_back_at_once(redis, queue_name):
    started = asyncio.Event()

    async def endless(ctx):
        started.set()
        await asyncio.sleep(3600)

    job = await redis.enqueue_job("endless", _queue_name=queue_name)
    running = dispatcher(redis, queue_name, [func(endless, name="endless")])
    running.start()
    await asyncio.wait_for(started.wait(), 5)
    assert await redis.exists(in_progress_key_prefix + job.job_id)
    await running.stop(grace=0.1)

    assert not await redis.exists(in_progress_key_prefix + job.job_id)  # another worker may take it now
    assert await redis.zscore(queue_name, job.job_id) is not None
    assert await redis.exists(job_key_prefix + job.job_id)
    assert running.retried == 1
    [again] = await dispatcher(redis, queue_name, [func(endless, name="endless")]).claim(1)
    assert again.job_id == job.job_id and again.job_try == 2


async def test_a_job_enqueued_due_now_wakes_an_idle_worker_without_waiting_for_its_poll(redis, queue_name):
    ran = asyncio.Event()

    async def work(ctx, job_id):
        ran.set()

    running = dispatcher(redis, queue_name, [func(work, name="work")], poll_delay=60)
    running.start()
    try:
        await asyncio.sleep(0.2)  # it has polled once, found nothing, and waits
        assert await queue.enqueue(redis, job_id=str(uuid.uuid4()), kind="work", queue=queue_name)
        await asyncio.wait_for(ran.wait(), 10)  # not the 60 s poll
        later = await queue.enqueue(
            redis,
            job_id=str(uuid.uuid4()),
            kind="work",
            queue=queue_name,
            run_at=datetime.now(UTC) + timedelta(hours=1),
        )
        assert later and await redis.llen(queue.wake_key(queue_name)) == 0  # a deferred job wakes nobody
    finally:
        await running.stop(grace=1)
