"""Checks on client-supplied fields shared by the routes; each failure is a clear 4xx."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from service.api.problems import Problem, refusal
from service.errors import PermanentError
from service.moments import utc_moment

MAX_REPORTED_ERRORS = 20


class StrictModel(BaseModel):
    """A JSON request body: unknown fields refused, no coercion ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)


Model = TypeVar("Model", bound=BaseModel)

MAX_METADATA_BYTES = 16 * 1024
MAX_URL_LENGTH = 2048
#: Deepest nesting of arrays and objects a JSON value may have (pydantic's own parser stops near 200).
MAX_JSON_DEPTH = 64
#: Integers beyond this many bits have more digits than Python will turn into text (4,300).
MAX_INTEGER_BITS = 14_000


def invalid(field: str, detail: str) -> Problem:
    return Problem(422, f"{field}: {detail}", type="invalid-field", field=field)


def refused(field: str, error: PermanentError) -> Problem:
    """A 422 on `field` carrying a pipeline's own error (`invalid-url`, `destination-refused`, …)."""
    return refusal(error, field)


#: A date-time field of a JSON body: ISO 8601 with an offset, representable in UTC.
Moment = Annotated[AwareDatetime, AfterValidator(utc_moment)]


def load_json(text: str | bytes) -> Any:
    """A JSON value as RFC 8259 defines it, or ValueError: Python's parser also takes
    NaN and Infinity, and nests as deep as its stack allows (RecursionError)."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")


def parse_metadata(raw: str | dict | None) -> dict:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_METADATA_BYTES:
            raise invalid("metadata", f"larger than {MAX_METADATA_BYTES} bytes")
        try:
            raw = load_json(raw)
        except ValueError as exc:
            raise invalid("metadata", f"not valid JSON ({exc})") from None
    check_storable(raw, path="metadata")
    if not isinstance(raw, dict):
        raise invalid("metadata", "must be a JSON object")
    if len(json.dumps(raw).encode()) > MAX_METADATA_BYTES:
        raise invalid("metadata", f"larger than {MAX_METADATA_BYTES} bytes")
    return raw


def parse_callback_url(raw: str | None) -> str | None:
    """Shape only; where it may point is judged by the upload route's callback check, and
    again inside every connection the worker makes (SSRF guard)."""
    if not raw:
        return None
    if len(raw) > MAX_URL_LENGTH:
        raise invalid("callback_url", f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unclosed [IPv6 literal
        raise invalid("callback_url", "is not a valid URL") from None
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


def unstorable(value: Any, path: str = "body") -> tuple[str, str] | None:
    """Where a JSON value holds what PostgreSQL or the JSON we write cannot (a NUL or an
    unpaired surrogate in text, a float that is not finite, an integer too long to print,
    nesting deeper than MAX_JSON_DEPTH), and why; or None. Iterative, so depth costs no stack.
    Paths read as `field_path` writes them: `events[3].properties.x` (`path` for the whole)."""
    pending = [(value, path, 0)]
    while pending:
        value, where, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value or not _encodable(value):
                return where, "text may not contain NUL characters or unpaired surrogates"
        elif isinstance(value, float) and not math.isfinite(value):
            return where, "numbers must be finite (no NaN, Infinity or overflowing exponents)"
        elif isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
            return where, "the number has too many digits"
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                return where, f"nested deeper than {MAX_JSON_DEPTH} levels"
            inside = "" if depth == 0 and where == "body" else where  # `events[0]`, not `body.events[0]`
            if isinstance(value, dict):
                for key, item in value.items():
                    pending.append((key, where, depth))
                    pending.append((item, f"{inside}.{key}" if inside else str(key), depth + 1))
            else:
                pending.extend((item, f"{inside}[{index}]", depth + 1) for index, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_storable(value: Any, *, path: str = "body", status: int = 422) -> None:
    """422 for a body's field (`path` names the value); query parameters pass `status=400`."""
    found = unstorable(value, path)
    if found is not None:
        where, why = found
        raise Problem(status, f"{where}: {why}", type="invalid-field" if status == 422 else "bad-request", field=where)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON body that must be an object, for a route that judges its fields itself:
    400 if it is not JSON or not an object, 422 naming where it holds what cannot be stored."""
    try:
        value = load_json(body)
    except ValueError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", type="bad-request") from None
    if not isinstance(value, dict):
        raise Problem(400, "the body must be a JSON object", type="bad-request")
    check_storable(value)
    return value


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
        raise Problem(
            422,
            f"{first['field']}: {first['message']}",
            type="invalid-field",
            field=first["field"],
            errors=reported[:MAX_REPORTED_ERRORS],
        ) from None
    check_storable(parsed.model_dump())
    return parsed
