"""`AsyncClient`: Conveyor's API from asyncio code, on httpx.AsyncClient.

The same methods as `Client` (see its docstrings), awaited, with `async for` over
`events` and `follow`. Every method runs the same plan as Client's (plans.py); this
module only performs its steps the asyncio way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncClient:
    """Conveyor's HTTP API for asyncio; `async with AsyncClient() as conveyor: …`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
    ) -> None:
        self.settings = Settings.resolve(url, api_key, timeout, max_retry_wait)
        self._http = httpx.AsyncClient(**self.settings.http_options())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, kind: str, input: Any, **options: Unpack[JobOptions]) -> Job:
        return await self._request(calls.submit(kind, input, options))

    async def submit_many(self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None) -> list[Job]:
        return await self._request(calls.submit_many(jobs, idempotency_key))

    async def upload(self, path: str | Path, **options: Unpack[UploadOptions]) -> Job:
        return await self._request(calls.upload(path, options))

    async def notify(self, channel: str, to: str | list[Any], template: str, **options: Unpack[NotifyOptions]) -> Job:
        return await self._request(calls.notify(channel, to, template, options))

    async def get(self, job_id: str) -> Job:
        return await self._request(calls.get(job_id))

    async def jobs(self, **list_filter: Unpack[ListFilter]) -> Page:
        return await self._request(calls.list_jobs(list_filter))

    async def wait(self, job_id: str | Job, timeout: float | None = None) -> Job:
        return await self._run(plans.follow(job_id, timeout, self._retry_wait))

    def follow(self, job_id: str | Job, timeout: float | None = None) -> AsyncIterator[Job]:
        return self._iterate(plans.follow(job_id, timeout, self._retry_wait))

    def events(self, job_id: str) -> AsyncIterator[Event]:
        return self._iterate(plans.events(job_id, self._retry_wait))

    async def cancel(self, job_id: str) -> Job:
        return await self._request(calls.steer(job_id, "cancel"))

    async def retry(self, job_id: str) -> Job:
        return await self._request(calls.steer(job_id, "retry"))

    async def cancel_jobs(self, **job_filter: Unpack[JobFilter]) -> BulkResult:
        return await self._request(calls.bulk("cancel", job_filter))

    async def retry_jobs(self, **job_filter: Unpack[JobFilter]) -> BulkResult:
        return await self._request(calls.bulk("retry", job_filter))

    async def kinds(self) -> list[Kind]:
        return await self._request(calls.kinds())

    async def submit_workflow(
        self, steps: Mapping[str, Mapping[str, Any]], **options: Unpack[WorkflowOptions]
    ) -> Workflow:
        return await self._request(calls.submit_workflow(steps, options))

    async def get_workflow(self, workflow_id: str) -> Workflow:
        return await self._request(calls.get_workflow(workflow_id))

    async def workflows(self, **workflow_filter: Unpack[WorkflowFilter]) -> WorkflowPage:
        return await self._request(calls.list_workflows(workflow_filter))

    async def wait_workflow(self, workflow_id: str | Workflow, timeout: float | None = None) -> Workflow:
        return await self._run(plans.wait_workflow(workflow_id, timeout, self._retry_wait))

    async def cancel_workflow(self, workflow_id: str) -> Workflow:
        return await self._request(calls.cancel_workflow(workflow_id))

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        return await self._request(calls.raw(method, path, params, json))

    @property
    def _retry_wait(self) -> float:
        return self.settings.max_retry_wait

    async def _request(self, call: calls.Call[T]) -> T:
        return await self._run(plans.request(call, self._retry_wait))

    async def _run(self, plan: plans.Plan[T]) -> T:
        """Perform the plan; what it returns (what it emits on the way is dropped)."""
        last: Any = None
        async for last in self._iterate(plans.returning(plan)):  # noqa: B007 (the last one is the value)
            pass
        return cast(T, last)

    async def _iterate(self, plan: plans.Plan[Any]) -> AsyncIterator[Any]:
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
                    reply = await performer.perform(step)
                except httpx.TransportError as exc:
                    error = exc
        finally:
            await performer.close()
            plan.close()


class _Performer:
    """Performs one plan's steps; holds its open event stream, if any."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.settings = settings
        self.stream: httpx.Response | None = None
        self.lines: AsyncIterator[str] | None = None

    async def perform(self, step: plans.Step) -> Any:
        if isinstance(step, plans.Send):
            with step.call.arguments() as arguments:
                return await self.http.send(self.http.build_request(**arguments))
        if isinstance(step, plans.Open):
            await self.close()
            with step.call.arguments() as arguments:
                request = self.http.build_request(**arguments, timeout=self.settings.stream_timeout(step.read_timeout))
            response = await self.http.send(request, stream=True)
            if response.status_code != 200:
                await response.aread()
                await response.aclose()
                return response
            self.stream, self.lines = response, response.aiter_lines()
            return response
        if isinstance(step, plans.ReadLine):
            return await anext(self.lines, None) if self.lines is not None else None
        if isinstance(step, plans.Close):
            return await self.close()
        assert isinstance(step, plans.Sleep)
        await asyncio.sleep(step.seconds)
        return None

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream, self.lines = None, None
