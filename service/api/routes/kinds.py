"""Jobs of the kinds declared in Python: `GET /v1/kinds`, `POST /v1/jobs` and `POST /v1/jobs/batch`.

The API never imports a kind's code: it judges a job by what the workers published of
its kind (`service.api.kind_catalog`): the kind must be known, its input must satisfy the
kind's JSON Schema (each failing field named), and a kind created through another route
(a document comes with its upload) points there. Everything else is judged as for the
other routes: `callback_url` (shape, then SSRF), `metadata` (size), `run_at` (an offset).
A batch is judged whole before anything is recorded: one bad body names its index.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jsonschema import ValidationError
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import queue
from service.api import idempotency
from service.api.auth import authenticate
from service.api.kind_catalog import KindCatalog, PublishedKind
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_body, json_request, problem
from service.api.problems import Problem
from service.api.routes.destinations import check_destinations
from service.api.submissions import JobSpec, submit, submit_many
from service.api.validation import (
    MAX_REPORTED_ERRORS,
    Moment,
    StrictModel,
    field_path,
    invalid,
    parse_callback_url,
    parse_json,
    parse_metadata,
    read_json_body,
)

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_TRIES = 1000  # as conveyor_enqueue (migrations/versions/0009)
MAX_RUN_AHEAD = timedelta(days=366)
MAX_KEY_LENGTH = 200
MAX_MESSAGE_LENGTH = 200
BODY_INDEX = re.compile(r"jobs\[(\d+)\]")


class JobBody(StrictModel):
    kind: str = Field(min_length=1, max_length=100)
    input: dict[str, Any]
    priority: Literal["low", "normal", "high"] = "normal"
    run_at: Moment | None = None
    max_tries: int | None = Field(default=None, ge=1, le=MAX_TRIES)
    timeout: float | None = Field(default=None, gt=0)
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)


class BatchBody(StrictModel):
    jobs: list[JobBody] = Field(min_length=1, max_length=MAX_BATCH)


def catalog(request: Request) -> KindCatalog:
    return request.app.state.kind_catalog


async def list_kinds(request: Request) -> JSONResponse:
    await authenticate(request)
    kinds = await catalog(request).all()
    return JSONResponse({"items": [kind_view(kind) for kind in kinds.values()]})


def kind_view(kind: PublishedKind) -> dict:
    described = kind.description
    return {
        "kind": described.name,
        "description": described.description,
        "input_schema": described.input_schema,
        "stages": list(described.stages),
        "tries": described.tries,
        "timeout": described.timeout,
        "queue": described.queue,
        "concurrency": described.concurrency,
        **({"endpoint": described.endpoint} if described.endpoint else {}),
    }


def unknown_kind(name: str, published: Mapping[str, PublishedKind]) -> Problem:
    """The 422 for a kind nobody published, naming the kinds `POST /v1/jobs` takes; when the
    workers run only the built-in kinds (each created through a route of its own), it says
    how to add one instead of suggesting that no worker has started."""
    known = sorted(kind for kind, published_kind in published.items() if not published_kind.description.endpoint)
    if known:
        listing = ", ".join(known)
    elif published:
        listing = (
            "none of your own yet: declare them with conveyor.job and load them with CONVEYOR_KINDS "
            "(the built-in kinds have routes of their own: GET /v1/kinds)"
        )
    else:
        listing = "none (no worker has started)"
    return Problem(
        422,
        f"kind: unknown kind {name!r}; the known kinds are {listing}",
        type="unknown-kind",
        field="kind",
        known=known,
    )


async def find_kind(request: Request, name: str) -> PublishedKind:
    """The published kind `name` that `POST /v1/jobs` creates jobs of, or a 422 naming the known ones."""
    kinds = catalog(request)
    kind = await kinds.get(name)
    if kind is None:
        raise unknown_kind(name, await kinds.all())
    endpoint = kind.description.endpoint
    if endpoint:
        raise Problem(
            422,
            f"kind: {name} jobs are created with POST {endpoint}",
            type="kind-endpoint",
            field="kind",
            endpoint=endpoint,
        )
    return kind


def check_input(kind: PublishedKind, value: dict[str, Any], skip: Callable[[str], bool] = lambda field: False) -> None:
    """A 422 naming every field of `value` that fails the kind's input schema, but those
    `skip` passes over (a workflow step's fields whose value is known only when it starts)."""
    reported: dict[str, str] = {}
    for error in kind.validator.iter_errors(value):
        for field, message in _failures(error):
            if not skip(field):
                reported.setdefault(field, message)
    if reported:
        errors = [{"field": field, "message": message} for field, message in reported.items()][:MAX_REPORTED_ERRORS]
        raise Problem(
            422,
            "; ".join(f"{error['field']}: {error['message']}" for error in errors),
            type="invalid-input",
            field=errors[0]["field"],
            errors=errors,
        )


def _failures(error: ValidationError) -> list[tuple[str, str]]:
    """The fields one schema error is about, each with what is wrong: a missing required
    property is named itself, not the object that lacks it."""
    where = ("input", *error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [(field_path((*where, name)), "is required") for name in missing]
    message = error.message if len(error.message) <= MAX_MESSAGE_LENGTH else error.message[:MAX_MESSAGE_LENGTH] + "…"
    return [(field_path(where), message)]


async def judge(request: Request, body: JobBody, now: datetime) -> JobSpec:
    """What one job body asks for, judged; a 422 naming the field that is wrong. The
    callback's destination is checked by the caller (all of a batch's at once)."""
    kind = await find_kind(request, body.kind)
    check_input(kind, body.input)
    if body.timeout is not None and body.timeout > kind.description.timeout:
        raise invalid("timeout", f"at most the kind's own, {kind.description.timeout:g} seconds")
    run_at = body.run_at
    if run_at is not None and run_at - now > MAX_RUN_AHEAD:
        raise invalid("run_at", f"is more than {MAX_RUN_AHEAD.days} days ahead")
    metadata = parse_metadata(body.metadata)
    return JobSpec(
        fingerprint=idempotency.fingerprint("jobs", body.model_dump(mode="json")),
        payload=body.input,
        metadata=metadata,
        callback_url=parse_callback_url(body.callback_url),
        run_at=run_at if run_at is not None and run_at > now else None,
        priority=queue.PRIORITIES[body.priority],
        kind=kind.spec,
        max_tries=body.max_tries,
        timeout=body.timeout,
        concurrency_key=body.concurrency_key,
    )


async def create_job(request: Request) -> Response:
    tenant = await authenticate(request)
    settings = request.app.state.settings

    async def read(job_id: uuid.UUID) -> JobSpec:
        body = parse_json(JobBody, await read_json_body(request, MAX_BODY_BYTES))
        spec = await judge(request, body, datetime.now(UTC))
        if spec.callback_url:
            await check_destinations([("callback_url", spec.callback_url)], settings.callback_allowed_hosts)
        return spec

    return await submit(request, tenant, read)


async def create_jobs(request: Request) -> Response:
    """All or nothing: every body is judged before any job is recorded."""
    tenant = await authenticate(request)
    settings = request.app.state.settings
    raw = await read_json_body(request, MAX_BATCH_BYTES)
    try:
        batch = parse_json(BatchBody, raw)
    except Problem as problem:
        named = BODY_INDEX.match(str(problem.extensions.get("field", "")))
        if named is None:
            raise
        raise Problem(
            problem.status, problem.detail, type=problem.type, index=int(named[1]), **problem.extensions
        ) from None
    now = datetime.now(UTC)
    specs = []
    for index, body in enumerate(batch.jobs):
        try:
            specs.append(await judge(request, body, now))
        except Problem as problem:
            raise at_index(problem, index) from None
    callbacks = [(f"jobs[{index}].callback_url", spec.callback_url) for index, spec in enumerate(specs)]
    await check_destinations([(field, url) for field, url in callbacks if url], settings.callback_allowed_hosts)
    fingerprint = idempotency.fingerprint("jobs/batch", [spec.fingerprint for spec in specs])
    return await submit_many(request, tenant, specs, fingerprint)


def at_index(problem: Problem, index: int) -> Problem:
    """A body's 422 as the batch's: its fields prefixed with `jobs[index].`, and the index."""
    prefix = f"jobs[{index}]."
    extensions = dict(problem.extensions)
    if "field" in extensions:
        extensions["field"] = prefix + extensions["field"]
    if "errors" in extensions:
        extensions["errors"] = [{**error, "field": prefix + error["field"]} for error in extensions["errors"]]
    return Problem(problem.status, prefix + problem.detail, type=problem.type, index=index, **extensions)


JOB_BODY = {
    "type": "object",
    "required": ["kind", "input"],
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "description": "a kind `GET /v1/kinds` lists"},
        "input": {"type": "object", "description": "valid against the kind's `input_schema`"},
        "priority": {"type": "string", "enum": list(queue.PRIORITIES), "default": "normal"},
        "run_at": {"type": "string", "format": "date-time", "description": "not before this time (with a UTC offset)"},
        "max_tries": {"type": "integer", "minimum": 1, "maximum": MAX_TRIES},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds, at most the kind's"},
        "callback_url": {"type": "string", "format": "uri"},
        "metadata": {"type": "object"},
        "concurrency_key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    },
}
_CREATE_ERRORS = {
    "409": problem("The same Idempotency-Key is still being accepted"),
    "413": problem("Body too large"),
    "415": problem("Not application/json"),
    "422": problem(
        "Unknown kind (the known ones named), input failing the kind's schema (each field named), "
        "a kind created through another route, other invalid fields, or Idempotency-Key reused with another request"
    ),
    **COMMON_ERRORS,
}
OPENAPI_PATHS = {
    "/v1/kinds": {
        "get": {
            "summary": "The kinds of job the workers run, with their input's JSON Schema",
            "responses": {
                "200": {
                    "description": "Every published kind",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items"],
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["kind", "input_schema", "tries", "timeout", "queue"],
                                            "properties": {
                                                "kind": {"type": "string"},
                                                "description": {"type": "string"},
                                                "input_schema": {"type": "object"},
                                                "stages": {"type": "array", "items": {"type": "string"}},
                                                "tries": {"type": "integer"},
                                                "timeout": {"type": "number"},
                                                "queue": {"type": "string"},
                                                "concurrency": {"type": ["integer", "null"]},
                                                "endpoint": {"type": "string"},
                                            },
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                **COMMON_ERRORS,
            },
        }
    },
    "/v1/jobs/batch": {
        "post": {
            "summary": f"Submit up to {MAX_BATCH} jobs at once, all or nothing",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["jobs"],
                    "additionalProperties": False,
                    "properties": {"jobs": {"type": "array", "items": JOB_BODY, "minItems": 1, "maxItems": MAX_BATCH}},
                }
            ),
            "responses": {
                "202": json_body("JobItems", "Accepted: every job is recorded, in the order sent"),
                **_CREATE_ERRORS,
            },
        }
    },
    "/v1/jobs": {
        "post": {
            "summary": "Submit a job of a kind declared in Python",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(JOB_BODY),
            "responses": {"202": json_body("Job", "Accepted: the job is recorded"), **_CREATE_ERRORS},
        }
    },
}
