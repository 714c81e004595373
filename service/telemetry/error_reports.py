"""Errors to Sentry (sentry-sdk) when `SENTRY_DSN` is set, tagged with the job and tenant.

Log records become breadcrumbs, not events: the runner reports a crashed job itself, once,
inside `job_scope`, so the event carries `job_id`, `tenant` and `kind` as tags. Unhandled
errors in the API are reported by sentry-sdk's Starlette integration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from service.config import Settings


def configure(settings: Settings, service: str) -> None:
    if settings.sentry_dsn is None:
        return
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        server_name=service,
        integrations=[LoggingIntegration(event_level=None)],
    )


@contextlib.contextmanager
def job_scope(job_id: str, tenant: str, kind: str) -> Iterator[None]:
    """Everything reported inside carries the job's tags (scopes follow the asyncio task)."""
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("job_id", job_id)
        scope.set_tag("tenant", tenant)
        scope.set_tag("kind", kind)
        yield


def report(exc: BaseException) -> None:
    sentry_sdk.capture_exception(exc)


def flush(timeout: float = 5.0) -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout)
