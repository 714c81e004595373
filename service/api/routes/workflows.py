"""Workflows: `POST /v1/workflows`, reading one, cancelling it and streaming its steps' changes.

A workflow is judged whole before anything is recorded: step names, `after` targets,
cycles (named), REFs (only into steps upstream of their own), kinds (the known ones
named, as `POST /v1/jobs` does) and each step's input against its kind's schema, but
for the fields a REF fills in (and a `for_each` step's `item`), known only when the step
starts; a step whose resolved input fails its kind fails as `invalid_input` when it runs.
The first steps' jobs are admitted to the tenant's queued-jobs quota as a batch's are;
the later steps' jobs, created by workers as steps end, count when the quota is next
counted from the ledger. The steps' progress is decided in the ledger (service/ledger/workflows.py).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse

from service import ledger
from service.api import idempotency
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_body, json_request, problem
from service.api.problems import Problem
from service.api.routes import jobs as job_routes
from service.api.routes.destinations import check_destinations
from service.api.routes.kinds import check_input, find_kind
from service.api.routes.stream import EventRelay, last_event_id
from service.api.submissions import over_quota
from service.api.validation import (
    StrictModel,
    field_path,
    invalid,
    parse_callback_url,
    parse_json,
    parse_metadata,
    read_json_body,
)
from service.ledger import workflow_rows, workflows
from service.ledger.views import _time
from service.ledger.workflow_refs import FROM, cycle, malformed, refs, upstream

MAX_BODY_BYTES = 1024 * 1024
MAX_STEPS = 100
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class StepBody(StrictModel):
    kind: str = Field(min_length=1, max_length=100)
    input: dict[str, Any]
    after: list[str] = Field(default_factory=list, max_length=MAX_STEPS)
    for_each: dict[str, Any] | None = None


class WorkflowBody(StrictModel):
    steps: dict[str, StepBody] = Field(min_length=1, max_length=MAX_STEPS)
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None


def _check_graph(steps: dict[str, StepBody]) -> None:
    """422 for a bad name, an unknown step in an `after`, a cycle, or a REF that is
    malformed or names a step not upstream of its own."""
    for name, step in steps.items():
        if not STEP_NAME.match(name):
            raise invalid(f"steps.{name[:64]}", "a step's name is a letter or _, then up to 63 letters, digits, _ or -")
        for parent in step.after:
            if parent not in steps:
                raise Problem(
                    422,
                    f"steps.{name}.after: unknown step {parent!r}",
                    type="unknown-step",
                    field=f"steps.{name}.after",
                )
    after = {name: step.after for name, step in steps.items()}
    if found := cycle(after):
        raise Problem(422, f"steps: a cycle: {' → '.join(found)}", type="workflow-cycle", field="steps", cycle=found)
    for name, step in steps.items():
        if step.for_each is not None and not _whole_ref(step.for_each):
            raise invalid(f"steps.{name}.for_each", 'must be a REF: {"$from": STEP, "pointer": …}')
        above = upstream(after, name)
        for path, ref in refs({"input": step.input, "for_each": step.for_each}):
            where = f"steps.{name}.{field_path(path)}"
            if error := malformed(ref):
                raise invalid(where, error)
            if ref[FROM] not in above:
                raise Problem(
                    422,
                    f"{where}: {ref[FROM]!r} is not a step upstream of {name!r} (in its after, directly or not)",
                    type="ref-not-upstream",
                    field=where,
                )


def _whole_ref(value: dict) -> bool:
    return next(iter(refs(value)), ((), None))[0] == ()


def _skipper(step: StepBody):
    """The input fields known only when the step starts: REFs' and `item` for for_each."""
    unknown = [field_path(("input", *path)) for path, _ in refs(step.input)]
    if step.for_each is not None:
        unknown.append("input.item")

    def skip(field: str) -> bool:
        return any(field == prefix or field.startswith((prefix + ".", prefix + "[")) for prefix in unknown)

    return skip


async def _judge(request: Request, body: WorkflowBody) -> list[workflows.NewStep]:
    _check_graph(body.steps)
    judged = []
    for name, step in body.steps.items():
        try:
            kind = await find_kind(request, step.kind)
            check_input(kind, step.input, _skipper(step))
        except Problem as problem:
            raise _within(problem, f"steps.{name}.") from None
        judged.append(workflows.NewStep(name, kind.spec, step.input, step.after, step.for_each))
    return judged


