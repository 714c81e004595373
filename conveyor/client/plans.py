"""What each operation does, written once for both clients: plans that say what to send,
when to sleep and what to hand the caller, and are told what came back.

A plan is a generator of steps. The sync client performs each step with httpx.Client and
time.sleep, the async one with httpx.AsyncClient and asyncio.sleep (see `Driver`s in
sync.py and aio.py); a transport error is thrown into the plan where it happened.
Retries, the event stream's reconnects and `wait`'s fall-back to polling live here only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from conveyor.client import calls
from conveyor.client.calls import Call
from conveyor.client.errors import ApiError, EventStreamError, retry_after_seconds
from conveyor.client.models import Event, Job, Workflow, apply_event
from conveyor.client.sse import EventParser

T = TypeVar("T")

RETRIED = frozenset({429, 503})
DEFAULT_RETRY_AFTER = 1.0  # a 429 or 503 without Retry-After
STREAM_READ_SECONDS = 45.0  # the API pings an idle stream every 15 s
FRUITLESS_CONNECTIONS = 5  # event streams in a row that end without an event before giving up
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0  # seconds between such reconnections
POLL_MIN, POLL_MAX = 0.2, 5.0  # seconds between polls, when the stream cannot be had


@dataclass(frozen=True)
class Send:
    """Send the call; the reply is its whole answer."""

    call: Call[Any]


@dataclass(frozen=True)
class Open:
    """Open the call as a stream (closing any open one); the reply is the answer, its body
    still to read with ReadLine if 200, else already read."""

    call: Call[Any]
    read_timeout: float


class ReadLine:
    """The reply is the open stream's next line, or None at its end."""


