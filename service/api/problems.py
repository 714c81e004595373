"""RFC 9457 problem details: every 4xx and 5xx the API sends is one of these.

The one place where the core's errors (`service.errors`) become HTTP answers: a
`PermanentError` is a 422 carrying its own `type`, a `TransientError` or a
`DependencyUnavailable` a 503 with `Retry-After`, and so is a Redis that cannot be
reached (no master while Sentinel fails over, say) where a request could not do without
it; anything unexpected a 500 that says nothing of the internals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.errors import DependencyUnavailable, PermanentError, TransientError

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
    return JSONResponse(
        _writable(body), status_code=problem.status, headers=problem.headers, media_type="application/problem+json"
    )


def _writable(value: Any) -> Any:
    """`value` with each unpaired surrogate written out as `\\udXXX`: a problem may echo what
    a client sent (a field's name, say), and UTF-8 cannot carry those."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_writable(key): _writable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(item) for item in value]
    return value


def refusal(error: PermanentError, field: str | None = None) -> Problem:
    """A 422 carrying a pipeline's own error (`invalid-url`, `destination-refused`, …),
    on `field` when the request named one."""
    kind = error.type.replace("_", "-")
    if field:
        return Problem(422, f"{field}: {error.message}", type=kind, field=field)
    return Problem(422, error.message, type=kind)


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem_response(
        request, Problem(exc.status_code, exc.detail or HTTPStatus(exc.status_code).phrase, headers=exc.headers)
    )


async def handle_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DependencyUnavailable)
    return unavailable(request, exc)


async def handle_redis_unreachable(request: Request, exc: Exception) -> JSONResponse:
    return unavailable(request, DependencyUnavailable("redis", type(exc).__name__))


def unavailable(request: Request, exc: DependencyUnavailable) -> JSONResponse:
    problem = Problem(
        503,
        f"{exc.dependency} is unavailable; retry later",
        type="dependency-unavailable",
        headers={"Retry-After": str(exc.retry_after)},
        dependency=exc.dependency,
    )
    return problem_response(request, problem)


async def handle_refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PermanentError)
    return problem_response(request, refusal(exc, exc.field))


async def handle_transient(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TransientError)
    retry_after = str(max(1, math.ceil(exc.retry_after or 5)))
    problem = Problem(503, exc.message, type=exc.type.replace("_", "-"), headers={"Retry-After": retry_after})
    return problem_response(request, problem)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, Problem(500, "internal error; it has been logged", type="internal-error"))


EXCEPTION_HANDLERS = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    DependencyUnavailable: handle_unavailable,
    RedisConnectionError: handle_redis_unreachable,
    RedisTimeoutError: handle_redis_unreachable,
    ReadOnlyError: handle_redis_unreachable,
    PermanentError: handle_refusal,
    TransientError: handle_transient,
    Exception: handle_unexpected,
}
