"""A real HTTP server the fault tests' stages report to, right before each stage returns.

Each report names (job, stage, attempt, worker). The server is idempotent per
(job, stage): the first report is *accepted*, a repeat (a stage re-run after its worker
died between reporting and checkpointing) is recorded as a duplicate. Tests compare this
record with the ledger to prove that a finished stage never ran again.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.errors import TransientError

from .served_app import Served, ServedApp

REPORT_TRIES = 5  # a link that just came back may drop the first connection attempts


async def report_stage(ctx, url: str, stage: str) -> None:
    """Tell the counter at `url` that `stage` of the context's job is about to return."""
    body = {"job": str(ctx.job_id), "stage": stage, "attempt": ctx.attempt, "worker": ctx.resources.worker_id}
    for attempt in range(REPORT_TRIES):
        try:
            response = await ctx.resources.http.post(f"{url}/stages", json=body)
            response.raise_for_status()
            return
        except httpx.ConnectError as exc:  # nothing was sent: trying again cannot duplicate
            if attempt == REPORT_TRIES - 1:
                raise TransientError(f"stage counter: {type(exc).__name__}") from exc
            await asyncio.sleep(0.5)
        except httpx.HTTPError as exc:
            raise TransientError(f"stage counter: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class Report:
    job: str
    stage: str
    attempt: int
    worker: str


class StageCounter(Served):
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.reports: list[Report] = []
        self.accepted: dict[tuple[str, str], Report] = {}
        self._lock = threading.Lock()
        self.served = ServedApp(Starlette(routes=[Route("/stages", self._report, methods=["POST"])]), host=host)

    async def _report(self, request: Request) -> JSONResponse:
        body = await request.json()
        report = Report(body["job"], body["stage"], int(body["attempt"]), body["worker"])
        with self._lock:
            self.reports.append(report)
            first = self.accepted.setdefault((report.job, report.stage), report) is report
        return JSONResponse({"accepted": first}, status_code=201 if first else 200)

    def for_job(self, job: str) -> list[Report]:
        with self._lock:
            return [report for report in self.reports if report.job == job]

    def duplicates(self) -> int:
        with self._lock:
            return len(self.reports) - len(self.accepted)
