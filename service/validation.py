"""Checks on client-supplied fields shared by the routes; each failure is a clear 4xx."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from service.problems import Problem

MAX_REPORTED_ERRORS = 20


class StrictModel(BaseModel):
    """A JSON request body: unknown fields refused, no coercion ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)


Model = TypeVar("Model", bound=BaseModel)

MAX_METADATA_BYTES = 16 * 1024
MAX_URL_LENGTH = 2048


def invalid(field: str, detail: str) -> Problem:
    return Problem(422, f"{field}: {detail}", type="invalid-field", field=field)


def parse_metadata(raw: str | dict | None) -> dict:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_METADATA_BYTES:
            raise invalid("metadata", f"larger than {MAX_METADATA_BYTES} bytes")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise invalid("metadata", f"not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise invalid("metadata", "must be a JSON object")
    if len(json.dumps(raw).encode()) > MAX_METADATA_BYTES:
        raise invalid("metadata", f"larger than {MAX_METADATA_BYTES} bytes")
    check_storable(raw)
    return raw


def parse_callback_url(raw: str | None) -> str | None:
    """Shape only; where it may point is checked when it is called (SSRF guard)."""
    if not raw:
        return None
    if len(raw) > MAX_URL_LENGTH:
        raise invalid("callback_url", f"longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("callback_url", "must be an absolute http:// or https:// URL")
    return raw


async def read_json_body(request: Request, limit: int) -> bytes:
    """The raw body of a JSON request, refused (415, 413) before it is held whole in memory."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise Problem(415, "send the request as application/json", type="unsupported-media-type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _body_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _body_too_large(limit)
    return bytes(body)


def _body_too_large(limit: int) -> Problem:
    return Problem(413, f"the request body exceeds {limit} bytes", type="payload-too-large", limit=limit)


def field_path(location: tuple) -> str:
    """A pydantic error location as a client reads it: `events[3].ts`."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def unstorable(value: Any, path: str = "body") -> str | None:
    """Where a JSON value holds text PostgreSQL cannot store (a NUL, an unpaired
    surrogate), or None. JSON allows both; text and jsonb columns do not."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable(key, path) or unstorable(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def check_storable(value: Any, *, status: int = 422) -> None:
    """422 for a body's field; query parameters pass `status=400`."""
    where = unstorable(value)
    if where is not None:
        raise Problem(status, f"{where}: text may not contain NUL characters or unpaired surrogates",
                      type="invalid-field" if status == 422 else "bad-request", field=where)


def parse_json(model: type[Model], body: bytes) -> Model:
    """Validate a JSON body: 400 if it is not JSON, 422 naming the first bad field (all in `errors`)."""
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if errors[0]["type"] == "json_invalid":
            raise Problem(400, f"the body is not valid JSON: {errors[0]['msg']}", type="bad-request") from None
        reported = [{"field": field_path(error["loc"]), "message": error["msg"]} for error in errors]
        first = reported[0]
        raise Problem(422, f"{first['field']}: {first['message']}", type="invalid-field", field=first["field"],
                      errors=reported[:MAX_REPORTED_ERRORS]) from None
    check_storable(parsed.model_dump())
    return parsed
