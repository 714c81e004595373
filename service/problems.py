"""RFC 9457 problem details: every 4xx and 5xx the API sends is one of these."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.errors import DependencyUnavailable

PROBLEM_TYPE_BASE = "https://conveyor.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a request to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + problem.type,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extensions,
    }
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type="application/problem+json")


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem_response(request, Problem(exc.status_code, exc.detail or HTTPStatus(exc.status_code).phrase, headers=exc.headers))


async def handle_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyUnavailable)
    problem = Problem(
        503,
        f"{exc.dependency} is unavailable; retry later",
        type="dependency-unavailable",
        headers={"Retry-After": str(exc.retry_after)},
        dependency=exc.dependency,
    )
    return problem_response(request, problem)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, Problem(500, "internal error; it has been logged", type="internal-error"))


EXCEPTION_HANDLERS = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    DependencyUnavailable: handle_unavailable,
    Exception: handle_unexpected,
}