class Close:
    """Close the open stream."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    """Hand a value to whoever iterates the plan (events, a job's states)."""

    value: Any


Step = Send | Open | ReadLine | Close | Sleep | Emit
Plan = Generator[Step, Any, T]


def returning(plan: Plan[T]) -> Plan[None]:
    """The plan, its return value emitted last: how a driver gets it from an iterator."""
    value = yield from plan
    yield Emit(value)


class RetryBudget:
    """How long one operation may still wait on 429 and 503 answers, in total."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before sending again, or None: not to be retried, or it would
        take more than the budget has left."""
        if response.status_code not in RETRIED:
            return None
        delay = retry_after_seconds(response)
        delay = DEFAULT_RETRY_AFTER if delay is None else delay
        if delay > self.left:
            return None
        self.left -= delay
        return delay


def request(call: Call[T], max_retry_wait: float) -> Plan[T]:
    """Send the call, waiting out 429 and 503 as their Retry-After says; its parsed answer."""
    budget = RetryBudget(max_retry_wait)
    while True:
        response = yield Send(call)
        if response.is_success:
            return call.parse(response)
        delay = budget.delay(response)
        if delay is None:
            raise ApiError.from_response(response)
        yield Sleep(delay)


def _left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()


@dataclass
class Position:
    """The id of the last event read from a job's stream: where a new connection resumes."""

    last_id: str | None = None


def event_stream(
    resource: str,
    handle: Callable[[Event], Plan[bool]],
    *,
    deadline: float | None,
    max_retry_wait: float,
    position: Position | None = None,
) -> Plan[bool]:
    """Read the events of `resource` (`jobs/ID`, `workflows/ID`), passing each to `handle` until it says stop (True), or until
    the deadline (False). A stream that breaks off is opened again with Last-Event-ID, so
    no event is missed or repeated; after FRUITLESS_CONNECTIONS in a row without an event,
    the last failure is raised (an ApiError if the API refused the stream)."""
    budget = RetryBudget(max_retry_wait)
    position = position or Position()
    fruitless = 0
    while _left(deadline) > 0:
        fruitful = False
        try:
            response = yield Open(calls.events(resource, position.last_id), min(STREAM_READ_SECONDS, _left(deadline)))
            if response.status_code != 200:
                delay = budget.delay(response)
                if delay is None:
                    raise ApiError.from_response(response)
                yield Sleep(delay)
                continue
            parser = EventParser(position.last_id)
            while (line := (yield ReadLine())) is not None:
                raw = parser.feed(line)
                if raw is not None:
                    fruitful = True
                    position.last_id = raw.id
                    data = json.loads(raw.data)
                    if (yield from handle(Event(data.get("type", raw.event), data, raw.id))):
                        yield Close()
                        return True
                if _left(deadline) <= 0:  # the server's keep-alive pings must not outlast it
                    break
            error: Exception = EventStreamError(f"the event stream of {resource} ended before it did")
        except httpx.TransportError as exc:
            error = exc
        fruitless = 0 if fruitful else fruitless + 1
        if _left(deadline) <= 0:
            break
        if fruitless >= FRUITLESS_CONNECTIONS:
            raise error
        if fruitless:
            yield Sleep(min(BACKOFF_FIRST * 2 ** (fruitless - 1), BACKOFF_MAX, max(_left(deadline), 0)))
    yield Close()
    return False


def events(job_id: str, max_retry_wait: float) -> Plan[None]:
    """Emit the job's events until it ends."""

    def handle(event: Event) -> Plan[bool]:
        yield Emit(event)
        return event.final

    yield from event_stream(f"jobs/{job_id}", handle, deadline=None, max_retry_wait=max_retry_wait)


def follow(start: Job | str, timeout: float | None, max_retry_wait: float) -> Plan[Job]:
    """Emit the job's state each time it changes, and return its final state, as the
    ledger has it. Changes come from the event stream; if the stream cannot be had
    (refused, or breaking off again and again), the job is polled as its Retry-After says.
    A TimeoutError if it has not ended within `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job = start if isinstance(start, Job) else (yield from request(calls.get(start), max_retry_wait))
    yield Emit(job)
    streaming = True
    position = Position()  # kept across streams: a final event already seen is not read again

    def handle(event: Event) -> Plan[bool]:
        nonlocal job
        job = apply_event(job, event)
        yield Emit(job)
        return event.final

    while True:
        if streaming and not job.finished:
            try:
                yield from event_stream(
                    f"jobs/{job.id}", handle, deadline=deadline, max_retry_wait=max_retry_wait, position=position
                )
            except (ApiError, httpx.TransportError, EventStreamError):
                streaming = False  # polling takes over
        job, pause = yield from request(calls.look(job.id), max_retry_wait)
        yield Emit(job)
        if job.finished:
            return job
        if _left(deadline) <= 0:
            raise TimeoutError(f"job {job.id} is still {job.status} after {timeout:g}s")
        if not streaming:
            yield Sleep(min(max(pause or POLL_MIN, POLL_MIN), POLL_MAX, _left(deadline)))


def wait_workflow(start: Workflow | str, timeout: float | None, max_retry_wait: float) -> Plan[Workflow]:
    """The workflow once it has ended, as the ledger has it: its event stream says when
    (polled as `follow` polls only if the stream cannot be had). A TimeoutError if it has
    not ended within `timeout` seconds."""
    workflow_id = start.id if isinstance(start, Workflow) else start
    deadline = None if timeout is None else time.monotonic() + timeout
    workflow = yield from request(calls.get_workflow(workflow_id), max_retry_wait)
    streaming = True
    position = Position()  # kept across streams: an ending already seen (a retried one's) is not read again

    def ended(event: Event) -> Plan[bool]:
        yield from ()
        return event.final

    while not workflow.finished:
        if _left(deadline) <= 0:
            raise TimeoutError(f"workflow {workflow_id} is still {workflow.status} after {timeout:g}s")
        if streaming:
            try:
                yield from event_stream(
                    f"workflows/{workflow_id}",
                    ended,
                    deadline=deadline,
                    max_retry_wait=max_retry_wait,
                    position=position,
                )
            except (ApiError, httpx.TransportError, EventStreamError):
                streaming = False  # polling takes over
        else:
            yield Sleep(min(POLL_MAX, max(_left(deadline), 0)))
        workflow = yield from request(calls.get_workflow(workflow_id), max_retry_wait)
    return workflow