def _within(problem: Problem, prefix: str) -> Problem:
    """A step's 422 as the workflow's: its fields prefixed with the step's place."""
    extensions = dict(problem.extensions)
    if "field" in extensions:
        extensions["field"] = prefix + extensions["field"]
    if "errors" in extensions:
        extensions["errors"] = [{**error, "field": prefix + error["field"]} for error in extensions["errors"]]
    return Problem(problem.status, prefix + problem.detail, type=problem.type, **extensions)


def workflow_view(workflow, steps) -> dict:
    return {
        "id": str(workflow["id"]),
        "status": workflow["status"],
        "steps": {
            step["name"]: {
                "status": step["status"],
                "jobs": [str(job_id) for job_id in step["job_ids"]],
                **({"error": step["error"]} if step["error"] else {}),
            }
            for step in steps
        },
        "metadata": workflow["metadata"],
        "created_at": _time(workflow["created_at"]),
        "finished_at": _time(workflow["finished_at"]),
    }


def location(workflow_id: object) -> str:
    return f"/v1/workflows/{workflow_id}"


async def create_workflow(request: Request) -> JSONResponse:
    """With an Idempotency-Key, as `POST /v1/jobs/batch`: a replay of the same request gets
    the first answer again (`Idempotent-Replayed`) and creates nothing."""
    tenant = await authenticate(request)
    state = request.app.state
    body = parse_json(WorkflowBody, await read_json_body(request, MAX_BODY_BYTES))
    steps = await _judge(request, body)
    metadata = parse_metadata(body.metadata)
    callback_url = parse_callback_url(body.callback_url)
    if callback_url:
        await check_destinations([("callback_url", callback_url)], state.settings.callback_allowed_hosts)
    roots = sum(1 for step in steps if not step.after)  # the jobs it queues now
    quota = state.settings.tenant_max_queued_jobs
    if await state.backlog.admit_batch(tenant.id, quota, roots) is None:
        raise over_quota(quota)
    advances: list[workflows.Advance] = []

    async def record(conn) -> idempotency.Answer:
        workflow, advance = await workflows.create(
            conn,
            tenant.id,
            steps,
            metadata=metadata,
            callback_url=callback_url,
            kinds=state.kinds,
            max_fanout=state.settings.workflow_max_fanout,
        )
        _, rows = await workflow_rows.get(conn, tenant.id, workflow["id"])
        advances.append(advance)
        return 202, workflow_view(workflow, rows), {"Location": location(workflow["id"])}

    fingerprint = idempotency.fingerprint("workflows", body.model_dump(mode="json"))
    try:
        response = await idempotency.answer_once(
            request, tenant.id, fingerprint, record, track=(f"tenant:{tenant.id}",)
        )
    finally:
        if not advances:  # refused, failed, or a replay: nothing was queued
            await state.backlog.withdraw(tenant.id, roots)
    for advance in advances:
        await advance.publish(state.redis)
    return response


async def list_workflows(request: Request) -> JSONResponse:
    """`{items: [Workflow…], next_cursor}`, newest first; `status`, `limit` and `cursor` as `GET /v1/jobs` takes them."""
    tenant = await authenticate(request)
    status = job_routes.status_param(request)
    limit, after = job_routes.page_params(request)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
        found = await workflow_rows.page(conn, tenant.id, status=status, limit=limit + 1, after=after)
    items = [workflow_view(workflow, steps) for workflow, steps in found[:limit]]
    next_cursor = ledger.encode_cursor(found[limit - 1][0]) if len(found) > limit else None
    return JSONResponse({"items": items, "next_cursor": next_cursor})


def _path_id(request: Request) -> uuid.UUID:
    workflow_id = ledger.parse_job_id(request.path_params["workflow_id"])
    if workflow_id is None:
        raise _not_found()
    return workflow_id


def _not_found() -> Problem:
    return Problem(404, "no such workflow", type="not-found")


async def _read(state, tenant_id: uuid.UUID, workflow_id: uuid.UUID):
    async with state.db.read(follow=(f"tenant:{tenant_id}",)) as conn:
        found = await workflow_rows.get(conn, tenant_id, workflow_id)
    if found is None:
        raise _not_found()
    return found


