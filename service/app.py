"""The HTTP API: `uvicorn service.app:app`."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from pipelines import registry
from service import queue
from service.api import openapi
from service.api.auth import FAILURES_PREFIX, KeyRing
from service.api.consistency_token import ConsistencyMiddleware
from service.api.dashboard import routes as dashboard
from service.api.kind_catalog import KindCatalog
from service.api.problems import EXCEPTION_HANDLERS
from service.api.ratelimit_middleware import BUCKET_PREFIX, RateLimitMiddleware
from service.api.request_heads import HeadLimitMiddleware
from service.api.request_observer import RequestObserver
from service.api.routes import (
    analytics,
    bulk,
    documents,
    health,
    jobs,
    kinds,
    metrics,
    notifications,
    reminders,
    schedules,
    stream,
    templates,
    videos,
    workflows,
)
from service.config import Settings, get_settings
from service.databases.database import Database
from service.ledger.job_inserts import JobInserts
from service.ledger.signing import SigningKeys
from service.queue.backlog import Backlog
from service.ratelimit import TokenBucket
from service.storage import open_storage
from service.telemetry import observability

ROUTE_MODULES = (
    health,
    metrics,
    documents,
    videos,
    notifications,
    templates,
    jobs,
    kinds,
    bulk,
    stream,
    analytics,
    reminders,
    schedules,
    workflows,
)


def routes() -> list[Route]:
    """The public API, every route of which /openapi.json documents."""
    paths: dict[str, dict] = {}
    for module in ROUTE_MODULES:
        for path, operations in module.OPENAPI_PATHS.items():
            paths.setdefault(path, {}).update(operations)  # a path's methods may live in two modules
    return [
        Route("/openapi.json", openapi.endpoint(paths), methods=["GET"]),
        Route("/livez", health.livez, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics.metrics, methods=["GET"]),
        Route("/v1/documents", documents.create_document, methods=["POST"]),
        Route("/v1/documents", documents.search_documents, methods=["GET"]),
        Route("/v1/videos", videos.create_video, methods=["POST"]),
        Route("/v1/notifications", notifications.create_notification, methods=["POST"]),
        Route("/v1/templates", templates.list_templates, methods=["GET"]),
        Route("/v1/templates/{name}", templates.put_template, methods=["PUT"]),
        Route("/v1/templates/{name}", templates.get_template, methods=["GET"]),
        Route("/v1/templates/{name}", templates.delete_template, methods=["DELETE"]),
        Route("/v1/templates/{name}/preview", templates.preview_template, methods=["POST"]),
        Route("/v1/kinds", kinds.list_kinds, methods=["GET"]),
        Route("/v1/jobs", jobs.list_jobs, methods=["GET"]),
        Route("/v1/jobs", kinds.create_job, methods=["POST"]),
        Route("/v1/jobs/batch", kinds.create_jobs, methods=["POST"]),
        Route("/v1/jobs/retry", bulk.retry_jobs, methods=["POST"]),
        Route("/v1/jobs/cancel", bulk.cancel_jobs, methods=["POST"]),
        Route("/v1/jobs/{job_id}", jobs.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/files/{name}", jobs.get_job_file, methods=["GET"]),
        Route("/v1/jobs/{job_id}/text", documents.get_text, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", jobs.cancel_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", jobs.retry_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}/events", stream.job_events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events/token", stream.create_token, methods=["POST"]),
        Route("/v1/workflows", workflows.create_workflow, methods=["POST"]),
        Route("/v1/workflows", workflows.list_workflows, methods=["GET"]),
        Route("/v1/workflows/{workflow_id}", workflows.get_workflow, methods=["GET"]),
        Route("/v1/workflows/{workflow_id}/cancel", workflows.cancel_workflow, methods=["POST"]),
        Route("/v1/workflows/{workflow_id}/events", workflows.workflow_events, methods=["GET"]),
        Route("/v1/events", analytics.ingest_events, methods=["POST"]),
        Route("/v1/stats", analytics.get_stats, methods=["GET"]),
        Route("/v1/exports", analytics.create_export, methods=["POST"]),
        Route("/v1/reminders", reminders.create_reminder, methods=["POST"]),
        Route("/v1/reminders/{reminder_id}", reminders.get_reminder, methods=["GET"]),
        Route("/v1/memberships/{member}", reminders.put_membership, methods=["PUT"]),
        Route("/v1/schedules", schedules.create_schedule, methods=["POST"]),
        Route("/v1/schedules", schedules.list_schedules, methods=["GET"]),
        Route("/v1/schedules/{schedule_id}", schedules.get_schedule, methods=["GET"]),
        Route("/v1/schedules/{schedule_id}", schedules.update_schedule, methods=["PATCH"]),
        Route("/v1/schedules/{schedule_id}", schedules.delete_schedule, methods=["DELETE"]),
    ]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        observability.setup(settings, "conveyor-api")
        state = app.state
        state.settings = settings
        state.kinds = registry.built_in_specs(settings)
        state.redis = queue.connect(settings.redis_url)
        state.db = Database(settings, redis=state.redis)
        state.backlog = Backlog(state.redis, state.db)
        state.enqueuer = queue.Enqueuer(state.redis)
        state.inserts = JobInserts(state.db)
        state.kind_catalog = KindCatalog(state.db)
        state.rate_limits = TokenBucket(state.redis, BUCKET_PREFIX)
        state.keys = KeyRing(state.db, TokenBucket(state.redis, FAILURES_PREFIX), settings.auth_failures_per_minute)
        state.signing_keys = SigningKeys(state.db)
        state.storage = open_storage(settings.storage_url, settings.s3_endpoint_url)
        await state.db.open()
        await state.storage.open()
        gc.freeze()  # what start-up made lives as long as the process: no collection need scan it again
        try:
            yield
        finally:
            await state.storage.close()
            await state.redis.aclose()
            await state.db.close()
            await observability.teardown()

    return Starlette(
        routes=[*routes(), dashboard.mount()],
        middleware=[
            Middleware(RequestObserver),
            Middleware(HeadLimitMiddleware),
            Middleware(RateLimitMiddleware),
            Middleware(ConsistencyMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


def __getattr__(name: str) -> Starlette:
    """`service.app:app` is built on first access, so importing this module reads no environment."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
