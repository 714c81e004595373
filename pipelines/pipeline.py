"""A kind of job, declared once: its stages, tries, timeout and queue.

A pipeline is a list of stages; each stage's output is checkpointed in the ledger.

A re-run (retry, crash, Redis loss) skips stages that already finished and hands the
running stage whatever partial checkpoint it saved (`run.saved`), so no work is redone
and no side effect repeats. Independent work inside a stage runs concurrently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from service.config import Settings
from service.jobs import KindSpec

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from pipelines.runner import JobRun

StageFunction = Callable[["JobRun"], Awaitable[dict | None]]
Workspace = Callable[["JobRun"], AbstractAsyncContextManager[Any]]
T = TypeVar("T")
#: A value, or how the deployment's settings decide it (e.g. `VIDEO_TIMEOUT_SECONDS`).
Configurable: TypeAlias = T | Callable[[Settings], T]
#: What a kind's jobs share in one worker process (OCR engines, ffmpeg slots): made from the
#: worker's settings and Redis when it starts, closed (its `aclose()`, if any) when it stops.
Shared = Callable[[Settings, "Redis"], Any]


class Skip(Exception):
    """Raised by a stage with nothing to do (e.g. no page needs OCR): status `skipped`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFunction
    weight: float = 1.0  # its share of the job's progress


def last_output(outputs: dict[str, dict]) -> dict:
    return next(reversed(outputs.values()), {}) if outputs else {}


@dataclass(frozen=True)
class Pipeline:
    """A kind: its name, stages, and the rules every job of it follows, whoever creates
    the job (see `spec`). `configured(settings)` fixes the values settings decide."""

    kind: str
    stages: tuple[Stage, ...]
    timeout: Configurable[float] = 600.0  # one attempt, in seconds
    tries: Configurable[int] = 5
    queue: str | None = None  # None: the deployment's queue (`KIND_QUEUES` may route it elsewhere)
    concurrency: int | None = None  # at most this many running jobs per concurrency key
    shared: Shared | None = None  # its jobs see the value as `run.shared`
    result: Callable[[dict[str, dict]], dict] = last_output
    workspace: Workspace | None = None
    """What the stages of one attempt share (temporary files): entered before the first
    stage, left after the last, however the attempt ends; its value is `run.workspace`."""
    stage_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_names", tuple(stage.name for stage in self.stages))

    def configured(self, settings: Settings) -> Pipeline:
        """This kind with the values the settings decide fixed (timeouts must be known when
        arq's functions are made, so they are fixed when the worker starts)."""
        return replace(self, timeout=_value(self.timeout, settings), tries=_value(self.tries, settings))

    @property
    def attempt_timeout(self) -> float:
        """One attempt's timeout, once `configured` fixed it."""
        assert not callable(self.timeout), f"{self.kind}: configure the pipeline with the settings first"
        return self.timeout

    def spec(self, settings: Settings) -> KindSpec:
        """What the core needs to create this kind's jobs."""
        return KindSpec(
            self.kind,
            tries=_value(self.tries, settings),
            timeout=_value(self.timeout, settings),
            queue=settings.queue_for(self.kind, default=self.queue),
            concurrency=self.concurrency,
        )

    def progress_before(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return sum(stage.weight for stage in self.stages[:index]) / total

    def progress_share(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return self.stages[index].weight / total


def _value(value: Configurable[T], settings: Settings) -> T:
    return value(settings) if callable(value) else value
