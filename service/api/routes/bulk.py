"""`POST /v1/jobs/retry` and `POST /v1/jobs/cancel`: one action on every job a filter matches.

A filter may match a million jobs, so they are walked newest first in chunks of `CHUNK`,
each acted on in one transaction by the same code as a single job's retry or cancel
(service/api/routes/jobs.py), never all held at once. `matched` counts the jobs the filter
matched that the action applies to (retry: failed and cancelled; cancel: queued and
running), `changed` those it changed (a job that ended or moved on meanwhile is left
alone); `dry_run` only counts. Always within the caller's tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from service import ledger
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, json_request, problem
from service.api.routes.jobs import STATUSES, cancel_many, retry_many
from service.api.validation import Moment, StrictModel, invalid, parse_json, read_json_body

CHUNK = 500
MAX_BODY_BYTES = 16 * 1024


class BulkFilter(StrictModel):
    kind: str | None = Field(default=None, min_length=1, max_length=100)
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    error_type: str | None = Field(default=None, min_length=1, max_length=100)
    created_after: Moment | None = None
    created_before: Moment | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class BulkAction:
    name: str
    statuses: tuple[str, ...]  # the statuses it applies to
    apply: Callable[[object, uuid.UUID, Sequence[uuid.UUID]], Awaitable[int]]


RETRY = BulkAction("retry", ("failed", "cancelled"), retry_many)
CANCEL = BulkAction("cancel", ("queued", "running"), cancel_many)


async def bulk(request: Request, action: BulkAction) -> JSONResponse:
    tenant = await authenticate(request)
    state = request.app.state
    body = parse_json(BulkFilter, await read_json_body(request, MAX_BODY_BYTES))
    if body.status is not None and body.status not in action.statuses:
        raise invalid("status", f"{action.name} applies only to {' and '.join(action.statuses)} jobs")
    where = ledger.JobFilter(
        statuses=(body.status,) if body.status else action.statuses,
        kind=body.kind,
        error_type=body.error_type,
        created_after=body.created_after,
        created_before=body.created_before,
    )
    if body.dry_run:
        async with state.db.read(follow=(f"tenant:{tenant.id}",)) as conn:
            return JSONResponse({"matched": await ledger.count_jobs(conn, tenant.id, where), "changed": 0})
    matched, changed = await act_on(state, tenant.id, action, where)
    return JSONResponse({"matched": matched, "changed": changed})


async def act_on(state, tenant_id: uuid.UUID, action: BulkAction, where: ledger.JobFilter) -> tuple[int, int]:
    """`action` on every job of the tenant `where` matches, chunk by chunk: (matched, changed)."""
    matched = changed = 0
    after = None
    while True:
        async with state.db.write() as conn:  # the primary: the chunk is acted on at once
            found = await ledger.find_jobs(conn, tenant_id, where, limit=CHUNK, after=after)
        if not found:
            return matched, changed
        matched += len(found)
        changed += await action.apply(state, tenant_id, [row["id"] for row in found])
        after = (found[-1]["created_at"], found[-1]["id"])


async def retry_jobs(request: Request) -> JSONResponse:
    return await bulk(request, RETRY)


async def cancel_jobs(request: Request) -> JSONResponse:
    return await bulk(request, CANCEL)


FILTER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "error_type": {"type": "string", "description": "the failed job's `error.type`"},
        "created_after": {"type": "string", "format": "date-time"},
        "created_before": {"type": "string", "format": "date-time"},
        "dry_run": {"type": "boolean", "default": False, "description": "count the jobs, change none"},
    },
}
COUNTS = {
    "description": "How many jobs the filter matched that the action applies to, and how many it changed",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["matched", "changed"],
                "properties": {"matched": {"type": "integer"}, "changed": {"type": "integer"}},
            }
        }
    },
}


def _operation(action: BulkAction) -> dict:
    return {
        "post": {
            "summary": f"{action.name.capitalize()} every {' or '.join(action.statuses)} job the filter matches",
            "requestBody": json_request(FILTER),
            "responses": {
                "200": COUNTS,
                "415": problem("Not application/json"),
                "422": problem("Invalid filter, or a status the action does not apply to"),
                **COMMON_ERRORS,
            },
        }
    }


OPENAPI_PATHS = {"/v1/jobs/retry": _operation(RETRY), "/v1/jobs/cancel": _operation(CANCEL)}
