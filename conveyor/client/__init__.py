"""Conveyor's Python client: `Client` (sync) and `AsyncClient` (asyncio), on httpx.

    from conveyor.client import Client

    with Client() as conveyor:                 # CONVEYOR_URL, CONVEYOR_API_KEY
        job = conveyor.upload("resume.pdf")
        job = conveyor.wait(job.id, timeout=300)
        print(job.status, job.result)

Jobs come back as `Job` objects; 429 and 503 are retried as Retry-After says; other
error answers raise `ApiError`. It imports httpx and nothing of the service. See docs/client.md.
"""

from conveyor.client.aio import AsyncClient
from conveyor.client.errors import ApiError, EventStreamError, UnsupportedFile
from conveyor.client.models import (
    BulkResult,
    Event,
    Job,
    JobError,
    Kind,
    Page,
    Stage,
    Workflow,
    WorkflowPage,
    WorkflowStep,
)
from conveyor.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BulkResult",
    "Client",
    "Event",
    "EventStreamError",
    "Job",
    "JobError",
    "Kind",
    "Page",
    "Stage",
    "UnsupportedFile",
    "Workflow",
    "WorkflowPage",
    "WorkflowStep",
]
