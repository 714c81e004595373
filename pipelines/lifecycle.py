"""A worker process's life: what it opens at start, runs beside its jobs, closes at exit.

These are arq hooks and functions; `worker.py` only wires them into `WorkerSettings`.
arq's `Worker` runs the process (signals, the health-check key) but claims no job itself
(`ARQ_JOB_SLOTS`): the dispatcher started here does, many jobs a round trip, with arq's
own keys and rules (pipelines/dispatch.py).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Iterable

import httpx
import structlog
import uvloop
from arq.connections import ArqRedis
from arq.worker import Function, Worker, func

from conveyor.kinds import Pipeline
from pipelines import registry, schedule
from pipelines.dispatch import Dispatcher
from pipelines.maintenance import liveness, supervisor
from pipelines.maintenance.crash_watch import watch_forever
from pipelines.maintenance.listener import Listener
from pipelines.maintenance.reconciler import reconcile_forever
from pipelines.maintenance.schedules import fire_forever
from pipelines.maintenance.session import Session
from pipelines.notifications.channels import RATES_PREFIX, configured_rates
from pipelines.notifications.ssrf import guarded_client
from pipelines.resources import Resources
from pipelines.runner import Dequeued, execute
from service import ledger, outbound, queue
from service.config import Settings
from service.databases.database import Database
from service.queue import deserialize, serialize
from service.ratelimit import RateLimiter
from service.storage import open_storage
from service.telemetry import metrics, observability

log = structlog.get_logger("conveyor.worker")

ARQ_MAX_TRIES = 10_000  # the ledger counts tries (crashes included) and decides when to stop
TIMEOUT_MARGIN = 30.0  # arq's own timeout only backs up the runner's
ARQ_JOB_SLOTS = 0  # arq's Worker picks no job: the dispatcher claims them all
ARQ_POLL_DELAY = 0.5  # how often arq's Worker wakes (its health-check key; it claims no job)
SHUTDOWN_STEP_S = 10.0  # past the grace, how long one step of a worker's shutdown may take


def functions(pipelines: Iterable[Pipeline]) -> list[Function]:
    """One arq function per job kind, so each kind has its own timeout."""

    def task(pipeline: Pipeline):
        async def run(ctx: dict, job_id: str) -> None:
            dequeued = Dequeued(job_id, ctx["job_try"], ctx["score"], int(ctx["enqueue_time"].timestamp() * 1000))
            await execute(ctx["resources"], pipeline, dequeued)

        run.__qualname__ = f"run_{pipeline.name}"
        return run

    return [
        func(
            task(pipeline),
            name=pipeline.name,
            timeout=pipeline.attempt_timeout + TIMEOUT_MARGIN,
            max_tries=ARQ_MAX_TRIES,
            keep_result=0,
        )
        for pipeline in pipelines
    ]


async def open_resources(settings: Settings, redis, pipelines: Iterable[Pipeline] = ()) -> Resources:
    """Everything a worker process shares between its jobs, with what the jobs of each of
    `pipelines` share (also used by tests and tools)."""
    db = Database(settings, redis=redis)
    await db.open()
    storage = open_storage(settings.storage_url, settings.s3_endpoint_url)
    await storage.open()
    resources = Resources(
        settings=settings,
        db=db,
        redis=redis,
        storage=storage,
        http=httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False, headers=outbound.HEADERS
        ),
        webhooks=guarded_client(settings.callback_allowed_hosts, timeout=settings.webhook_timeout),
        limiter=RateLimiter(redis, configured_rates(settings.channel_rates()), prefix=RATES_PREFIX, max_wait=60.0),
        kinds=registry.specs(settings),
    )
    for pipeline in pipelines:
        resources.open_shared(pipeline)
    return resources


async def publish_kinds(resources: Resources, pipelines: Iterable[Pipeline]) -> None:
    """Describe the kinds this worker runs in the ledger, for the API, which never imports
    their code: the worker that started last wins (service/ledger/kinds.py). The built-in
    schedules' kinds are left out: only their schedules make their jobs."""
    described = [
        pipeline.describe(resources.settings) for pipeline in pipelines if pipeline.name not in schedule.KIND_NAMES
    ]
    async with resources.db.write() as conn:
        await ledger.publish(conn, described, published_by=resources.worker_id)


async def close_resources(resources: Resources) -> None:
    await resources.events.aclose()  # what the last jobs published, before Redis goes
    await resources.parking.aclose()
    await resources.finished.aclose()
    await resources.http.aclose()
    await resources.webhooks.aclose()
    await resources.close_shared()
    await resources.storage.close()
    await resources.db.close()


def queue_read_limit(settings: Settings) -> int:
    """How many due ids a worker reads per poll. Running jobs are parked out of the window
    (pipelines/parking.py) but for the moment between arq starting one and its park, so a
    window of `max_jobs` ids could still be all jobs just started elsewhere (arq's own
    default is the same formula)."""
    return max(settings.worker_max_jobs * 5, 100)


