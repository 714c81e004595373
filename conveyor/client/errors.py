"""What the client raises: the API's problem+json answers as `ApiError`, and the two
failures of its own (a file it cannot upload, an event stream that keeps breaking)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

TEXT_SHOWN = 200  # characters of a non-JSON error body kept as the detail


class ApiError(Exception):
    """An error answer of the API (RFC 9457 problem details): `status`, `type` (a URI,
    `about:blank` when the answer was not problem+json), `title`, `detail`; `body` is the
    whole problem (extensions such as `field` included); `retry_after` is in seconds."""

    def __init__(
        self,
        status: int,
        type: str,
        detail: str,
        *,
        title: str | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type
        self.detail = detail
        self.title = title or httpx.codes.get_reason_phrase(status) or "Error"
        self.body = body or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}" if self.detail else f"{self.status} {self.title}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        retry_after = retry_after_seconds(response)
        if not isinstance(body, dict):
            text = response.text.strip()[:TEXT_SHOWN]
            return cls(response.status_code, "about:blank", text, retry_after=retry_after)
        return cls(
            response.status_code,
            str(body.get("type") or "about:blank"),
            str(body.get("detail") or ""),
            title=body.get("title") or response.reason_phrase,
            body=body,
            retry_after=retry_after,
        )


class UnsupportedFile(ValueError):
    """A file `upload` cannot send: neither a document nor a video, judged from its bytes."""


class EventStreamError(ConnectionError):
    """A job's event stream kept breaking off before the job ended."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The answer's `Retry-After` in seconds (it may be a number or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
