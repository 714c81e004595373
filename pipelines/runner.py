"""Running one attempt of one job: claim it, run its stages, record how it ended.

Every ledger write is fenced by the attempt number this run claimed: if the job was
handed to another worker meanwhile (this one was presumed dead), `Fenced` stops this run
without touching what the newer attempt wrote. The stages run in a `JobRun`
(pipelines/job_run.py). A job of a kind with a concurrency limit whose key has no free
place does not start: it waits in its key's line (service/queue/concurrency.py). Transient failures, `conveyor.Retry` and unforeseen exceptions go back
to arq as a `Retry` with exponential backoff and jitter until the job's tries are used;
`conveyor.Fail` and other permanent errors end the job `failed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from dataclasses import dataclass
from typing import NoReturn

import structlog
from arq import Retry
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError
from structlog.contextvars import bound_contextvars

from conveyor import outcomes
from conveyor.kinds import Pipeline
from pipelines.dispatch import PutBack
from pipelines.job_run import Crashed, JobRun
from pipelines.resources import Resources
from service import ledger
from service.errors import DependencyUnavailable, JobError, TransientError
from service.ledger import callbacks, workflows
from service.queue import concurrency, events
from service.telemetry import error_reports, metrics, tracing

log = structlog.get_logger("conveyor.runner")

BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0


def backoff(attempt: int, hint: float | None = None) -> float:
    """Exponential with full jitter, never sooner than the dependency asked for."""
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempt - 1, 0)))
    return max(delay, hint or 0.0, 0.5)


@dataclass(frozen=True, slots=True)
class Dequeued:
    """A job as arq's queue handed it over: its ledger id, arq's try counter, its score
    (priority band and due moment) and when it was enqueued (ms)."""

    job_id: str
    job_try: int
    score: int
    enqueued_ms: int


async def execute(resources: Resources, pipeline: Pipeline, dequeued: Dequeued) -> None:
    """The body of every arq function: one attempt at the ledger job arq dequeued. The job
    is parked out of arq's poll window while it runs (pipelines/parking.py) and unparked if
    it goes back to arq unfinished."""
    parsed = ledger.parse_job_id(dequeued.job_id)
    if parsed is None:
        log.error("rejected a job with a malformed id", job_id=dequeued.job_id[:100])
        return
    parked = resources.parking.park(dequeued.job_id)
    try:
        await _execute(resources, pipeline, parsed, dequeued)
    except PutBack:
        raise  # waiting in its key's line: its score is the line's
    except BaseException:
        await parked.unpark(dequeued.score)
        raise
    finally:
        parked.ended()


async def _execute(resources: Resources, pipeline: Pipeline, parsed: uuid.UUID, dequeued: Dequeued) -> None:
    try:
        job = await resources.ledger.claim(parsed, pipeline.stage_names, pipeline.concurrency)
    except DependencyUnavailable as exc:
        raise Retry(defer=backoff(dequeued.job_try)) from exc
    if isinstance(job, ledger.Waiting):
        await _wait_in_line(resources, job, dequeued)
    if job is None:
        await _cancel_if_requested(resources, parsed)
        return
    key = job["concurrency_key"] if pipeline.concurrency else None
    try:
        await _claimed(resources, pipeline, job, dequeued)
    finally:
        if key is not None:  # its place is free: the next in its key's line may start
            await asyncio.shield(resources.lines.promote(job["kind"], key))


async def _wait_in_line(resources: Resources, waiting: ledger.Waiting, dequeued: Dequeued) -> NoReturn:
    """No free place under the job's key: it joins the key's line and leaves its slot. Had
    the last holder ended between the claim and now, nobody would call the line: so it is
    called here if a place is free by now."""
    try:
        await resources.lines.wait(
            dequeued.job_id, waiting.kind, waiting.key, score=dequeued.score, enqueued_ms=dequeued.enqueued_ms
        )
    except (RedisError, OSError) as exc:
        raise Retry(defer=concurrency.BACKSTOP_S) from exc
    with contextlib.suppress(DependencyUnavailable):  # the backstop calls it then
        async with resources.db.write() as conn:  # the primary: a replica may lag the last end
            room = await ledger.has_room(conn, waiting)
        if room:
            await resources.lines.promote(waiting.kind, waiting.key)
    raise PutBack


async def _claimed(resources: Resources, pipeline: Pipeline, job, dequeued: Dequeued) -> None:
    """Run an attempt the ledger has just granted."""
    if job["attempts"] > job["max_tries"]:
        error = {
            "type": "max_tries_exceeded",
            "message": f"gave up after {job['max_tries']} tries (the worker running it kept dying)",
        }
        await _finish(JobRun(resources, pipeline, job, job["attempts"]), "failed", error=error)
        return
    run = JobRun(resources, pipeline, job, job["attempts"])
    job_id = dequeued.job_id
    tags = {"job_id": job_id, "tenant": str(job["tenant_id"]), "kind": job["kind"]}
    with (
        bound_contextvars(**tags, attempt=run.attempt),
        error_reports.job_scope(**tags),
        tracing.span(
            f"job {job['kind']}",
            parent=job["traceparent"],
            kind=SpanKind.CONSUMER,
            attributes={f"conveyor.{name}": value for name, value in tags.items()} | {"conveyor.attempt": run.attempt},
        ),
    ):
        metrics.job_started(job)
        try:
            with bound_contextvars(**({"trace_id": tracing.trace_id()} if tracing.enabled() else {})):
                await _attempt(run, job_id, dequeued.job_try)
        finally:
            metrics.attempt_ended(job["kind"])


async def _attempt(run: JobRun, job_id: str, job_try: int) -> None:
    resources = run.resources
    await run.publish("status", status="running", attempt=run.attempt)
    task = asyncio.create_task(run.run_stages())
    resources.running[job_id] = task
    try:
        async with asyncio.timeout(run.timeout):
            result = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        assert current is not None  # this is a coroutine
        if job_id not in resources.cancelling or current.cancelling():
            raise  # shutdown: the job stays queued in arq and resumes elsewhere
        await _finish(run, "cancelled")
    except TimeoutError:
        await _finish(
            run,
            "failed",
            error={"type": "timeout", "message": f"the job ran longer than {run.timeout:g} s"},
        )
    except ledger.Fenced:
        run.log.warning("fenced off: a newer attempt owns this job")
    except (TransientError, DependencyUnavailable) as exc:
        await _retry_or_fail(run, exc, job_try)
    except JobError as exc:
        await _finish(run, "failed", error=exc.as_dict())
    except Exception as exc:  # outside the stages: the kind's workspace or result
        run.log.exception("pipeline crashed")
        error_reports.report(exc)
        await _retry_or_fail(run, Crashed(f"the kind {run.pipeline.name!r}", exc), job_try)
    else:
        await _finish(run, "succeeded", result=result)
    finally:
        resources.running.pop(job_id, None)
        resources.cancelling.discard(job_id)


async def _retry_or_fail(run: JobRun, exc: TransientError | DependencyUnavailable, job_try: int) -> None:
    error = exc.as_dict()  # a dependency of ours names only the dependency, not its hosts
    hint = exc.retry_after if isinstance(exc, TransientError) else None
    if run.attempt >= run.job["max_tries"]:
        error["message"] += f" (gave up after {run.attempt} tries)"
        await _finish(run, "failed", error=error)
        return
    exact = isinstance(exc, outcomes.Retry) and exc.exact  # the stage said when
    delay = hint if exact and hint is not None else backoff(run.attempt, hint)
    run.log.warning(
        "transient failure; retrying", error=error, retry_in=round(delay, 1), cause=str(exc.__cause__ or exc)
    )
    try:
        async with run.resources.db.transaction() as conn:
            await ledger.requeue(conn, run.job_id, run.attempt, error, run.settled)
    except (ledger.Fenced, DependencyUnavailable):
        pass  # the reconciler or the next attempt sorts the ledger out
    await run.publish(
        "status",
        status="queued",
        error=error,
        **({"progress": round(run.settled, 4)} if run.settled is not None else {}),
    )
    raise Retry(defer=delay)


async def _end(run: JobRun, status: str, *, result=None, error=None):
    """End a job in the ledger, with its last stage's end if that is still to be written:
    combined with other jobs' endings, unless its callback must be recorded in the same
    transaction; a workflow's job, with others too, in a transaction that advances its
    workflow (service/ledger/workflows.py)."""
    resources, job, stage = run.resources, run.job, run.last_stage_end
    ending = ledger.JobEnd(
        job["id"],
        job["attempts"],
        status,
        result,
        error,
        stage=stage.name if stage else None,
        stage_status=stage.status if stage else None,
        stage_checkpoint=stage.checkpoint if stage else None,
        progress=run.settled,
    )
    if job["workflow_id"] is not None:
        return await resources.ledger.finish_workflow_job(
            ending, resources.kinds, resources.settings.workflow_max_fanout
        )
    if not callbacks.wanted(job):
        return await resources.ledger.finish_job(ending), None, workflows.Advance()
    async with resources.db.transaction(track=(f"job:{job['id']}",)) as conn:
        row = await ledger.finish_job(conn, ending)
        return row, await callbacks.record(conn, row, resources.kinds), workflows.Advance()


async def _finish(run: JobRun, status: str, *, result: dict | None = None, error: dict | None = None) -> None:
    resources = run.resources
    try:
        row, callback, advance = await _end(run, status, result=result, error=error)
    except ledger.Fenced:
        run.log.warning("fenced off at the end: a newer attempt owns this job")
        return
    except DependencyUnavailable as exc:
        # The outcome must not be lost: arq runs the job again, which resumes from the
        # last checkpointed stage and records the ending then.
        raise Retry(defer=backoff(run.attempt)) from exc
    await callbacks.enqueue(resources.redis, callback)
    await advance.publish(resources.redis)
    _count_finished(resources, row)
    if run.last_stage_end is not None:
        await run.publish_stage_end(run.last_stage_end)
    await run.publish("status", status=status, **({"error": error} if error else {}), progress=row["progress"])
    if status == "failed":  # for good: named in full, whatever the context has bound
        assert error is not None  # a failure always says what failed
        run.log.warning(
            "job failed",
            job_id=str(run.job_id),
            kind=row["kind"],
            error_type=error["type"],
            error=error["message"],
            attempts=row["attempts"],
        )
    else:
        run.log.info("job ended", status=status)


def _count_finished(resources: Resources, row) -> None:
    metrics.job_finished(row)
    resources.finished.add(row["kind"], row["status"])


async def _cancel_if_requested(resources: Resources, job_id: uuid.UUID) -> None:
    """A job cancelled while its worker was away ends `cancelled` here."""
    async with resources.db.transaction(track=(f"job:{job_id}",)) as conn:
        row = await ledger.cancel_running(conn, job_id)
        callback = await callbacks.record(conn, row, resources.kinds) if row else None
        advance = await workflows.jobs_ended(
            conn, [row] if row else [], resources.kinds, max_fanout=resources.settings.workflow_max_fanout
        )
    if row is not None:
        await callbacks.enqueue(resources.redis, callback)
        await advance.publish(resources.redis)
        _count_finished(resources, row)
        await events.publish(resources.redis, job_id, {"type": "status", "status": "cancelled", "job_id": str(job_id)})