def hooks(
    settings: Settings, pipelines: Iterable[Pipeline] = (), *, scheduler: bool = True, grace: float | None = None
):
    """arq's on_startup and on_shutdown for a worker with these settings: they start and
    stop the dispatcher that runs `pipelines`, and with `scheduler` the worker takes its
    turn reconciling the ledger with Redis for the kinds of `pipelines`, and watching for
    dead workers of its queue (crash_watch.py). The reconciler runs beside the jobs, not as
    a job: a job waits in the queue behind every due job, so a backlog, or jobs still held
    by dead workers, would starve the very thing that frees them. At shutdown running jobs
    get `grace` seconds (`WORKER_SHUTDOWN_GRACE`) before they are handed back to the queue.
    Every worker listens for jobs enqueued inside apps' transactions (`Listener`); with
    `scheduler` it also fires the schedules of its kinds (pipelines/maintenance/schedules.py),
    having recorded the built-in ones among them (pipelines/schedule.py)."""
    pipelines = tuple(pipeline.configured(settings) for pipeline in pipelines)
    kinds = frozenset(pipeline.name for pipeline in pipelines)
    kind_queues = sorted({pipeline.spec(settings).queue for pipeline in pipelines})
    runnable = functions(pipelines)

    async def startup(ctx: dict) -> None:
        observability.setup(settings, "conveyor-worker")
        if settings.metrics_port:
            ctx["metrics_server"] = metrics.serve_worker_metrics(settings.metrics_port)
        # Not arq's client (ctx["redis"], `queue.Housekeeping`), which swallows failures.
        resources = await open_resources(settings, queue.connect(settings.redis_url, ride_out=True), pipelines)
        ctx["resources"] = resources
        await publish_kinds(resources, pipelines)
        ctx["session"] = session = Session(resources)
        await session.open()  # before the first beat registers this worker with the crash watch
        listener = Listener(resources)
        ctx["background"] = [
            supervisor.start("session", session.hold_forever),
            supervisor.start("heartbeat", lambda: liveness.heartbeat_forever(resources, kind_queues)),
            supervisor.start("cancels", lambda: liveness.listen_for_cancels(resources)),
            supervisor.start("listener", listener.listen_forever),
        ]
        if scheduler:
            ctx["background"].append(supervisor.start("reconciler", lambda: reconcile_forever(resources, kinds)))
            await schedule.seed(resources, kinds)
            ctx["background"].append(supervisor.start("crash watch", lambda: watch_forever(resources)))
            specs = {pipeline.name: pipeline.spec(settings) for pipeline in pipelines}
            ctx["background"].append(supervisor.start("schedules", lambda: fire_forever(resources, specs)))
        ctx["dispatcher"] = Dispatcher(
            resources.redis,
            ctx,
            runnable,
            queue=settings.queue_name,
            max_jobs=settings.worker_max_jobs,
            poll_delay=settings.worker_poll_delay,
            read_limit=queue_read_limit(settings),
            serializer=serialize,
            deserializer=deserialize,
            max_tries=ARQ_MAX_TRIES,
        )
        ctx["dispatcher"].start()
        gc.freeze()  # what start-up made lives as long as the process: no collection need scan it again

    async def shutdown(ctx: dict) -> None:
        dispatcher: Dispatcher | None = ctx.get("dispatcher")
        if dispatcher is not None:
            # Heartbeats go on meanwhile: the jobs are still ours.
            wait = settings.worker_shutdown_grace if grace is None else grace
            await _bounded("stop the dispatcher", dispatcher.stop(wait), wait + SHUTDOWN_STEP_S)
        background = ctx.get("background", ())
        for task in background:
            task.cancel()
        await _bounded("stop the background tasks", asyncio.gather(*background, return_exceptions=True))
        served = ctx.pop("metrics_server", None)
        if served is not None:
            served[0].shutdown()
            served[0].server_close()
        await _bounded("flush telemetry", observability.teardown())
        resources: Resources | None = ctx.get("resources")
        if resources is None:
            return
        await _bounded("say goodbye", liveness.forget(resources))
        session: Session | None = ctx.get("session")
        if session is not None:
            await _bounded("end the worker's session", session.close())
        await _bounded("close the connections", close_resources(resources))
        await _bounded("close redis", resources.redis.aclose())

    return startup, shutdown


async def _bounded(step: str, awaitable: Awaitable[object], seconds: float = SHUTDOWN_STEP_S) -> None:
    """Await one step of a shutdown for at most `seconds`: a worker told to stop must exit
    (what a stuck step leaves undone, the reconciler and the crash watch finish). Unlike
    `wait_for`, it does not wait for the step to honour its cancellation."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.error("shutdown step did not finish in time; going on", step=step, seconds=seconds)
    elif not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


def housekeeping(redis_url: str) -> ArqRedis:
    """The client arq's own loop is given in a worker (`queue.Housekeeping`): it rides out
    a Redis outage or a Sentinel failover instead of ending the worker."""
    return queue.connect(redis_url, ride_out=True, client=queue.Housekeeping)


def use_uvloop() -> None:
    """Make the loops arq creates uvloop's, as uvicorn does for the API: a worker spends its
    time on small Redis and PostgreSQL round trips, each several times cheaper there."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def worker(settings: Settings, pipelines: Iterable[Pipeline], *, scheduler: bool = True, **overrides) -> Worker:
    """An arq worker for `settings.queue_name`, as `worker.WorkerSettings` describes one, to
    run inside a process that owns the signals (`conveyor up`, tests)."""
    pipelines = tuple(pipeline.configured(settings) for pipeline in pipelines)
    startup, shutdown = hooks(settings, pipelines, scheduler=scheduler)
    options = dict(
        functions=functions(pipelines),
        on_startup=startup,
        on_shutdown=shutdown,
        redis_pool=housekeeping(settings.redis_url),
        queue_name=settings.queue_name,
        max_jobs=ARQ_JOB_SLOTS,
        poll_delay=ARQ_POLL_DELAY,
        keep_result=0,
        max_tries=ARQ_MAX_TRIES,
        handle_signals=False,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )
    options.update(overrides)
    return Worker(**options)