async def get_workflow(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    workflow, steps = await _read(request.app.state, tenant.id, _path_id(request))
    return JSONResponse(workflow_view(workflow, steps))


async def cancel_workflow(request: Request) -> JSONResponse:
    """No step starts any more, waiting ones end cancelled, and its unfinished jobs are
    cancelled as `POST /v1/jobs/cancel` cancels jobs (each ending its step)."""
    tenant = await authenticate(request)
    state, workflow_id = request.app.state, _path_id(request)
    async with state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
        workflow, unfinished, advance = await workflows.request_cancel(conn, tenant.id, workflow_id, state.kinds)
    if workflow is None:
        raise _not_found()
    await advance.publish(state.redis)
    if unfinished:
        await job_routes.cancel_many(state, tenant.id, unfinished)
    workflow, steps = await _read(state, tenant.id, workflow_id)
    return JSONResponse(workflow_view(workflow, steps), status_code=202)


class WorkflowRelay(EventRelay):
    """A job's event relay, over the workflow's stream (its steps' changes and its status)."""

    async def _ledger_row(self):
        async with self.state.db.read(follow=(f"tenant:{self.tenant_id}",)) as conn:
            found = await workflow_rows.get(conn, self.tenant_id, self.job_id)
        return None if found is None else found[0]

    def _snapshot(self, row) -> ServerSentEvent:
        data = {"type": "status", "workflow_id": str(row["id"]), "status": row["status"]}
        return ServerSentEvent(data=json.dumps(data), event="status")


async def workflow_events(request: Request) -> EventSourceResponse:
    tenant = await authenticate(request)
    workflow_id = _path_id(request)
    last_id = last_event_id(request)
    workflow, _ = await _read(request.app.state, tenant.id, workflow_id)
    relay = WorkflowRelay(request.app.state, tenant.id, workflow, last_id)
    ping = request.app.state.settings.event_stream_keepalive_seconds
    return EventSourceResponse(
        relay.events(), ping=ping, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


WORKFLOW_ID = {"name": "workflow_id", "in": "path", "required": True, "schema": {"type": "string"}}
REF = {
    "type": "object",
    "required": [FROM],
    "properties": {FROM: {"type": "string"}, "pointer": {"type": "string"}},
    "additionalProperties": False,
}
_RESPONSES = {"404": problem("Unknown workflow, or another tenant's"), **COMMON_ERRORS}
OPENAPI_PATHS = {
    "/v1/workflows": {
        "post": {
            "summary": "Submit steps of jobs, each starting when the steps it comes after have succeeded",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["steps"],
                    "additionalProperties": False,
                    "properties": {
                        "steps": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["kind", "input"],
                                "additionalProperties": False,
                                "properties": {
                                    "kind": {"type": "string"},
                                    "input": {"type": "object", "description": "any value may be a REF"},
                                    "after": {"type": "array", "items": {"type": "string"}},
                                    "for_each": REF,
                                },
                            },
                        },
                        "callback_url": {"type": "string", "format": "uri"},
                        "metadata": {"type": "object"},
                    },
                }
            ),
            "responses": {
                "202": json_body("Workflow", "Accepted: the workflow and its first steps' jobs are recorded"),
                "409": problem("The same Idempotency-Key is still being accepted"),
                "413": problem("Body too large"),
                "415": problem("Not application/json"),
                "422": problem(
                    "A cycle, an unknown step or kind, a REF to a step not upstream, invalid input, "
                    "or Idempotency-Key reused with another request"
                ),
                **COMMON_ERRORS,
            },
        },
        "get": {
            "summary": "Your workflows, newest first, a page at a time (as GET /v1/jobs pages)",
            "parameters": job_routes.PAGE_PARAMETERS,
            "responses": {
                "200": json_body("WorkflowList", "A page of workflows"),
                "400": problem("A bad status, limit or cursor"),
                **COMMON_ERRORS,
            },
        },
    },
    "/v1/workflows/{workflow_id}": {
        "get": {
            "summary": "A workflow's status and its steps' jobs",
            "parameters": [WORKFLOW_ID],
            "responses": {"200": json_body("Workflow", "The workflow"), **_RESPONSES},
        }
    },
    "/v1/workflows/{workflow_id}/cancel": {
        "post": {
            "summary": "Cancel a workflow: its waiting and running steps end cancelled",
            "parameters": [WORKFLOW_ID],
            "responses": {"202": json_body("Workflow", "Cancelling"), **_RESPONSES},
        }
    },
    "/v1/workflows/{workflow_id}/events": {
        "get": {
            "summary": "The workflow's steps' changes and its status as Server-Sent Events, ending with it",
            "parameters": [WORKFLOW_ID],
            "responses": {
                "200": {
                    "description": "An event stream (events `step` and `status`; JSON data)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_RESPONSES,
            },
        }
    },
}
