"""Reading and steering jobs: status, listing, cancel and retry."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from service import ledger, queue
from service.api import idempotency
from service.api.auth import authenticate
from service.api.consistency_token import requested_lsn
from service.api.files import file_response, link_files
from service.api.openapi import COMMON_ERRORS, JOB_ID, STATUS, json_body, problem
from service.api.problems import Problem
from service.api.submissions import handoff_args
from service.api.validation import check_storable
from service.ledger import callbacks, workflow_rows, workflows
from service.ledger.views import VIEW_COLUMNS, job_location, job_view
from service.queue import events

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
MAX_LIMIT = 200
MIN_ID_PREFIX = 4  # hex digits
HEX_DIGITS = frozenset("0123456789abcdef")
RETRY_EXTRA_TRIES = 3


def path_job_id(request: Request) -> uuid.UUID:
    """The path's job id; anything that is not a UUID is as unknown as a missing job."""
    job_id = ledger.parse_job_id(request.path_params["job_id"])
    if job_id is None:
        raise not_found()
    return job_id


def not_found() -> Problem:
    return Problem(404, "no such job", type="not-found")


def follow(tenant_id: uuid.UUID, job_id: uuid.UUID) -> tuple[str, str]:
    """What a reader of one job follows (and a writer to it tracks): read-your-writes."""
    return (f"job:{job_id}", f"tenant:{tenant_id}")


async def get_job(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)  # the built-in schedules' jobs too
    job_id = path_job_id(request)
    async with request.app.state.db.read(follow=follow(tenant.id, job_id), min_lsn=requested_lsn(request)) as conn:
        row = await ledger.get_job(conn, tenant.id, job_id)
        if row is None:
            raise not_found()
        stages = (await ledger.get_stages(conn, [job_id])).get(job_id, [])
    headers = {} if row["status"] in ledger.FINISHED else {"Retry-After": "1"}
    return JSONResponse(await link_files(request, job_view(row, stages)), headers=headers)


async def get_job_file(request: Request) -> StreamingResponse:
    """A file the job's result lists, streamed from storage (file storage has no presigned URLs),
    whole or one byte range of it (service/api/ranges.py)."""
    tenant = await authenticate(request)
    job_id = path_job_id(request)
    async with request.app.state.db.read(follow=follow(tenant.id, job_id)) as conn:
        job = await ledger.get_job(conn, tenant.id, job_id)
    if job is None:
        raise Problem(404, "no such file", type="not-found")
    return await file_response(request, job["result"], request.path_params["name"])


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem(400, f"{name} must be an integer from {low} to {high}", type="bad-request")
    return int(raw)


def status_param(request: Request) -> str | None:
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise Problem(400, f"status must be one of {', '.join(STATUSES)}", type="bad-request")
    return status


def page_params(request: Request) -> tuple[int, tuple | None]:
    """`limit` and the position `cursor` names, for any keyset-paginated job list."""
    limit = query_int(request, "limit", 50, 1, MAX_LIMIT)
    cursor = request.query_params.get("cursor")
    if not cursor:
        return limit, None
    try:
        return limit, ledger.decode_cursor(cursor)
    except ValueError:
        raise Problem(400, "cursor is not one this API gave out", type="bad-request") from None


async def job_page(request: Request, conn, rows: list, limit: int) -> JSONResponse:
    """`{items, next_cursor}` from up to `limit + 1` job rows (one more says there is a next page)."""
    page = rows[:limit]
    stages = await ledger.get_stages(conn, [row["id"] for row in page])
    next_cursor = ledger.encode_cursor(page[-1]) if len(rows) > limit else None
    items = [await link_files(request, job_view(row, stages.get(row["id"], []))) for row in page]
    return JSONResponse({"items": items, "next_cursor": next_cursor})


def id_prefix_param(request: Request) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The ids `id_prefix` matches, as the range from its lowest to its highest: the start of
    a job id, MIN_ID_PREFIX to 32 hex digits, with or without the id's dashes (where it has them)."""
    prefix = request.query_params.get("id_prefix")
    if prefix is None:
        return None
    text = prefix.lower()
    digits = text.replace("-", "")
    lowest = digits.ljust(32, "0")
    valid = MIN_ID_PREFIX <= len(digits) <= 32 and set(digits) <= HEX_DIGITS
    if valid and ("-" not in text or str(uuid.UUID(lowest)).startswith(text)):
        return uuid.UUID(lowest), uuid.UUID(digits.ljust(32, "f"))
    raise Problem(
        400,
        f"id_prefix must be the start of a job id: {MIN_ID_PREFIX} to 32 hex digits, with or without its dashes",
        type="bad-request",
    )


async def list_jobs(request: Request) -> JSONResponse:
    tenant = await authenticate(request, admin=True)  # the built-in schedules' jobs too
    status = status_param(request)
    kind = request.query_params.get("kind")
    check_storable({"kind": kind}, status=400)
    ids = id_prefix_param(request)
    limit, after = page_params(request)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",), min_lsn=requested_lsn(request)) as conn:
        rows = await ledger.list_jobs(
            conn, tenant.id, kind=kind, status=status, limit=limit + 1, after=after, ids=ids, columns=VIEW_COLUMNS
        )
        return await job_page(request, conn, rows, limit)


