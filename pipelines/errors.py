"""The two ways work can fail, so every stage and client speaks the same language.

A `JobError` carries a stable `type` slug (clients branch on it; it lands in the job's
`error.type`) and a human message. `TransientError`s are retried with backoff by the
worker (a dependency was down, throttled or slow); anything else ends the job `failed` at
once, because running it again would fail the same way.

A job's error is shown to its tenant, so its message is written for them: an exception
that is not a JobError, or a dependency of ours being down, is recorded as one of the
fixed errors below, and its own text (paths, hosts, reprs with addresses) stays in the logs.
"""

from __future__ import annotations


class JobError(Exception):
    type: str = "job_error"
    retryable: bool = False

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


class PermanentError(JobError):
    """Bad input or a refusal that retrying cannot fix (corrupt file, invalid recipient)."""

    type = "invalid_input"


class TransientError(JobError):
    """Worth retrying later: `retry_after` (seconds) is the dependency's own hint, if any."""

    type = "dependency_unavailable"
    retryable = True

    def __init__(self, message: str, *, type: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, type=type)
        self.retry_after = retry_after


UNEXPECTED_ERROR = {"type": "internal_error",
                    "message": "the job stopped on an unexpected error; the details are in the service's logs"}


def dependency_error(dependency: str) -> dict[str, str]:
    """A job's error when one of our own dependencies (database, Redis, storage) is down."""
    return {"type": "dependency_unavailable", "message": f"{dependency} is unavailable; the job is retried"}
