"""What the OpenAI and Gemini extractors share: retries, time budget, rate limit, validation.

One `extract` call has `timeout` seconds in all; each HTTP attempt gets at most
`attempt_timeout` of it, so a hung connection leaves time to try again. Retryable answers
(408, 409, 429, 5xx, network errors) wait with full-jitter exponential backoff, or as long
as the provider asks (`retry-after-ms`, `Retry-After`, Gemini's `RetryInfo`) if that fits
in the budget; otherwise the `TransientError` carries `retry_after` to the job's own retry.
A reply cut off by the token limit is asked again once with four times the limit; a reply
that is not valid JSON for the schema is asked again once.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from conveyor.client.errors import retry_after_seconds
from pipelines.documents.extract.schema import ResumeFields
from service import outbound
from service.errors import JobError, PermanentError, TransientError
from service.ratelimit import RateLimiter

RETRYABLE_STATUS = {408, 409, 429}


@dataclass(frozen=True)
class Reply:
    """The model's answer text, and whether it stopped at the token limit."""

    content: str
    truncated: bool


class LLMExtractor(abc.ABC):
    provider = "llm"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        headers: dict[str, str],
        timeout: float = 60.0,
        attempt_timeout: float | None = None,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_tokens: int = 1024,
        max_input_chars: int = 60_000,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout or max(1.0, timeout / 3)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.max_input_chars = max_input_chars
        self.limiter = limiter
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=outbound.HEADERS | headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- what each provider defines -----------------------------------------------------------

    @abc.abstractmethod
    def request(self, text: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
        """The path (relative to the base URL) and JSON body asking for the fields of `text`."""

    @abc.abstractmethod
    def reply(self, body: dict[str, Any]) -> Reply:
        """The answer in a 200 body; `PermanentError` if the model refused."""

    @abc.abstractmethod
    def quota_exhausted(self, response: httpx.Response) -> bool:
        """A 429 that waiting will not clear (billing or daily quota)."""

    def retry_after(self, response: httpx.Response) -> float | None:
        """How long the provider asks us to wait, in seconds (`retry-after-ms`, `Retry-After`)."""
        if "retry-after-ms" in response.headers:
            with contextlib.suppress(ValueError):
                return max(0.0, float(response.headers["retry-after-ms"]) / 1000)
        return retry_after_seconds(response)

    # -- the common work ----------------------------------------------------------------------

    async def extract(self, text: str) -> ResumeFields:
        """The fields of `text` (cut at `max_input_chars`); typed `JobError`s on failure."""
        deadline = time.monotonic() + self.timeout
        text = text[: self.max_input_chars]
        max_tokens = self.max_tokens
        retried_length = retried_invalid = False
        while True:
            answer = await self._send(*self.request(text, max_tokens), deadline=deadline)
            try:
                reply = self.reply(answer)
                if reply.truncated:
                    if retried_length:
                        raise PermanentError(
                            f"{self.provider} answer exceeded {max_tokens} tokens", type="llm_output_truncated"
                        )
                    retried_length, max_tokens = True, max_tokens * 4
                    continue
                return ResumeFields.model_validate_json(reply.content)
            except (ValidationError, ValueError, KeyError, IndexError, TypeError) as exc:
                if retried_invalid:
                    raise PermanentError(
                        f"{self.provider} answered with invalid output: {str(exc)[:300]}", type="llm_invalid_output"
                    ) from None
                retried_invalid = True

    async def _send(self, path: str, body: dict[str, Any], *, deadline: float) -> dict[str, Any]:
        attempt = 0
        failure: JobError
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(f"{self.provider} did not answer within {self.timeout:g}s", type="llm_timeout")
            if self.limiter:
                await self.limiter.acquire(self.provider, max_wait=remaining)
            try:
                response = await self._http.post(path, json=body, timeout=min(self.attempt_timeout, remaining))
            except httpx.TimeoutException:
                failure = TransientError(f"{self.provider} timed out", type="llm_timeout")
            except httpx.TransportError as exc:
                failure = TransientError(f"{self.provider} is unreachable: {exc}", type="llm_unavailable")
            else:
                if response.is_success:
                    with contextlib.suppress(ValueError):
                        return response.json()
                    failure = TransientError(
                        f"{self.provider} answered with a body that is not JSON", type="llm_unavailable"
                    )
                else:
                    failure = self._failure(response)
            attempt += 1
            if not failure.retryable or attempt >= self.max_attempts:
                raise failure
            delay = failure.retry_after if isinstance(failure, TransientError) else None
            if delay is None:
                delay = random.uniform(0, self.backoff * 2**attempt)
            if time.monotonic() + delay >= deadline:
                raise failure
            await asyncio.sleep(delay)

    def _failure(self, response: httpx.Response) -> JobError:
        status = response.status_code
        detail = f"{self.provider} answered {status}: {response.text[:300]}"
        if status == 429 and self.quota_exhausted(response):
            return PermanentError(detail, type="llm_quota_exceeded")
        if status in RETRYABLE_STATUS or status >= 500:
            kind = "llm_rate_limited" if status == 429 else "llm_unavailable"
            return TransientError(detail, type=kind, retry_after=self.retry_after(response))
        if status in (401, 403):
            return PermanentError(detail, type="llm_auth_failed")
        return PermanentError(detail, type="llm_request_rejected")


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The `error` object both providers put in failure bodies ({} if there is none)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}
