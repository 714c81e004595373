"""A pipeline is a list of stages; each stage's output is checkpointed in the ledger.

A re-run (retry, crash, Redis loss) skips stages that already finished and hands the
running stage whatever partial checkpoint it saved (`run.saved`), so no work is redone
and no side effect repeats. Independent work inside a stage runs concurrently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.runner import JobRun

StageFunction = Callable[["JobRun"], Awaitable[dict | None]]
Workspace = Callable[["JobRun"], AbstractAsyncContextManager[Any]]


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
    kind: str
    stages: tuple[Stage, ...]
    timeout: float = 600.0  # one attempt, in seconds
    max_tries: int = 5
    result: Callable[[dict[str, dict]], dict] = last_output
    workspace: Workspace | None = None
    """What the stages of one attempt share (temporary files): entered before the first
    stage, left after the last, however the attempt ends; its value is `run.workspace`."""
    stage_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_names", tuple(stage.name for stage in self.stages))

    def progress_before(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return sum(stage.weight for stage in self.stages[:index]) / total

    def progress_share(self, index: int) -> float:
        total = sum(stage.weight for stage in self.stages) or 1.0
        return self.stages[index].weight / total
