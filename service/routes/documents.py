"""POST /v1/documents: a PDF or image to read, stored as it streams in.
GET /v1/documents: search what was read, by extracted email, job status and metadata."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import documents
from service.auth import authenticate
from service.consistency import requested_lsn
from service.openapi import COMMON_ERRORS, json_body, upload_operation
from service.problems import Problem
from service.routes.destinations import check_callback_url
from service.routes.jobs import PAGE_PARAMETERS, job_page, page_params, status_param
from service.sniffing import DOCUMENT_TYPES
from service.submissions import submit_upload
from service.validation import check_storable

DOCUMENT_MAX_TRIES = 5


async def create_document(request: Request) -> Response:
    return await submit_upload(request, kind="document", accept=DOCUMENT_TYPES, max_tries=DOCUMENT_MAX_TRIES,
                               check_callback=check_callback_url)


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
            raise Problem(400, f"unknown parameter {name!r}: filter with email, status or metadata.KEY",
                          type="bad-request")
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


OPENAPI_PATHS = {
    "/v1/documents": {
        "post": upload_operation("Submit a document (PDF, PNG, JPEG, TIFF) to read", {}),
        "get": {
            "summary": "Search the tenant's documents by extracted email, status and metadata, newest first",
            "parameters": [
                {"name": "email", "in": "query", "schema": {"type": "string", "maxLength": MAX_EMAIL_LENGTH},
                 "description": "the extracted email address (case-insensitive)"},
                {"name": "metadata.KEY", "in": "query", "schema": {"type": "string"},
                 "description": "metadata KEY equals the value (as a string, number or boolean); repeatable "
                                "with other keys"},
                *PAGE_PARAMETERS,
            ],
            "responses": {"200": json_body("JobList", "A page of document jobs"), **COMMON_ERRORS},
        },
    },
}
