"""Declaring a kind of job: `job` for a one-function kind, `Pipeline` with `@stage` for a
checkpointed multi-stage one. The built-in kinds (pipelines/) are declared the same way.

A kind is a list of stages; each stage's return value is checkpointed in the ledger and
never recomputed: a re-run (retry, crash, Redis loss) skips the stages that finished and
hands the running stage whatever it kept with `ctx.save` (`ctx.saved`). A stage is called
with the job's context and its input, parsed with the kind's `input` model when it has
one. Workers publish each kind's `description` (with its input's JSON Schema) to the
ledger, so the API validates jobs without importing a kind's code.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pydantic import BaseModel

from service.config import Settings
from service.jobs import KindSpec
from service.ledger import KindDescription

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: `async def stage(ctx: Context, input) -> output`; the built-ins take the runner's own
#: Context (pipelines/runner.py `JobRun`), hence `Any` for the first argument.
StageFunction = Callable[[Any, Any], Awaitable[Any]]
Workspace = Callable[[Any], AbstractAsyncContextManager[Any]]
T = TypeVar("T")
#: A value, or how the deployment's settings decide it (e.g. `VIDEO_TIMEOUT_SECONDS`).
Configurable: TypeAlias = T | Callable[[Settings], T]
#: What a kind's jobs share in one worker process (OCR engines, ffmpeg slots, an API
#: client): made from the worker's settings and Redis when first needed, closed (its
#: `aclose()`, if any) when the worker stops.
Shared = Callable[[Settings, "Redis"], Any]
ANY_OBJECT: dict = {"type": "object"}


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFunction
    weight: float = 1.0  # its share of the job's progress


def last_output(outputs: dict[str, Any]) -> Any:
    return next(reversed(outputs.values()), {}) if outputs else {}


@dataclass
class Pipeline:
    """A kind: its name, stages, and the rules every job of it follows, whoever creates
    the job (see `spec`). `configured(settings)` fixes the values settings decide."""

    name: str
    stages: tuple[Stage, ...] = ()
    input: type[BaseModel] | None = None  # None: the input is handed over as a dict
    timeout: Configurable[float] = 600.0  # one attempt, in seconds
    tries: Configurable[int] = 5
    queue: str | None = None  # None: the deployment's queue (`KIND_QUEUES` may route it elsewhere)
    concurrency: int | None = None  # at most this many running jobs per concurrency key
    description: str = ""
    shared: Shared | None = None  # its jobs see the value as `ctx.shared`
    result: Callable[[dict[str, Any]], Any] = last_output
    workspace: Workspace | None = None
    """What the stages of one attempt share (temporary files): entered before the first
    stage, left after the last, however the attempt ends; its value is `ctx.workspace`."""
    endpoint: str | None = None  # the route that creates its jobs, when not POST /v1/jobs (uploads)
    stage_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.stage_names = tuple(stage.name for stage in self.stages)

    def stage(self, function: StageFunction | None = None, *, name: str | None = None, weight: float = 1.0):
        """Add a stage, run after the ones declared before it; used as `@kind.stage` or
        `@kind.stage(weight=3)` (its share of the job's progress). The function is returned
        unchanged."""

        def add(function: StageFunction) -> StageFunction:
            stage_name = name or function.__name__
            if stage_name in self.stage_names:
                raise ValueError(f"the kind {self.name!r} declares the stage {stage_name!r} twice")
            self.stages = (*self.stages, Stage(stage_name, function, weight))
            self.stage_names = (*self.stage_names, stage_name)
            return function

        return add(function) if function is not None else add

    def configured(self, settings: Settings) -> Pipeline:
        """This kind with the values the settings decide fixed (timeouts must be known when
        arq's functions are made, so they are fixed when the worker starts)."""
        return replace(self, timeout=_value(self.timeout, settings), tries=_value(self.tries, settings))

    @property
    def attempt_timeout(self) -> float:
        """One attempt's timeout, once `configured` fixed it."""
        assert not callable(self.timeout), f"{self.name}: configure the pipeline with the settings first"
        return self.timeout

    def spec(self, settings: Settings) -> KindSpec:
        """What the core needs to create this kind's jobs."""
        return KindSpec(
            self.name,
            tries=_value(self.tries, settings),
            timeout=_value(self.timeout, settings),
            queue=settings.queue_for(self.name, default=self.queue),
            concurrency=self.concurrency,
        )

    def input_schema(self) -> dict:
        """The JSON Schema a job's input must match (any object when no model is declared)."""
        return self.input.model_json_schema() if self.input is not None else dict(ANY_OBJECT)

    def parse_input(self, payload: Any) -> Any:
        """The stages' `input`: the payload parsed with the kind's model as the JSON it was
        sent as (so a strict model takes ISO dates as the API did; pydantic's
        ValidationError if it does not fit), or the payload itself."""
        return self.input.model_validate_json(json.dumps(payload)) if self.input is not None else payload

    def describe(self, settings: Settings) -> KindDescription:
        """What workers publish to the ledger for the API, which never imports this code."""
        spec = self.spec(settings)
        return KindDescription(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema(),
            stages=self.stage_names,
            tries=spec.tries,
            timeout=spec.timeout,
            queue=spec.queue,
            concurrency=spec.concurrency,
            endpoint=self.endpoint,
        )

    def progress_before(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return sum(stage.weight for stage in self.stages[:index]) / total

    def progress_share(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return self.stages[index].weight / total


def job(
    name: str,
    *,
    input: type[BaseModel] | None = None,
    tries: Configurable[int] = 5,
    timeout: Configurable[float] = 600.0,
    queue: str | None = None,
    concurrency: int | None = None,
    description: str | None = None,
) -> Callable[[StageFunction], Pipeline]:
    """Declare a one-stage kind from one function (the stage is named after it); its
    return value is the job's result. The description defaults to the docstring."""

    def declare(function: StageFunction) -> Pipeline:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"the kind {name!r}: {function.__qualname__} must be an async function")
        return Pipeline(
            name,
            (Stage(function.__name__, function),),
            input=input,
            tries=tries,
            timeout=timeout,
            queue=queue,
            concurrency=concurrency,
            description=description if description is not None else inspect.getdoc(function) or "",
        )

    return declare


def _value(value: Configurable[T], settings: Settings) -> T:
    return value(settings) if callable(value) else value
