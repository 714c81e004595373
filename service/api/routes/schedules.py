"""Schedules of the users' own: `/v1/schedules`, a job of a kind on a `cron` or `every` seconds.

A schedule is judged as `POST /v1/jobs` judges a job (the kind must be published and its
input must satisfy the kind's schema: service/api/routes/kinds.py), and its cadence as
service/ledger/schedule_times.py reads it: exactly one of `cron` (5 fields) and `every`, and an
IANA `timezone`; each failure is a 422 naming the field. `PATCH` takes any field; giving
`cron` clears `every` and the other way round. Changing the cadence, or resuming, starts
the ticks afresh from now (the ticks a paused schedule missed are not made up). Every
answer carries `next_runs`, the next three ticks in the schedule's zone (none while paused).

`ADMIN_KEY` acts here as the system tenant, whose are the built-in schedules (`builtin:
true`, pipelines/schedule.py): only the admin key changes one of those, and only its
cadence, `overlap` and `paused`; none is deleted (409: pausing is the way).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import ledger
from service.api import idempotency
from service.api.auth import authenticate, holds_admin_key
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, json_answer, json_request, problem
from service.api.problems import Problem
from service.api.routes.kinds import check_input, find_kind
from service.api.validation import StrictModel, invalid, parse_json, read_json_body
from service.ledger import schedule_times, schedules
from service.ledger.schedule_times import MAX_EVERY, Cadence, InvalidCadence

MAX_BODY_BYTES = 256 * 1024
NEXT_RUNS = 3
CADENCE_FIELDS = ("cron", "every", "timezone")
FIXED_IN_BUILTINS = ("name", "kind", "input")  # a built-in schedule runs its own job
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
KindName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Cron = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Zone = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Every = Annotated[int, Field(ge=1, le=MAX_EVERY)]
Overlap = Literal["skip", "allow"]


class ScheduleIn(StrictModel):
    name: Name
    kind: KindName
    input: dict[str, Any]
    cron: Cron | None = None
    every: Every | None = None
    timezone: Zone = "UTC"
    overlap: Overlap = "skip"
    paused: bool = False


class SchedulePatch(StrictModel):
    """Any field of `ScheduleIn`; only `cron` and `every` may be null (cleared)."""

    name: Name | None = None
    kind: KindName | None = None
    input: dict[str, Any] | None = None
    cron: Cron | None = None
    every: Every | None = None
    timezone: Zone | None = None
    overlap: Overlap | None = None
    paused: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given, with `cron` and `every` clearing each other."""
        given = self.model_dump(include=self.model_fields_set)
        for name, value in given.items():
            if value is None and name not in ("cron", "every"):
                raise invalid(name, "may not be null")
        for name, other in (("cron", "every"), ("every", "cron")):
            if given.get(name) is not None and other not in given:
                given[other] = None
        return given


async def judge(request: Request, fields: dict[str, Any], *, job: bool = True) -> Cadence:
    """The schedule's cadence, once it is found valid, and with `job` its kind and input
    (left alone by a change that touches neither: a schedule whose kind no worker publishes
    any more can still be paused); a 422 naming the field."""
    cadence = Cadence(cron=fields["cron"], every=fields["every"], timezone=fields["timezone"])
    try:
        schedule_times.check(cadence)
    except InvalidCadence as exc:
        raise invalid(exc.field, exc.message) from None
    if job:
        check_input(await find_kind(request, fields["kind"]), fields["input"])
    return cadence


