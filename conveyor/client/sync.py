"""`Client`: Conveyor's API from synchronous code, on httpx.Client.

Every method runs a plan (plans.py, shared with AsyncClient); this module only performs
its steps: send, stream lines, sleep.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Unpack, cast

import httpx

from conveyor.client import calls, plans
from conveyor.client.calls import (
    JobFilter,
    JobOptions,
    ListFilter,
    NotifyOptions,
    UploadOptions,
    WorkflowFilter,
    WorkflowOptions,
)
from conveyor.client.models import BulkResult, Event, Job, Kind, Page, Workflow, WorkflowPage
from conveyor.client.settings import Settings

T = TypeVar("T")


class Client:
    """Conveyor's HTTP API. `url` and `api_key` default to CONVEYOR_URL and CONVEYOR_API_KEY.

    429 and 503 answers are sent again after their Retry-After, for at most
    `max_retry_wait` seconds in all per call; other error answers raise ApiError.
    Use it as a context manager, or `close()` it.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        self.settings = Settings.resolve(url, api_key, timeout, max_retry_wait)
        self._http = httpx.Client(**self.settings.http_options())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # Jobs in

    def submit(self, kind: str, input: Any, **options: Unpack[JobOptions]) -> Job:
        """`POST /v1/jobs`: a job of `kind` with `input`; options as JobOptions says."""
        return self._request(calls.submit(kind, input, options))

    def submit_many(self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None) -> list[Job]:
        """`POST /v1/jobs/batch`: up to 1,000 `{kind, input, …options}`, all or none; in order."""
        return self._request(calls.submit_many(jobs, idempotency_key))

    def upload(self, path: str | Path, **options: Unpack[UploadOptions]) -> Job:
        """A document or a video (told apart by its first bytes), streamed from disk."""
        return self._request(calls.upload(path, options))

    def notify(self, channel: str, to: str | list[Any], template: str, **options: Unpack[NotifyOptions]) -> Job:
        """`POST /v1/notifications`: email, sms, push or webhook, with `data` for the template."""
        return self._request(calls.notify(channel, to, template, options))

    # Jobs out

    def get(self, job_id: str) -> Job:
        return self._request(calls.get(job_id))

    def jobs(self, **list_filter: Unpack[ListFilter]) -> Page:
        """`GET /v1/jobs`: one page of your jobs, newest first."""
        return self._request(calls.list_jobs(list_filter))

    def wait(self, job_id: str | Job, timeout: float | None = None) -> Job:
        """The job once it has ended, following its event stream (polling only if the
        stream cannot be had); TimeoutError after `timeout` seconds."""
        return self._run(plans.follow(job_id, timeout, self._retry_wait))

    def follow(self, job_id: str | Job, timeout: float | None = None) -> Iterator[Job]:
        """The job's state each time it changes, ending with its final state (as `wait`)."""
        return self._iterate(plans.follow(job_id, timeout, self._retry_wait))

    def events(self, job_id: str) -> Iterator[Event]:
        """The job's events (`status`, `stage`, `progress`) as they happen, until it ends;
        a stream that breaks off is resumed where it stopped."""
        return self._iterate(plans.events(job_id, self._retry_wait))

    # Steering

    def cancel(self, job_id: str) -> Job:
        return self._request(calls.steer(job_id, "cancel"))

    def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again (ApiError 409 for any other)."""
        return self._request(calls.steer(job_id, "retry"))

    def cancel_jobs(self, **job_filter: Unpack[JobFilter]) -> BulkResult:
        """`POST /v1/jobs/cancel`: cancel the queued and running jobs the filter matches."""
        return self._request(calls.bulk("cancel", job_filter))

    def retry_jobs(self, **job_filter: Unpack[JobFilter]) -> BulkResult:
        """`POST /v1/jobs/retry`: retry the failed and cancelled jobs the filter matches."""
        return self._request(calls.bulk("retry", job_filter))

    def kinds(self) -> list[Kind]:
        return self._request(calls.kinds())

    # Workflows

    def submit_workflow(self, steps: Mapping[str, Mapping[str, Any]], **options: Unpack[WorkflowOptions]) -> Workflow:
        """`POST /v1/workflows`: steps by name, each `{kind, input, after?, for_each?}`."""
        return self._request(calls.submit_workflow(steps, options))

    def get_workflow(self, workflow_id: str) -> Workflow:
        return self._request(calls.get_workflow(workflow_id))

    def workflows(self, **workflow_filter: Unpack[WorkflowFilter]) -> WorkflowPage:
        """`GET /v1/workflows`: one page of your workflows, newest first."""
        return self._request(calls.list_workflows(workflow_filter))

    def wait_workflow(self, workflow_id: str | Workflow, timeout: float | None = None) -> Workflow:
        """The workflow once it has ended, told by its event stream (no polling while the
        stream can be had); TimeoutError after `timeout` seconds."""
        return self._run(plans.wait_workflow(workflow_id, timeout, self._retry_wait))

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """No step starts any more; its waiting and running steps end cancelled."""
        return self._request(calls.cancel_workflow(workflow_id))

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        """Any other endpoint, with the same retries and errors: its JSON answer."""
        return self._request(calls.raw(method, path, params, json))

    # Performing plans

    @property
    def _retry_wait(self) -> float:
        return self.settings.max_retry_wait

    def _request(self, call: calls.Call[T]) -> T:
        return self._run(plans.request(call, self._retry_wait))

    def _run(self, plan: plans.Plan[T]) -> T:
        """Perform the plan; what it returns (what it emits on the way is dropped)."""
        last = collections.deque(self._iterate(plans.returning(plan)), maxlen=1)
        return cast(T, last[0])

    def _iterate(self, plan: plans.Plan[Any]) -> Iterator[Any]:
        """Perform the plan's steps, yielding what it emits."""
        performer = _Performer(self._http, self.settings)
        reply: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    step = plan.throw(error) if error is not None else plan.send(reply)
                except StopIteration:
                    return
                reply, error = None, None
                if isinstance(step, plans.Emit):
                    yield step.value
                    continue
                try:
                    reply = performer.perform(step)
                except httpx.TransportError as exc:
                    error = exc
        finally:
            performer.close()
            plan.close()


class _Performer:
    """Performs one plan's steps; holds its open event stream, if any."""

    def __init__(self, http: httpx.Client, settings: Settings) -> None:
        self.http = http
        self.settings = settings
        self.stream: httpx.Response | None = None
        self.lines: Iterator[str] = iter(())

    def perform(self, step: plans.Step) -> Any:
        if isinstance(step, plans.Send):
            with step.call.arguments() as arguments:
                return self.http.send(self.http.build_request(**arguments))
        if isinstance(step, plans.Open):
            self.close()
            with step.call.arguments() as arguments:
                request = self.http.build_request(**arguments, timeout=self.settings.stream_timeout(step.read_timeout))
            response = self.http.send(request, stream=True)
            if response.status_code != 200:
                response.read()
                response.close()
                return response
            self.stream, self.lines = response, response.iter_lines()
            return response
        if isinstance(step, plans.ReadLine):
            return next(self.lines, None)
        if isinstance(step, plans.Close):
            return self.close()
        assert isinstance(step, plans.Sleep)
        time.sleep(step.seconds)
        return None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream, self.lines = None, iter(())
