"""Conveyor's one error hierarchy: how work fails, in words a client can act on.

Every error is a `ConveyorError` with a stable `type` slug (clients branch on it; it lands
in a job's `error.type` or a problem's `type`) and a message written for the tenant:
- `PermanentError`: bad input or a refusal that retrying cannot fix (corrupt file, invalid
  recipient): a job ends `failed` at once; the API answers 422.
- `TransientError`: worth retrying later (a provider down, throttled or slow): a job is
  retried with backoff; `retry_after` is the dependency's own hint, if any.
- `DependencyUnavailable`: one of our own dependencies (PostgreSQL, Redis, storage) is
  down: a job is retried; the API answers 503 with `Retry-After`.

An exception that is not one of these is shown to the tenant by its class only (type
`exception`, see pipelines/runner.py), and a dependency of ours being down by the
dependency's name; their own text (paths, hosts, reprs with addresses) stays in the logs. The HTTP layer maps these to problem+json in one place
(`service/api/problems.py`); this module imports nothing, so every layer may use it.
"""

from __future__ import annotations


class ConveyorError(Exception):
    type: str = "error"

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


class JobError(ConveyorError):
    """A failure a job reports as its `error`; retried when `retryable`."""

    type = "job_error"
    retryable: bool = False


class PermanentError(JobError):
    """Bad input or a refusal that retrying cannot fix (corrupt file, invalid recipient);
    `field` names the part of a request it judges (`to[2]`), when it judges one."""

    type = "invalid_input"

    def __init__(self, message: str, *, type: str | None = None, field: str | None = None) -> None:
        super().__init__(message, type=type)
        self.field = field


class TransientError(JobError):
    """Worth retrying later: `retry_after` (seconds) is the dependency's own hint, if any."""

    type = "dependency_unavailable"
    retryable = True

    def __init__(self, message: str, *, type: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, type=type)
        self.retry_after = retry_after


class DependencyUnavailable(ConveyorError):
    """PostgreSQL, Redis or storage cannot be reached right now; the client should retry.

    Its message carries the detail for the logs; `as_dict` is what a tenant is shown."""

    type = "dependency_unavailable"

    def __init__(self, dependency: str, detail: str = "", retry_after: int = 5) -> None:
        super().__init__(f"{dependency} is unavailable" + (f": {detail}" if detail else ""))
        self.dependency = dependency
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": f"{self.dependency} is unavailable; the job is retried"}