def view(row) -> dict:
    """A schedule as the API shows it."""
    paused = row["paused"]
    zone = schedule_times.zone(row["timezone"])
    upcoming = [] if paused else schedule_times.upcoming(schedules.cadence(row), row["next_run_at"], NEXT_RUNS)
    skipped = row["skipped_at"] is not None and (row["last_run_at"] is None or row["skipped_at"] > row["last_run_at"])
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "kind": row["kind"],
        "input": row["input"],
        "cron": row["cron"],
        "every": row["every"],
        "timezone": row["timezone"],
        "overlap": row["overlap"],
        "paused": paused,
        "builtin": row["builtin"] is not None,
        "next_runs": [moment.astimezone(zone).isoformat() for moment in upcoming],
        "last_run_at": _iso(row["last_run_at"]),
        "last_job_id": str(row["last_job_id"]) if row["last_job_id"] else None,
        "last_status": "skipped" if skipped else row["last_status"],
        "skipped_at": _iso(row["skipped_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _schedule_id(request: Request) -> uuid.UUID:
    schedule_id = ledger.parse_job_id(request.path_params["schedule_id"])
    if schedule_id is None:
        raise _not_found()
    return schedule_id


def _not_found() -> Problem:
    return Problem(404, "no such schedule", type="not-found")


def _check_builtin_change(request: Request, current, changes: dict[str, Any]) -> None:
    """A built-in schedule is changed with the admin key (403), in its cadence, `overlap`
    and `paused` only (422 naming the field)."""
    if current["builtin"] is None:
        return
    if not holds_admin_key(request):
        raise Problem(403, "a built-in schedule is changed with the admin key", type="builtin-schedule")
    for name in FIXED_IN_BUILTINS:
        if name in changes and changes[name] != current[name]:
            raise invalid(name, "is fixed in a built-in schedule (only its cadence, overlap and paused change)")


async def create_schedule(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)
    body = parse_json(ScheduleIn, await read_json_body(request, MAX_BODY_BYTES))
    fields = body.model_dump()
    cadence = await judge(request, fields)

    async def record(conn) -> idempotency.Answer:
        row = await schedules.create(conn, tenant.id, fields, schedule_times.first(cadence, datetime.now(UTC)))
        return 201, view(row), {"Location": f"/v1/schedules/{row['id']}"}

    return await idempotency.answer_once(
        request,
        tenant.id,
        idempotency.fingerprint("schedules", body.model_dump(mode="json")),
        record,
        track=(f"tenant:{tenant.id}",),
    )


async def list_schedules(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
        rows = await schedules.list_for(conn, tenant.id)
    return JSONResponse({"items": [view(row) for row in rows]})


async def get_schedule(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)
    schedule_id = _schedule_id(request)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
        row = await schedules.get(conn, tenant.id, schedule_id)
    if row is None:
        raise _not_found()
    return JSONResponse(view(row))


async def update_schedule(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)
    schedule_id = _schedule_id(request)
    changes = parse_json(SchedulePatch, await read_json_body(request, MAX_BODY_BYTES)).changes()
    async with request.app.state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
        current = await schedules.get(conn, tenant.id, schedule_id, lock=True)
        if current is None:
            raise _not_found()
        _check_builtin_change(request, current, changes)
        fields = {name: current[name] for name in schedules.FIELDS} | changes
        judged = current["builtin"] is None and ("kind" in changes or "input" in changes)
        cadence = await judge(request, fields, job=judged)
        restarts = any(fields[name] != current[name] for name in CADENCE_FIELDS) or (
            current["paused"] and not fields["paused"]
        )
        next_run_at = schedule_times.first(cadence, datetime.now(UTC)) if restarts else None
        row = await schedules.update(conn, tenant.id, schedule_id, fields, next_run_at)
    assert row is not None  # locked above
    return JSONResponse(view(row))


async def delete_schedule(request: Request) -> Response:
    tenant = await authenticate(request, admin=True)
    schedule_id = _schedule_id(request)
    async with request.app.state.db.transaction(track=(f"tenant:{tenant.id}",)) as conn:
        current = await schedules.get(conn, tenant.id, schedule_id, lock=True)
        if current is None:
            raise _not_found()
        if current["builtin"] is not None:
            raise Problem(
                409,
                f"{current['name']} is a built-in schedule: it cannot be deleted; pause it instead"
                ' (PATCH {"paused": true})',
                type="builtin-schedule",
            )
        await schedules.delete(conn, tenant.id, schedule_id)
    return Response(status_code=204)


_TIME = {"type": "string", "format": "date-time"}
_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "kind": {"type": "string", "description": "a kind `GET /v1/kinds` lists"},
    "input": {"type": "object", "description": "valid against the kind's `input_schema`"},
    "cron": {"type": ["string", "null"], "description": "5 fields: m h dom mon dow, at wall-clock time in `timezone`"},
    "every": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_EVERY, "description": "seconds"},
    "timezone": {"type": "string", "default": "UTC", "description": "an IANA name, e.g. America/New_York"},
    "overlap": {
        "type": "string",
        "enum": ["skip", "allow"],
        "default": "skip",
        "description": "skip: no job for a tick while the last tick's job is queued or running",
    },
    "paused": {"type": "boolean", "default": False},
}
_BUILTIN = {
    "type": "boolean",
    "description": "one of the worker's own schedules (reminders, cleanup, …), owned by the admin key",
}
_SCHEDULE = {
    "type": "object",
    "required": ["id", *_FIELDS, "builtin", "next_runs", "last_run_at", "last_job_id", "last_status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        **_FIELDS,
        "builtin": _BUILTIN,
        "next_runs": {
            "type": "array",
            "items": _TIME,
            "maxItems": NEXT_RUNS,
            "description": "the next ticks, in the schedule's zone (none while paused)",
        },
        "last_run_at": {**_TIME, "type": ["string", "null"], "description": "the tick of the last job"},
        "last_job_id": {"type": ["string", "null"], "format": "uuid"},
        "last_status": {
            "type": ["string", "null"],
            "description": "the last job's status, or `skipped` if the last tick was skipped",
        },
        "skipped_at": {**_TIME, "type": ["string", "null"]},
        "created_at": _TIME,
        "updated_at": _TIME,
    },
}
_ID = {"name": "schedule_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


_ERRORS = {
    "413": problem("Body too large"),
    "415": problem("Not application/json"),
    "422": problem("Invalid fields (each named): the cadence, the time zone, the kind or its input"),
    **COMMON_ERRORS,
}
OPENAPI_PATHS = {
    "/v1/schedules": {
        "post": {
            "summary": "Create a job of a kind on a cron or every so many seconds",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["name", "kind", "input"],
                    "additionalProperties": False,
                    "properties": _FIELDS,
                }
            ),
            "responses": {"201": json_answer(_SCHEDULE, "Created"), **_ERRORS},
        },
        "get": {
            "summary": "The tenant's schedules (with the admin key: the built-in ones)",
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": _SCHEDULE}},
                    },
                    "Every schedule, oldest first",
                ),
                **COMMON_ERRORS,
            },
        },
    },
    "/v1/schedules/{schedule_id}": {
        "get": {
            "summary": "A schedule, its next ticks and its last outcome",
            "parameters": [_ID],
            "responses": {
                "200": json_answer(_SCHEDULE, "The schedule"),
                "404": problem("Unknown schedule"),
                **COMMON_ERRORS,
            },
        },
        "patch": {
            "summary": "Change any field of a schedule; pause or resume it",
            "description": "A built-in schedule: with the admin key, its cadence, `overlap` and `paused` only.",
            "parameters": [_ID],
            "requestBody": json_request(
                {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": _FIELDS}
            ),
            "responses": {
                "200": json_answer(_SCHEDULE, "Changed"),
                "403": problem("A built-in schedule, without the admin key"),
                "404": problem("Unknown schedule"),
                **_ERRORS,
            },
        },
        "delete": {
            "summary": "Delete a schedule (its jobs stay)",
            "parameters": [_ID],
            "responses": {
                "204": {"description": "Deleted"},
                "404": problem("Unknown schedule"),
                "409": problem("A built-in schedule: pause it instead"),
                **COMMON_ERRORS,
            },
        },
    },
}
