"""The API's resources as typed objects: a Job, its stages and events, a kind, a page,
a workflow and its steps.

Each `from_dict` takes the JSON the API sent; a Job's `to_dict` gives it back exactly,
fields this version does not know included, so nothing the API adds is lost in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def format_time(value: datetime | None) -> str | None:
    """As the API writes times: ISO 8601, UTC as `Z`."""
    return value.isoformat().replace("+00:00", "Z") if value else None


class Ending:
    """What a Job and a Workflow both answer from their status."""

    status: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class JobError:
    """Why a job (or a stage) failed: a stable `type` and a message for people."""

    type: str
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobError | None:
        if data is None:
            return None
        rest = {name: value for name, value in data.items() if name not in ("type", "message")}
        return cls(str(data.get("type")), data.get("message"), rest)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, **self.extra}


@dataclass(frozen=True)
class Stage:
    name: str
    status: str  # the job's statuses, plus `skipped`
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: JobError | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage:
        return cls(
            data["name"],
            data["status"],
            parse_time(data.get("started_at")),
            parse_time(data.get("finished_at")),
            JobError.from_dict(data.get("error")),
        )

    def to_dict(self) -> dict[str, Any]:
        shown = {
            "name": self.name,
            "status": self.status,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at),
        }
        return shown | ({"error": self.error.to_dict()} if self.error else {})


@dataclass(frozen=True)
class Job(Ending):
    """A job as `GET /v1/jobs/{id}` shows it; `extra` holds fields beyond the contract's."""

    id: str
    kind: str
    status: str  # queued | running | succeeded | failed | cancelled
    progress: float = 0.0
    stage: str | None = None
    stages: tuple[Stage, ...] = ()
    attempts: int = 0
    error: JobError | None = None
    result: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {item.name for item in fields(cls)}
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data["status"],
            progress=float(data.get("progress") or 0.0),
            stage=data.get("stage"),
            stages=tuple(Stage.from_dict(stage) for stage in data.get("stages") or ()),
            attempts=data.get("attempts") or 0,
            error=JobError.from_dict(data.get("error")),
            result=data.get("result"),
            metadata=data.get("metadata") or {},
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            finished_at=parse_time(data.get("finished_at")),
            extra={name: value for name, value in data.items() if name not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The job as the API's JSON."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": self.progress,
            "stage": self.stage,
            "stages": [stage.to_dict() for stage in self.stages],
            "attempts": self.attempts,
            "error": self.error.to_dict() if self.error else None,
            "result": self.result,
            "metadata": self.metadata,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "finished_at": format_time(self.finished_at),
            **self.extra,
        }


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: `type` is `status`, `stage` or `progress`; `data` its JSON."""

    type: str
    data: dict[str, Any]
    id: str | None = None

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def final(self) -> bool:
        """The job's end: a `status` event with a finished status (a stage's does not count)."""
        return self.type == "status" and self.status in FINISHED


def apply_event(job: Job, event: Event) -> Job:
    """The job as it is after one of its events (a `stage` event's status is the stage's)."""
    changes: dict[str, Any] = {name: event.data[name] for name in ("stage", "progress") if name in event.data}
    if event.type == "status":
        changes |= {"status": event.data.get("status", job.status)}
        if "error" in event.data:
            changes |= {"error": JobError.from_dict(event.data["error"])}
    return replace(job, **changes)


@dataclass(frozen=True)
class Page:
    """One page of `GET /v1/jobs`, newest first; `next_cursor` asks for the next."""

    items: list[Job]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [job.to_dict() for job in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True)
class Kind:
    """A kind of job as `GET /v1/kinds` describes it."""

    kind: str
    input_schema: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    stages: list[str] = field(default_factory=list)
    tries: int | None = None
    timeout: float | None = None
    queue: str | None = None
    concurrency: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Kind:
        known = {item.name for item in fields(cls)} - {"extra"}
        return cls(
            **{name: value for name, value in data.items() if name in known},
            extra={name: value for name, value in data.items() if name not in known},
        )


@dataclass(frozen=True)
class BulkResult:
    """What a bulk retry or cancel matched and how many of those it changed."""

    matched: int
    changed: int


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a workflow: its status (`waiting`, then a job's statuses), its jobs' ids
    (one per item of a for_each step), and why it failed if it could not start."""

    status: str
    jobs: tuple[str, ...] = ()
    error: JobError | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowStep:
        return cls(data["status"], tuple(data.get("jobs") or ()), JobError.from_dict(data.get("error")))

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "jobs": list(self.jobs)} | (
            {"error": self.error.to_dict()} if self.error else {}
        )


@dataclass(frozen=True)
class Workflow(Ending):
    """A workflow as `GET /v1/workflows/{id}` shows it: its steps by name, in the order given."""

    id: str
    status: str  # queued | running | succeeded | failed | cancelled
    steps: dict[str, WorkflowStep] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    finished_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        known = {item.name for item in fields(cls)}
        return cls(
            id=data["id"],
            status=data["status"],
            steps={name: WorkflowStep.from_dict(step) for name, step in (data.get("steps") or {}).items()},
            metadata=data.get("metadata") or {},
            created_at=parse_time(data.get("created_at")),
            finished_at=parse_time(data.get("finished_at")),
            extra={name: value for name, value in data.items() if name not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The workflow as the API's JSON."""
        return {
            "id": self.id,
            "status": self.status,
            "steps": {name: step.to_dict() for name, step in self.steps.items()},
            "metadata": self.metadata,
            "created_at": format_time(self.created_at),
            "finished_at": format_time(self.finished_at),
            **self.extra,
        }


@dataclass(frozen=True)
class WorkflowPage:
    """One page of `GET /v1/workflows`, newest first; `next_cursor` asks for the next."""

    items: list[Workflow]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [workflow.to_dict() for workflow in self.items], "next_cursor": self.next_cursor}
