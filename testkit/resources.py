"""A worker's Resources outside a worker, for calling cron and pipeline functions directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pipelines.lifecycle import close_resources
from pipelines.lifecycle import open_resources as open_worker_resources
from pipelines.resources import Resources
from service import queue
from service.config import Settings


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    redis = queue.connect(settings.redis_url)
    resources = await open_worker_resources(settings, redis)
    try:
        yield resources
    finally:
        await close_resources(resources)
        await redis.aclose()