async def _missing_or_conflict(conn, tenant_id: uuid.UUID, job_id: uuid.UUID, conflict: str, type: str) -> Problem:
    """Why a cancel or retry changed nothing: the job is unknown (404), or in a state the
    action does not apply to (409, `conflict` formatted with its status)."""
    existing = await ledger.get_job(conn, tenant_id, job_id)
    if existing is None:
        return not_found()
    return Problem(409, conflict.format(status=existing["status"]), type=type)


async def _cancel_in(conn, state, tenant_id: uuid.UUID, job_id: uuid.UUID) -> tuple[object, object, workflows.Advance]:
    """The ledger side of a cancel, in `conn`'s transaction: the job's row, the callback
    it recorded if the job ended here, and what its ending did to its workflow. Raises
    404 or 409 as a Problem."""
    row = await ledger.request_cancel(conn, tenant_id, job_id)
    if row is None:
        raise await _missing_or_conflict(
            conn, tenant_id, job_id, "the job has already ended ({status})", "job-finished"
        )
    callback = await _cancel_callback(conn, state, row)
    advance = await workflows.jobs_ended(conn, [row], state.kinds, max_fanout=state.settings.workflow_max_fanout)
    return row, callback, advance


async def _cancel_callback(conn, state, row):
    """The callback a job that ended cancelled here has to get (recorded in `conn`'s transaction), or None."""
    return await callbacks.record(conn, row, state.kinds) if row["status"] == "cancelled" else None


async def _after_cancel(state, row, callback, advance: workflows.Advance | None = None) -> None:
    """Once committed: a queued job leaves arq, a running one is told to stop."""
    job_id = row["id"]
    if advance is not None:
        await advance.publish(state.redis)
    if row["status"] == "cancelled":
        await queue.dequeue(state.redis, job_id=str(job_id), queue=row["queue"])
        await callbacks.enqueue(state.redis, callback)
        await events.publish(state.redis, job_id, {"type": "status", "status": "cancelled", "job_id": str(job_id)})
    else:
        await state.redis.publish(events.CANCEL_CHANNEL, str(job_id))


async def _retry_in(conn, state, tenant_id: uuid.UUID, job_id: uuid.UUID):
    """The ledger side of a retry, in `conn`'s transaction: the job's row and what it did
    to its workflow. Raises 404 or 409 as a Problem."""
    row = await ledger.retry_job(conn, tenant_id, job_id, RETRY_EXTRA_TRIES)
    if row is None:
        raise await _missing_or_conflict(
            conn,
            tenant_id,
            job_id,
            "only failed or cancelled jobs can be retried (this one is {status})",
            "job-not-retryable",
        )
    return row, await _workflows_retried(conn, state, [row])


async def _workflows_retried(conn, state, rows) -> workflows.Advance:
    """What retrying these jobs does to their workflows; 409 if one was cancelled (its
    cancel stands: the transaction, retry included, rolls back)."""
    try:
        return await workflows.jobs_retried(conn, rows, state.kinds)
    except workflows.Cancelled as exc:
        raise Problem(
            409,
            f"the job's workflow {exc.workflow_id} was cancelled: its jobs are not run again",
            type="workflow-cancelled",
            workflow_id=str(exc.workflow_id),
        ) from None


async def _after_retry(state, rows, advance: workflows.Advance) -> None:
    """Once committed: back on arq's queue (due now, in one hand-off), and said on each job's event stream."""
    await advance.publish(state.redis)
    await state.enqueuer.enqueue_many([{**handoff_args(row), "run_at": None} for row in rows])
    for row in rows:
        await events.publish(
            state.redis,
            row["id"],
            {
                "type": "status",
                "status": "queued",
                "job_id": str(row["id"]),
                "progress": round(float(row["progress"]), 4),
            },
        )


async def cancel(state, tenant_id: uuid.UUID, job_id: uuid.UUID):
    """Cancel a job (the dashboard's way): a queued one ends now, a running one is told to
    stop. Raises 404 or 409 as a Problem."""
    async with state.db.transaction(track=follow(tenant_id, job_id)) as conn:
        row, callback, advance = await _cancel_in(conn, state, tenant_id, job_id)
    await _after_cancel(state, row, callback, advance)
    return row


async def retry(state, tenant_id: uuid.UUID, job_id: uuid.UUID):
    """Queue a failed or cancelled job again (the dashboard's way). Raises 404 or 409 as a Problem."""
    async with state.db.transaction(track=follow(tenant_id, job_id)) as conn:
        row, advance = await _retry_in(conn, state, tenant_id, job_id)
    await _after_retry(state, [row], advance)
    return row


async def cancel_many(state, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]) -> int:
    """`cancel` for many jobs in one transaction; how many it applied to (those still
    queued or running)."""
    async with state.db.transaction(track=(f"tenant:{tenant_id}",)) as conn:
        rows = await ledger.request_cancels(conn, tenant_id, job_ids)
        ended = [(row, await _cancel_callback(conn, state, row)) for row in rows]
        advance = await workflows.jobs_ended(conn, rows, state.kinds, max_fanout=state.settings.workflow_max_fanout)
    await advance.publish(state.redis)
    for row, callback in ended:
        await _after_cancel(state, row, callback)
    return len(rows)


