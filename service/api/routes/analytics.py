"""Analytics: events in bulk, daily counts out, and exports of a tenant's data as CSV.

POST /v1/events answers as soon as the batch is committed: one COPY, one transaction,
no per-event work. Counting happens later in the aggregation job, so GET /v1/stats reads
a small table (`event_counts`) that is as fresh as the last hourly run.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from pydantic import Field, StringConstraints, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipelines.analytics.export import MAX_RANGE_DAYS, ExportInput, range_error
from pipelines.schedule import AGGREGATIONS
from service.api import idempotency
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, IDEMPOTENCY_KEY, TIME, json_body, json_request, problem
from service.api.problems import Problem
from service.api.submissions import JobSpec, kind_spec, submit
from service.api.validation import Moment, StrictModel, invalid, parse_json, read_json_body
from service.config import Settings, cadence_fields
from service.ledger import schedule_times, schedules
from service.ledger.schedule_times import Cadence

MAX_EVENTS = 1000
MAX_PROPERTIES_BYTES = 8 * 1024
MAX_BODY_BYTES = MAX_EVENTS * (MAX_PROPERTIES_BYTES + 1024)
MAX_FUTURE = timedelta(hours=24)
DEFAULT_RANGE_DAYS = 30
EVENT_COLUMNS = ("tenant_id", "type", "user_id", "properties", "ts")
DATASETS = ("events", "stats", "jobs")


class EventIn(StrictModel):
    type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    ts: Moment | None = None

    @field_validator("properties")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value).encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"larger than {MAX_PROPERTIES_BYTES} bytes as JSON")
        return value


class EventBatch(StrictModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


async def ingest_events(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    batch = parse_json(EventBatch, await read_json_body(request, MAX_BODY_BYTES))
    now = datetime.now(UTC)
    records = []
    for index, event in enumerate(batch.events):
        if event.ts is not None and event.ts > now + MAX_FUTURE:
            raise invalid(f"events[{index}].ts", "more than 24 hours in the future")
        records.append((tenant.id, event.type, event.user_id, event.properties, event.ts or now))

    async def ingest(conn) -> idempotency.Answer:
        await conn.copy_records_to_table("events", records=records, columns=EVENT_COLUMNS)
        return 202, {"accepted": len(records)}, {}

    return await idempotency.answer_once(
        request,
        tenant.id,
        idempotency.fingerprint("events", batch.model_dump(mode="json")),
        ingest,
        track=(f"tenant:{tenant.id}",),
    )


def _query_day(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        if len(raw) == 10:
            return date.fromisoformat(raw)
    except ValueError:
        pass
    raise Problem(400, f"{name} must be a date as YYYY-MM-DD", type="bad-request")


async def get_stats(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    last_day = _query_day(request, "to", datetime.now(UTC).date())
    # date.min + 29 days has no 30 days before it: the default range then starts at date.min
    default_span = min(DEFAULT_RANGE_DAYS - 1, (last_day - date.min).days)
    first_day = _query_day(request, "from", last_day - timedelta(days=default_span))
    event_type = request.query_params.get("type") or None
    if error := range_error(first_day, last_day):
        raise Problem(400, error, type="bad-request")
    async with request.app.state.db.read() as conn:
        rows = await conn.fetch(
            """
            SELECT day, type, count FROM event_counts
            WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 AND ($4::text IS NULL OR type = $4)
            ORDER BY day, type
            """,
            tenant.id,
            first_day,
            last_day,
            event_type,
        )
        next_at = await next_aggregation(conn, request.app.state.settings)
    return JSONResponse(
        {
            "from": first_day.isoformat(),
            "to": last_day.isoformat(),
            "items": [{"day": row["day"].isoformat(), "type": row["type"], "count": row["count"]} for row in rows],
            "next_aggregation_at": next_at,
        }
    )


async def next_aggregation(conn: asyncpg.Connection, settings: Settings) -> str | None:
    """When events are next counted: the earlier of the hourly and the daily aggregation's
    next tick as the ledger has them (an admin's change through `/v1/schedules` included; an
    overdue one runs as soon as a worker is free, so: now). One that no worker has recorded
    yet follows its `SCHEDULE_AGGREGATE_*` setting. None if both are off or paused."""
    now = datetime.now(UTC)
    recorded = await schedules.builtin_ticks(conn, [builtin.name for builtin in AGGREGATIONS])
    ticks = []
    for builtin in AGGREGATIONS:
        if builtin.name in recorded:
            tick = recorded[builtin.name]
        else:
            fields = cadence_fields(getattr(settings, builtin.setting))
            tick = schedule_times.first(Cadence(**fields), now) if fields else None
        if tick is not None:
            ticks.append(max(tick, now))
    return min(ticks).isoformat() if ticks else None


async def create_export(request: Request) -> Response:
    tenant = await authenticate(request)
    body = await read_json_body(request, 4096)

    async def read(job_id: uuid.UUID) -> JobSpec:
        payload = parse_json(ExportInput, body).model_dump(mode="json", by_alias=True)
        return JobSpec(fingerprint=idempotency.fingerprint("exports", payload), payload=payload)

    return await submit(request, tenant, read, kind=kind_spec(request, "export"))


_DAY = {"type": "string", "format": "date"}
_EVENT = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "minLength": 1, "maxLength": 100},
        "user_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "properties": {"type": "object", "description": f"at most {MAX_PROPERTIES_BYTES} bytes as JSON"},
        "ts": {"type": "string", "format": "date-time", "description": "with an offset; default: when received"},
    },
}
_JSON_ERRORS = {
    "413": problem("Body too large"),
    "415": problem("Not application/json"),
    "422": problem("Invalid fields; `field` names the first (e.g. events[3].ts), `errors` lists them"),
    **COMMON_ERRORS,
}
OPENAPI_PATHS = {
    "/v1/events": {
        "post": {
            "summary": f"Record a batch of 1 to {MAX_EVENTS} analytics events (once per Idempotency-Key)",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": _EVENT}},
                }
            ),
            "responses": {
                "202": {
                    "description": "Stored",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["accepted"],
                                "properties": {"accepted": {"type": "integer"}},
                            }
                        }
                    },
                },
                **_JSON_ERRORS,
            },
        }
    },
    "/v1/stats": {
        "get": {
            "summary": "Event counts per UTC day and type (as of the last hourly aggregation)",
            "parameters": [
                {"name": "from", "in": "query", "schema": _DAY, "description": "default: 29 days before `to`"},
                {"name": "to", "in": "query", "schema": _DAY, "description": "default: today (UTC); included"},
                {"name": "type", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": f"Counts; the range spans at most {MAX_RANGE_DAYS} days",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["from", "to", "items", "next_aggregation_at"],
                                "properties": {
                                    "from": _DAY,
                                    "to": _DAY,
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["day", "type", "count"],
                                            "properties": {
                                                "day": _DAY,
                                                "type": {"type": "string"},
                                                "count": {"type": "integer"},
                                            },
                                        },
                                    },
                                    "next_aggregation_at": {
                                        **TIME,
                                        "description": "when events are next counted (null: aggregation is off)",
                                    },
                                },
                            }
                        }
                    },
                },
                **COMMON_ERRORS,
            },
        }
    },
    "/v1/exports": {
        "post": {
            "summary": "Export events, daily counts or jobs over whole UTC days as CSV (a job of kind `export`)",
            "parameters": [IDEMPOTENCY_KEY],
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["dataset", "from", "to"],
                    "additionalProperties": False,
                    "properties": {
                        "dataset": {"type": "string", "enum": list(DATASETS)},
                        "from": _DAY,
                        "to": _DAY,
                    },
                }
            ),
            "responses": {
                "202": json_body("Job", "Accepted; the result holds `rows`, `bytes`, `key` and `name` of the CSV"),
                "409": problem("The same Idempotency-Key is still being accepted"),
                **_JSON_ERRORS,
            },
        }
    },
}
