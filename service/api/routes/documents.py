"""POST /v1/documents: a PDF or image to read, stored as it streams in.
GET /v1/documents: search what was read, by extracted email, job status and metadata.
GET /v1/jobs/{id}/text: a document's text, a page at a time (the Job shows only its start)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipelines.documents import table as documents
from service.api.auth import authenticate
from service.api.consistency_token import requested_lsn
from service.api.openapi import COMMON_ERRORS, JOB_ID, json_body, problem, upload_operation
from service.api.problems import Problem
from service.api.routes.destinations import check_callback_url
from service.api.routes.jobs import (
    PAGE_PARAMETERS,
    follow,
    job_page,
    not_found,
    page_params,
    path_job_id,
    query_int,
    status_param,
)
from service.api.submissions import kind_spec, submit_upload
from service.api.validation import check_storable
from service.ledger import FINISHED
from service.storage.sniffing import DOCUMENT_TYPES


async def create_document(request: Request) -> Response:
    return await submit_upload(
        request, kind=kind_spec(request, "document"), accept=DOCUMENT_TYPES, check_callback=check_callback_url
    )


METADATA_PREFIX = "metadata."
SEARCH_PARAMETERS = frozenset({"email", "status", "limit", "cursor"})
MAX_EMAIL_LENGTH = 320


def search_filters(request: Request) -> documents.DocumentFilters:
    check_storable(dict(request.query_params.multi_items()), status=400)
    metadata = {}
    for name, value in request.query_params.multi_items():
        if name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
            metadata[name.removeprefix(METADATA_PREFIX)] = value
        elif name not in SEARCH_PARAMETERS:
            raise Problem(
                400, f"unknown parameter {name!r}: filter with email, status or metadata.KEY", type="bad-request"
            )
    email = request.query_params.get("email")
    if email is not None and not 0 < len(email) <= MAX_EMAIL_LENGTH:
        raise Problem(400, f"email must be 1 to {MAX_EMAIL_LENGTH} characters", type="bad-request")
    return documents.DocumentFilters(email=email, status=status_param(request), metadata=metadata)


async def search_documents(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    filters = search_filters(request)
    limit, after = page_params(request)
    async with request.app.state.db.read(follow=(f"tenant:{tenant.id}",), min_lsn=requested_lsn(request)) as conn:
        rows = await documents.search(conn, tenant.id, filters, limit=limit + 1, after=after)
        return await job_page(request, conn, rows, limit)


MAX_PAGE_NUMBER = 1_000_000


async def get_text(request: Request) -> JSONResponse:
    """`{page, pages, text, truncated, next_page}`: one page's text as kept (within
    MAX_PAGE_TEXT_CHARS, so every answer is bounded); `truncated` says it was cut there."""
    tenant = await authenticate(request)
    job_id = path_job_id(request)
    number = query_int(request, "page", 1, 1, MAX_PAGE_NUMBER)
    async with request.app.state.db.read(follow=follow(tenant.id, job_id), min_lsn=requested_lsn(request)) as conn:
        row = await documents.page_text(conn, tenant.id, job_id, number)
    if row is None:
        raise not_found()
    if not row["extracted"]:
        raise _no_text(row)
    if row["text"] is None:
        raise Problem(404, f"no page {number}: the document has {row['page_count']}", type="no-such-page")
    pages = row["page_count"]
    return JSONResponse(
        {
            "page": number,
            "pages": pages,
            "text": row["text"],
            "truncated": row["truncated"],
            "next_page": number + 1 if number < pages else None,
        }
    )


def _no_text(row) -> Problem:
    if row["kind"] != "document":
        return Problem(404, f"a {row['kind']} job has no text", type="no-text")
    if row["status"] in FINISHED:
        return Problem(404, f"the document's text was not read (the job is {row['status']})", type="no-text")
    return Problem(409, "the document's text is not read yet", type="text-not-ready", headers={"Retry-After": "1"})


OPENAPI_PATHS = {
    "/v1/jobs/{job_id}/text": {
        "get": {
            "summary": "A document's text, one page at a time (the Job's result.text is only its start)",
            "parameters": [
                JOB_ID,
                {
                    "name": "page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_NUMBER},
                },
            ],
            "responses": {
                "200": json_body("PageText", "The page's text as kept, and whether it was cut"),
                "404": problem("Unknown job (or another tenant's), no such page, or a job without text"),
                "409": problem("The document's text is not read yet"),
                **COMMON_ERRORS,
            },
        }
    },
    "/v1/documents": {
        "post": upload_operation("Submit a document (PDF, PNG, JPEG, TIFF) to read", {}),
        "get": {
            "summary": "Search the tenant's documents by extracted email, status and metadata, newest first",
            "parameters": [
                {
                    "name": "email",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": MAX_EMAIL_LENGTH},
                    "description": "the extracted email address (case-insensitive)",
                },
                {
                    "name": "metadata.KEY",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "metadata KEY equals the value (as a string, number or boolean); repeatable "
                    "with other keys",
                },
                *PAGE_PARAMETERS,
            ],
            "responses": {"200": json_body("JobList", "A page of document jobs"), **COMMON_ERRORS},
        },
    },
}
