"""Failures of the things Conveyor depends on, in one type the API turns into a 503."""


class DependencyUnavailable(Exception):
    """PostgreSQL, Redis or storage cannot be reached right now; the client should retry."""

    def __init__(self, dependency: str, detail: str = "", retry_after: int = 5) -> None:
        super().__init__(f"{dependency} is unavailable" + (f": {detail}" if detail else ""))
        self.dependency = dependency
        self.retry_after = retry_after
