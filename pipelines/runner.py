"""Running one attempt of one job: claim it, run its stages, record how it ended.

Every ledger write is fenced by the attempt number this run claimed: if the job was
handed to another worker meanwhile (this one was presumed dead), `Fenced` stops this run
without touching what the newer attempt wrote. `JobRun` is the `conveyor.Context` its
stages are handed. Transient failures, `conveyor.Retry` and unforeseen exceptions go back
to arq as a `Retry` with exponential backoff and jitter until the job's tries are used;
`conveyor.Fail` and other permanent errors end the job `failed` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog
from arq import Retry
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from structlog.contextvars import bound_contextvars

from conveyor import outcomes
from conveyor.kinds import Pipeline, Stage
from pipelines.dispatch import PutBack
from pipelines.resources import Resources
from service import callbacks, concurrency, error_reports, events, ledger, metrics, tracing
from service.errors import DependencyUnavailable, JobError, PermanentError, TransientError
from service.file_modes import make_scratch_dir

log = structlog.get_logger("conveyor.runner")

PROGRESS_INTERVAL = 0.5  # seconds between two progress writes of one job
BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0


def backoff(attempt: int, hint: float | None = None) -> float:
    """Exponential with full jitter, never sooner than the dependency asked for."""
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(attempt - 1, 0)))
    return max(delay, hint or 0.0, 0.5)


class Crashed(TransientError):
    """Something no one foresaw was raised (in `where`): retried like a transient failure,
    and shown to the tenant by its class only (its text, paths and reprs stay in the logs)."""

    type = "exception"

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(f"{where} raised {type(exc).__name__}; the details are in the worker's logs")


def storable(stage: str, output: Any) -> Any:
    """A stage's return value as the ledger keeps it (a pydantic model becomes its JSON
    form); a value JSON cannot hold fails the job, naming the stage and the type."""
    if output is None:
        return {}
    if isinstance(output, BaseModel):
        return output.model_dump(mode="json")
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"the stage {stage!r} returned a value JSON cannot hold ({exc})", type="result_not_json"
        ) from None
    return output


def invalid_input(error: ValidationError) -> PermanentError:
    fields = "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or 'input'}: {detail['msg']}" for detail in error.errors()
    )
    return PermanentError(f"the input does not match the kind's model: {fields}", type="invalid_input")


class JobRun:
    """One attempt at one job, as its stages see it."""

    def __init__(self, resources: Resources, pipeline: Pipeline, job, attempt: int) -> None:
        self.resources = resources
        self.pipeline = pipeline
        self.job = job
        self.job_id: uuid.UUID = job["id"]
        self.attempt = attempt
        self.outputs: dict[str, Any] = {}
        self.saved: dict | None = None  # the running stage's partial checkpoint, if any
        self.stage: Stage | None = None
        self.last_stage_end: ledger.StageEnd | None = None  # written with the job's end
        self.workspace: Any = None  # what the pipeline's `workspace` gave this attempt
        self._stage_index = 0
        self.settled: float | None = None  # what the finished stages make of the progress, once known
        self._last_progress = 0.0
        self._workdir: Path | None = None
        self.log = log  # job_id, tenant, kind, attempt and stage are bound in the context by `execute`

    @property
    def payload(self) -> dict:
        return self.job["payload"]

    @property
    def timeout(self) -> float:
        """This attempt's limit in seconds: the job's own, which may only shorten its kind's
        (the worker's arq function and in-progress key are sized for the kind's)."""
        return min(self.job["timeout"] or self.pipeline.attempt_timeout, self.pipeline.attempt_timeout)

    @property
    def tenant(self) -> str:
        return self.job["tenant"]

    @property
    def metadata(self) -> dict:
        return self.job["metadata"]

    @property
    def shared(self):
        """What this kind's jobs share in this worker process (its pipeline's `shared`)."""
        return self.resources.open_shared(self.pipeline)

    @property
    def settings(self):
        return self.resources.settings

    def workdir(self) -> Path:
        """This attempt's private scratch directory, made on first use and removed when the
        attempt ends however it ends (success, failure, timeout, cancel, shutdown)."""
        if self._workdir is None:
            self._workdir = make_scratch_dir(self.settings.work_dir, prefix=f"conveyor-{self.job_id}-")
        return self._workdir

    async def save(self, data: dict) -> None:
        """Save the running stage's partial progress, so a re-run picks it up (`saved`)."""
        assert self.stage is not None  # called by a running stage
        async with self.resources.db.write() as conn:  # one statement: no BEGIN/COMMIT round trips
            await ledger.save_checkpoint(conn, self.job_id, self.attempt, self.stage.name, data)
        self.saved = data

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """How far the running stage is (0..1), with what it is doing for the event stream;
        written at most every PROGRESS_INTERVAL, unless a message comes with it."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL and fraction < 1 and message is None:
            return
        self._last_progress = now
        assert self.stage is not None  # called by a running stage
        overall = self.pipeline.progress_before(self._stage_index) + self.pipeline.progress_share(
            self._stage_index
        ) * min(max(fraction, 0.0), 1.0)
        async with self.resources.db.write() as conn:
            await ledger.set_progress(conn, self.job_id, self.attempt, overall)
        await self.publish(
            "progress", progress=round(overall, 4), stage=self.stage.name, **({"message": message} if message else {})
        )

    async def publish(self, type: str, **data) -> None:
        await self.resources.events.publish(self.job_id, {"type": type, "job_id": str(self.job_id), **data})

    async def run_stages(self) -> dict:
        try:
            return await self._run_stages()
        finally:
            if self._workdir is not None:
                # In a thread, and completed even if this task is cancelled again meanwhile.
                await asyncio.shield(asyncio.to_thread(shutil.rmtree, self._workdir, ignore_errors=True))

    async def _run_stages(self) -> Any:
        try:
            input = self.pipeline.parse_input(self.payload)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        previous = await self._previous_stages()
        workspace = self.pipeline.workspace(self) if self.pipeline.workspace else contextlib.nullcontext()
        async with workspace as self.workspace:
            for index, stage in enumerate(self.pipeline.stages):
                self.settled = self.pipeline.progress_before(index)
                prior = previous.get(stage.name, {})
                if prior.get("status") in ("succeeded", "skipped"):
                    self.outputs[stage.name] = prior.get("checkpoint") or {}
                    continue
                self.outputs[stage.name] = await self._run_stage(index, stage, input, prior.get("checkpoint"))
            self.settled = 1.0
        return self.pipeline.result(self.outputs)

    async def _previous_stages(self) -> dict[str, dict]:
        """What earlier attempts left; the first attempt's claim has just made its stage rows."""
        if self.attempt == 1:
            return {}
        async with self.resources.db.read(follow=(f"job:{self.job_id}",)) as conn:
            return await ledger.finished_stages(conn, self.job_id)

    async def _run_stage(self, index: int, stage: Stage, input: Any, saved: dict | None) -> Any:
        with (
            bound_contextvars(stage=stage.name),
            tracing.span(f"stage {stage.name}", attributes={"conveyor.stage": stage.name}) as span,
        ):
            started = time.perf_counter()
            status = "failed"
            try:
                output, status = await self._run_stage_once(index, stage, input, saved)
                return output
            except asyncio.CancelledError:
                status = "cancelled"
                raise
            finally:
                metrics.stage_finished(self.job["kind"], stage.name, status, time.perf_counter() - started)
                if status == "failed":
                    span.set_status(Status(StatusCode.ERROR))

    async def _run_stage_once(self, index: int, stage: Stage, input: Any, saved: dict | None) -> tuple[Any, str]:
        self.stage, self._stage_index, self.saved = stage, index, saved
        start = self.pipeline.progress_before(index)
        if index > 0 or self.attempt > 1:  # a first attempt's claim started its first stage
            await self.resources.ledger.start_stage(ledger.StageStart(self.job_id, self.attempt, stage.name, start))
        await self.publish("stage", stage=stage.name, status="running", progress=round(start, 4))
        self.log.info("stage started")
        try:
            output, status = storable(stage.name, await stage.run(self, input)), "succeeded"
        except outcomes.Skip as skip:
            output, status = {"skipped": skip.reason}, "skipped"
        except (JobError, DependencyUnavailable, ledger.Fenced, asyncio.CancelledError) as exc:
            await self._record_stage_failure(stage, exc)
            raise
        except Exception as exc:
            self.log.exception("stage crashed")
            error_reports.report(exc)
            crashed = Crashed(f"the stage {stage.name!r}", exc)
            await self._record_stage_failure(stage, crashed)
            raise crashed from exc
        end = start + self.pipeline.progress_share(index)
        ending = ledger.StageEnd(self.job_id, self.attempt, stage.name, status, checkpoint=output, progress=end)
        self.log.info("stage finished", status=status)
        if index == len(self.pipeline.stages) - 1:
            self.last_stage_end = ending  # one write with the job's end, then its event
            return output, status
        await self.resources.ledger.finish_stage(ending)
        await self.publish_stage_end(ending)
        return output, status

    async def publish_stage_end(self, ending: ledger.StageEnd) -> None:
        await self.publish(
            "stage",
            stage=ending.name,
            status=ending.status,
            progress=None if ending.progress is None else round(ending.progress, 4),
        )

    async def _record_stage_failure(self, stage: Stage, exc: BaseException) -> None:
        if isinstance(exc, ledger.Fenced):
            return
        if isinstance(exc, asyncio.CancelledError):
            status, error = "cancelled", None
        elif isinstance(exc, JobError):
            status, error = ("queued" if exc.retryable else "failed"), exc.as_dict()
        else:
            assert isinstance(exc, DependencyUnavailable)  # the only other kind let through
            status, error = "queued", exc.as_dict()
        try:
            async with self.resources.db.transaction() as conn:
                await ledger.finish_stage(conn, self.job_id, self.attempt, stage.name, status, error=error)
        except (ledger.Fenced, DependencyUnavailable):
            pass


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
    transaction."""
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
    if not callbacks.wanted(job):
        return await resources.ledger.finish_job(ending), None
    async with resources.db.transaction(track=(f"job:{job['id']}",)) as conn:
        row = await ledger.finish_job(conn, ending)
        return row, await callbacks.record(conn, row, resources.kinds)


async def _finish(run: JobRun, status: str, *, result: dict | None = None, error: dict | None = None) -> None:
    resources = run.resources
    try:
        row, callback = await _end(run, status, result=result, error=error)
    except ledger.Fenced:
        run.log.warning("fenced off at the end: a newer attempt owns this job")
        return
    except DependencyUnavailable as exc:
        # The outcome must not be lost: arq runs the job again, which resumes from the
        # last checkpointed stage and records the ending then.
        raise Retry(defer=backoff(run.attempt)) from exc
    await callbacks.enqueue(resources.redis, callback)
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
    if row is not None:
        await callbacks.enqueue(resources.redis, callback)
        _count_finished(resources, row)
        await events.publish(resources.redis, job_id, {"type": "status", "status": "cancelled", "job_id": str(job_id)})
