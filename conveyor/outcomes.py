"""How a stage ends other than by returning: try again later, fail now, or skip.

They are Conveyor's own job errors (service/errors.py), so the runner treats a kind
declared by an app exactly as a built-in one.
"""

from __future__ import annotations

from service.errors import PermanentError, TransientError


class Retry(TransientError):
    """Try the job again in `after` seconds (exponential backoff with jitter if None); it
    counts a try, and once the tries are used the job ends `failed`."""

    type = "retry"

    def __init__(self, after: float | None = None, message: str = "the stage asked to be tried again") -> None:
        super().__init__(message, retry_after=after)
        self.exact = after is not None


class Fail(PermanentError):
    """End the job `failed` now, with `{type, message}` as its error."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message, type=type)


class Skip(Exception):
    """A stage with nothing to do (e.g. no page needs OCR): its status is `skipped`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
