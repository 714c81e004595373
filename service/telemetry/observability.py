"""One process's logs, traces and error reports.

`setup` is called once at start by the API (lifespan) and by each worker (startup hook);
the HTTP side (a span and counters per request) is service/api/request_observer.py.
"""

from __future__ import annotations

import asyncio

from service.config import Settings
from service.telemetry import error_reports, tracing
from service.telemetry.logs import configure_logging


def setup(settings: Settings, service: str) -> None:
    configure_logging(settings)
    tracing.configure(settings, service)
    error_reports.configure(settings, service)


async def teardown() -> None:
    """Export what is buffered, in a thread: it waits on the network (a collector, Sentry),
    up to their timeouts if they are down, and the loop may be running workers' jobs still
    (`conveyor up`)."""
    await asyncio.to_thread(_flush)


def _flush() -> None:
    tracing.shutdown()
    error_reports.flush()
