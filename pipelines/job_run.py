"""One attempt at one job as its stages see it: the `conveyor.Context` they are handed.

It runs the kind's stages in order, skipping those an earlier attempt finished, hands
each its predecessors' outputs, and writes each stage's start, end, checkpoint and
progress to the ledger, fenced by the attempt number. What a stage returns must be JSON
(`storable`); what it raises is sorted here: `conveyor.Skip`, a job error, or something
nobody foresaw (`Crashed`, retried like a transient failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import structlog
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel, ValidationError
from structlog.contextvars import bound_contextvars

from conveyor import outcomes
from conveyor.kinds import Pipeline, Stage
from pipelines.resources import Resources
from service import ledger
from service.errors import DependencyUnavailable, JobError, PermanentError, TransientError
from service.storage.file_modes import make_scratch_dir
from service.telemetry import error_reports, metrics, tracing

log = structlog.get_logger("conveyor.runner")

PROGRESS_INTERVAL = 0.5  # seconds between two progress writes of one job


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
