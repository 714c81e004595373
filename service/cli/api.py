"""A small client of Conveyor's HTTP API for the commands that go through it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from service.cli import sse
from service.cli.output import TIMED_OUT, CliError

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
POLL_MIN, POLL_MAX = 0.2, 5.0
CANDIDATES_SHOWN = 10  # jobs listed when an id prefix names several
STREAM_READ_SECONDS = 45.0  # the API pings an idle stream every 15 s


def problem_message(response: httpx.Response) -> str:
    """An error answer in one line, from its problem+json detail when it has one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("detail") or body.get("title")):
        return f"{response.status_code} {body.get('title') or response.reason_phrase}: {body.get('detail', '')}".rstrip(
            ": "
        )
    return f"{response.status_code} {response.reason_phrase}"


def apply_event(job: dict, event: dict) -> dict:
    """The job as it is after one of its events (a `stage` event's status is the stage's)."""
    changes = {name: event[name] for name in ("stage", "progress") if name in event}
    if event.get("type") == "status":
        changes |= {name: event[name] for name in ("status", "error") if name in event}
    return {**job, **changes}


def retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, POLL_MIN), POLL_MAX)


class Api:
    def __init__(self, url: str, key: str | None, *, timeout: float = 30.0) -> None:
        if not key:
            raise CliError("no API key: pass --key or set CONVEYOR_API_KEY (`conveyor up` prints one)")
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer if 2xx, else a CliError carrying the problem's detail."""
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise CliError(problem_message(response))
        return response

    def job(self, job_id: str) -> httpx.Response:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def job_id(self, given: str) -> str:
        """The id of the job `given` names: a whole id, or the start of one (as tables show
        it) that exactly one of the tenant's jobs has, found by the API (`id_prefix`)."""
        try:
            return str(uuid.UUID(given))
        except ValueError:
            pass
        page = self.call("GET", "/v1/jobs", params={"id_prefix": given, "limit": CANDIDATES_SHOWN}).json()
        found = page["items"]
        if not found:
            raise CliError(f"no job found whose id starts with {given!r}")
        if len(found) > 1:
            count = f"{len(found)}{' or more' if page.get('next_cursor') else ''}"
            listed = "".join(f"\n  {job['id']}  {job['kind']}  {job['status']}  {job['created_at']}" for job in found)
            raise CliError(f"{count} jobs have ids starting with {given!r}; give more of the id:{listed}")
        return found[0]["id"]

    def follow(self, job: dict, on_change: Callable[[dict], None], *, timeout: float) -> dict:
        """Follow the job until it ends, calling `on_change` as it moves; its final state.

        Its event stream shows each change as it happens; if the stream cannot be had or
        breaks off, polling takes over. Either way the ledger has the last word.
        """
        deadline = time.monotonic() + timeout
        self._stream(job, on_change, deadline)
        return self._poll(job["id"], on_change, deadline, timeout)

    def _stream(self, job: dict, on_change: Callable[[dict], None], deadline: float) -> None:
        """Show the job's events until a final status comes, the stream fails or time is up."""
        read_timeout = max(min(STREAM_READ_SECONDS, deadline - time.monotonic()), POLL_MIN)
        try:
            with self.http.stream(
                "GET",
                f"/v1/jobs/{job['id']}/events",
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(read_timeout, connect=5.0),
            ) as response:
                if response.status_code != 200:
                    return
                for event in sse.parse(response.iter_lines()):
                    job = apply_event(job, json.loads(event.data))
                    on_change(job)
                    if job["status"] in FINISHED or time.monotonic() >= deadline:
                        return
        except (httpx.TransportError, ValueError):
            return  # polling takes over

    def _poll(self, job_id: str, on_change: Callable[[dict], None], deadline: float, timeout: float) -> dict:
        """Poll the job (pausing as its Retry-After says) until it ends."""
        while True:
            response = self.job(job_id)
            job = response.json()
            on_change(job)
            if job["status"] in FINISHED:
                return job
            if time.monotonic() >= deadline:
                raise CliError(f"job {job_id} is still {job['status']} after {timeout:g}s", code=TIMED_OUT)
            time.sleep(min(retry_after(response), max(deadline - time.monotonic(), 0)))
