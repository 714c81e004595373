"""Each operation of the API as a `Call`: what to send and how to read the answer.

Shared by the sync and the async client, which differ only in how they send it. Options
are checked here, so a misspelt one is a TypeError before anything is sent.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx

from conveyor.client import content
from conveyor.client.errors import UnsupportedFile, retry_after_seconds
from conveyor.client.models import BulkResult, Job, Kind, Page, Workflow, WorkflowPage

T = TypeVar("T")


class JobOptions(TypedDict, total=False):
    """What `submit` takes besides the kind and input (the fields of `POST /v1/jobs`)."""

    priority: Literal["low", "normal", "high"]
    run_at: datetime | str  # with an offset
    max_tries: int
    timeout: float
    callback_url: str
    metadata: dict[str, Any]
    concurrency_key: str
    idempotency_key: str  # sent as the Idempotency-Key header


class UploadOptions(TypedDict, total=False):
    metadata: dict[str, Any]
    callback_url: str
    renditions: str | list[str]  # videos only: "720p,480p" or ["720p", "480p"]
    idempotency_key: str
    progress: Callable[[int], None]  # called with each chunk's size as it is sent


class NotifyOptions(TypedDict, total=False):
    data: dict[str, Any]
    send_at: datetime | str
    metadata: dict[str, Any]
    idempotency_key: str


class JobFilter(TypedDict, total=False):
    """Which jobs a bulk retry or cancel touches; `dry_run` only counts them."""

    kind: str
    status: str
    error_type: str
    created_after: datetime | str
    created_before: datetime | str
    dry_run: bool


class ListFilter(TypedDict, total=False):
    """Which of your jobs `jobs` lists; None leaves a filter out."""

    kind: str | None
    status: str | None
    limit: int | None
    cursor: str | None  # where the previous page ended (its next_cursor)
    id_prefix: str | None  # the start of a job id


class WorkflowOptions(TypedDict, total=False):
    """What `submit_workflow` takes besides its steps (the fields of `POST /v1/workflows`)."""

    callback_url: str
    metadata: dict[str, Any]
    idempotency_key: str


class WorkflowFilter(TypedDict, total=False):
    """Which of your workflows `workflows` lists; None leaves a filter out."""

    status: str | None
    limit: int | None
    cursor: str | None


@dataclass(frozen=True)
class Upload:
    path: Path
    content_type: str
    fields: dict[str, str]
    progress: Callable[[int], None] | None = None


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    upload: Upload | None = None

    @contextlib.contextmanager
    def arguments(self) -> Iterator[dict[str, Any]]:
        """Keyword arguments for httpx's `build_request`; an upload's file is opened anew
        for each attempt and streamed from disk, never read whole."""
        arguments: dict[str, Any] = {"method": self.method, "url": self.path, "headers": dict(self.headers)}
        if self.params is not None:
            arguments["params"] = self.params
        if self.json is not None:
            arguments["json"] = self.json
        if self.upload is None:
            yield arguments
            return
        upload = self.upload
        with ReportingFile(upload.path, upload.progress) as file:
            yield arguments | {"files": {"file": (upload.path.name, file, upload.content_type)}, "data": upload.fields}


class ReportingFile(io.FileIO):
    """A file that reports the size of each chunk httpx reads from it."""

    def __init__(self, path: Path, on_read: Callable[[int], None] | None) -> None:
        super().__init__(path, "rb")
        self.on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self.on_read is not None:
            self.on_read(len(chunk))
        return chunk


def _checked(options: Mapping[str, Any], allowed: type, what: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed.__annotations__))
    if unknown:
        raise TypeError(
            f"{what} got unknown option(s) {', '.join(unknown)}; it takes {', '.join(allowed.__annotations__)}"
        )
    return {name: _wire(value) for name, value in options.items() if value is not None}


def _wire(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _idempotency(fields: dict[str, Any]) -> dict[str, str]:
    key = fields.pop("idempotency_key", None)
    return {"Idempotency-Key": key} if key else {}


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _job(response: httpx.Response) -> Job:
    return Job.from_dict(response.json())


def _jobs(response: httpx.Response) -> list[Job]:
    return [Job.from_dict(item) for item in response.json()["items"]]


def _bulk(response: httpx.Response) -> BulkResult:
    body = response.json()
    return BulkResult(matched=body["matched"], changed=body["changed"])


def job_body(kind: str, input: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "input": input, **_checked(options, JobOptions, "a job")}


def submit(kind: str, input: Any, options: Mapping[str, Any]) -> Call[Job]:
    body = job_body(kind, input, options)
    headers = _idempotency(body)
    return Call("POST", "/v1/jobs", _job, json=body, headers=headers)


def submit_many(jobs: Sequence[Mapping[str, Any]], idempotency_key: str | None) -> Call[list[Job]]:
    bodies = []
    for job in jobs:
        if "idempotency_key" in job:
            raise TypeError("an Idempotency-Key covers the whole batch: pass submit_many(jobs, idempotency_key=…)")
        options = {name: value for name, value in job.items() if name not in ("kind", "input")}
        bodies.append(job_body(job["kind"], job.get("input"), options))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/jobs/batch", _jobs, json={"jobs": bodies}, headers=headers)


def upload(path: str | Path, options: Mapping[str, Any]) -> Call[Job]:
    path = Path(path)
    checked = {name: value for name, value in options.items() if name != "progress"}
    fields = _checked(checked, UploadOptions, "upload")
    target = content.upload_target(path)
    if target is None:
        raise UnsupportedFile(f"{path} is not a PDF, PNG, JPEG, TIFF, MP4, MOV, WebM or MKV file")
    endpoint, content_type = target
    headers = _idempotency(fields)
    renditions = fields.get("renditions")
    if renditions is not None:
        if endpoint != content.VIDEOS:
            raise ValueError("renditions apply to videos only")
        fields["renditions"] = renditions if isinstance(renditions, str) else ",".join(renditions)
    if "metadata" in fields:
        fields["metadata"] = json.dumps(fields["metadata"])
    return Call(
        "POST",
        endpoint,
        _job,
        headers=headers,
        upload=Upload(path, content_type, fields, options.get("progress")),
    )


def notify(channel: str, to: str | list[Any], template: str, options: Mapping[str, Any]) -> Call[Job]:
    body = {"channel": channel, "to": to, "template": template, **_checked(options, NotifyOptions, "notify")}
    headers = _idempotency(body)
    return Call("POST", "/v1/notifications", _job, json=body, headers=headers)


def get(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{job_id}", _job)


def look(job_id: str) -> Call[tuple[Job, float | None]]:
    """The job and the `Retry-After` its answer suggests before asking again."""
    return Call("GET", f"/v1/jobs/{job_id}", lambda response: (_job(response), retry_after_seconds(response)))


def steer(job_id: str, action: Literal["cancel", "retry"]) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{job_id}/{action}", _job)


def bulk(action: Literal["cancel", "retry"], job_filter: Mapping[str, Any]) -> Call[BulkResult]:
    return Call("POST", f"/v1/jobs/{action}", _bulk, json=_checked(job_filter, JobFilter, f"{action}_jobs"))


def list_jobs(list_filter: Mapping[str, Any]) -> Call[Page]:
    params = _checked(list_filter, ListFilter, "jobs")

    def page(response: httpx.Response) -> Page:
        body = response.json()
        return Page([Job.from_dict(item) for item in body["items"]], body.get("next_cursor"))

    return Call("GET", "/v1/jobs", page, params=params)


def kinds() -> Call[list[Kind]]:
    return Call("GET", "/v1/kinds", lambda response: [Kind.from_dict(item) for item in response.json()["items"]])


def raw(method: str, path: str, params: Mapping[str, Any] | None, json: Any) -> Call[Any]:
    return Call(method.upper(), path, _json, params=params, json=json)


def _workflow(response: httpx.Response) -> Workflow:
    return Workflow.from_dict(response.json())


def submit_workflow(steps: Mapping[str, Mapping[str, Any]], options: Mapping[str, Any]) -> Call[Workflow]:
    body = {"steps": steps, **_checked(options, WorkflowOptions, "submit_workflow")}
    headers = _idempotency(body)
    return Call("POST", "/v1/workflows", _workflow, json=body, headers=headers)


def get_workflow(workflow_id: str) -> Call[Workflow]:
    return Call("GET", f"/v1/workflows/{workflow_id}", _workflow)


def cancel_workflow(workflow_id: str) -> Call[Workflow]:
    return Call("POST", f"/v1/workflows/{workflow_id}/cancel", _workflow)


def list_workflows(workflow_filter: Mapping[str, Any]) -> Call[WorkflowPage]:
    params = _checked(workflow_filter, WorkflowFilter, "workflows")

    def page(response: httpx.Response) -> WorkflowPage:
        body = response.json()
        return WorkflowPage([Workflow.from_dict(item) for item in body["items"]], body.get("next_cursor"))

    return Call("GET", "/v1/workflows", page, params=params)


def events(resource: str, last_id: str | None) -> Call[None]:
    """The event stream of `resource`: `jobs/ID` or `workflows/ID`."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
    return Call("GET", f"/v1/{resource}/events", lambda response: None, headers=headers)