async def retry_many(state, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]) -> int:
    """`retry` for many jobs in one transaction; how many it applied to (those still
    failed or cancelled, and not of a cancelled workflow)."""
    async with state.db.transaction(track=(f"tenant:{tenant_id}",)) as conn:
        live = await workflow_rows.outside_cancelled(conn, job_ids)
        rows = await ledger.retry_jobs(conn, tenant_id, live, RETRY_EXTRA_TRIES)
        advance = await _workflows_retried(conn, state, rows)
    await _after_retry(state, rows, advance)
    return len(rows)


async def _once(request: Request, tenant_id: uuid.UUID, job_id: uuid.UUID, action: str, inside, answer, after):
    """Run `inside(conn)` in the transaction that keeps the Idempotency-Key's answer, then,
    once committed, `after(its result)`; a repeat with the key gets the first `answer(result)`
    and nothing runs again."""
    done = []

    async def act(conn) -> idempotency.Answer:
        done.append(await inside(conn))
        return answer(done[0])

    response = await idempotency.answer_once(
        request, tenant_id, idempotency.fingerprint(action, str(job_id)), act, track=follow(tenant_id, job_id)
    )
    if done:
        await after(done[0])
    return response


async def cancel_job(request: Request) -> JSONResponse:
    """With an Idempotency-Key, a repeated cancel gets the first answer (not a 409 because
    the first one worked), and its effects happen once."""
    tenant = await authenticate(request)
    state, job_id = request.app.state, path_job_id(request)
    return await _once(
        request,
        tenant.id,
        job_id,
        "cancel",
        inside=lambda conn: _cancel_in(conn, state, tenant.id, job_id),
        answer=lambda done: (202, job_view(done[0]), {}),
        after=lambda done: _after_cancel(state, *done),
    )


async def retry_job(request: Request) -> JSONResponse:
    """With an Idempotency-Key, a repeated retry gets the first answer (not a 409 because
    the job is queued again), and runs the job once."""
    tenant = await authenticate(request)
    state, job_id = request.app.state, path_job_id(request)
    return await _once(
        request,
        tenant.id,
        job_id,
        "retry",
        inside=lambda conn: _retry_in(conn, state, tenant.id, job_id),
        answer=lambda done: (202, job_view(done[0]), {"Location": job_location(job_id)}),
        after=lambda done: _after_retry(state, [done[0]], done[1]),
    )


_JOB_RESPONSES = {"404": problem("Unknown job, or another tenant's"), **COMMON_ERRORS}
PAGE_PARAMETERS = [
    {"name": "status", "in": "query", "schema": STATUS},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
OPENAPI_PATHS = {
    "/v1/jobs": {
        "get": {
            "summary": "List the tenant's jobs, newest first",
            "parameters": [
                {"name": "kind", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "id_prefix",
                    "in": "query",
                    "description": f"Only jobs whose id starts so: {MIN_ID_PREFIX} to 32 hex digits, with or without the id's dashes",
                    "schema": {
                        "type": "string",
                        "minLength": MIN_ID_PREFIX,
                        "maxLength": 36,
                        "pattern": "^[0-9a-fA-F-]+$",
                    },
                },
                *PAGE_PARAMETERS,
            ],
            "responses": {"200": json_body("JobList", "A page of jobs"), **COMMON_ERRORS},
        }
    },
    "/v1/jobs/{job_id}": {
        "get": {
            "summary": "A job's status, progress, stages and result",
            "parameters": [JOB_ID],
            "responses": {"200": json_body("Job", "The job (Retry-After while unfinished)"), **_JOB_RESPONSES},
        }
    },
    "/v1/jobs/{job_id}/files/{name}": {
        "get": {
            "summary": "Download a file the job's result lists (renditions, thumbnail, exports) on file:// storage",
            "parameters": [
                JOB_ID,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "Range",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "one byte range: bytes=first-last, bytes=first- or bytes=-suffix",
                },
            ],
            "responses": {
                "200": {"description": "The file", "content": {"application/octet-stream": {}}},
                "206": {
                    "description": "The byte range asked for (Content-Range)",
                    "content": {"application/octet-stream": {}},
                },
                "416": problem("The range starts past the end (Content-Range: bytes */size)"),
                **_JOB_RESPONSES,
            },
        }
    },
    "/v1/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a queued or running job",
            "parameters": [JOB_ID],
            "responses": {"202": json_body("Job", "Cancelling"), "409": problem("Already ended"), **_JOB_RESPONSES},
        }
    },
    "/v1/jobs/{job_id}/retry": {
        "post": {
            "summary": "Run a failed or cancelled job again",
            "parameters": [JOB_ID],
            "responses": {
                "202": json_body("Job", "Queued again"),
                "409": problem("Not failed or cancelled"),
                **_JOB_RESPONSES,
            },
        }
    },
}
