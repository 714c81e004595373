"""Prometheus metrics: what the API and the workers count, and how they are exposed.

Labels are bounded sets (kind, status, stage, queue, provider, outcome), never a tenant or
a job id. With `PROMETHEUS_MULTIPROC_DIR` set, prometheus-client keeps values in files
there and a scrape of any process on the host sums them (its multiprocess mode: several
uvicorn/gunicorn workers, or several arq workers behind one port); without it each process
serves its own. Queue state is not counted but read from Redis at each scrape.

Sections: jobs (worker side), providers (a helper any client calls), HTTP (API side),
replicas (the read-replica router's), queue state at scrape, and exposition.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.config import Settings
from service.telemetry import monitoring

log = structlog.get_logger("conveyor.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From a no-op to a long video transcode.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# -- jobs (recorded by the worker's runner) ------------------------------------------------

JOBS_FINISHED = Counter("conveyor_jobs_finished", "Jobs that ended, by kind and final status", ["kind", "status"])
JOB_DURATION = Histogram(
    "conveyor_job_duration_seconds",
    "From a job's first start to its end",
    ["kind", "status"],
    buckets=DURATION_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "conveyor_job_queue_wait_seconds",
    "From a job being due to its first attempt starting",
    ["kind"],
    buckets=DURATION_BUCKETS,
)
STAGE_DURATION = Histogram(
    "conveyor_stage_duration_seconds",
    "One run of one stage, by how it ended",
    ["kind", "stage", "status"],
    buckets=DURATION_BUCKETS,
)
JOBS_IN_FLIGHT = Gauge("conveyor_jobs_in_flight", "Attempts running now", ["kind"], multiprocess_mode="livesum")
BACKGROUND_LOOP_RESTARTS = Counter(
    "conveyor_background_loop_restarts",
    "A worker's background loop (heartbeat, reconciler, …) started again after an error escaped it",
    ["loop"],
)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return max((end - start).total_seconds(), 0.0) if start and end else None


def job_started(job) -> None:
    """An attempt of a ledger job (a row as `ledger.claim` returns it) starts."""
    JOBS_IN_FLIGHT.labels(job["kind"]).inc()
    if job["attempts"] == 1:
        due = max(job["created_at"], job["run_at"] or job["created_at"])
        wait = _seconds(due, job["started_at"])
        if wait is not None:
            QUEUE_WAIT.labels(job["kind"]).observe(wait)


def attempt_ended(kind: str) -> None:
    JOBS_IN_FLIGHT.labels(kind).dec()


def job_finished(job) -> None:
    """A job ended (a row as `ledger.finish_job` returns it)."""
    JOBS_FINISHED.labels(job["kind"], job["status"]).inc()
    duration = _seconds(job["started_at"], job["finished_at"])
    if duration is not None:
        JOB_DURATION.labels(job["kind"], job["status"]).observe(duration)


def stage_finished(kind: str, stage: str, status: str, seconds: float) -> None:
    STAGE_DURATION.labels(kind, stage, status).observe(seconds)


# -- providers (OCR, LLM, SMS, push, email, webhooks: any outbound call) ----------------

PROVIDER_CALLS = Counter(
    "conveyor_provider_calls",
    "Calls to outside providers, by outcome (ok, error, throttled, timeout)",
    ["provider", "outcome"],
)
PROVIDER_CALL_DURATION = Histogram(
    "conveyor_provider_call_duration_seconds",
    "Latency of calls to outside providers",
    ["provider"],
    buckets=(*HTTP_BUCKETS, 30, 60),
)


def record_provider_call(provider: str, outcome: str, seconds: float | None = None) -> None:
    """Count one call to `provider` (e.g. "textract", "openai", "twilio"); `outcome` is a
    small fixed word such as "ok", "error", "throttled" or "timeout"."""
    PROVIDER_CALLS.labels(provider, outcome).inc()
    if seconds is not None:
        PROVIDER_CALL_DURATION.labels(provider).observe(seconds)


# -- HTTP (the API) ------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "conveyor_http_requests", "Requests answered, by route template and status code", ["method", "route", "code"]
)
HTTP_DURATION = Histogram(
    "conveyor_http_request_duration_seconds",
    "Time to answer a request (to the first byte of streams)",
    ["method", "route"],
    buckets=HTTP_BUCKETS,
)


def http_request(method: str, route: str, code: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(code)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


# -- replicas (the read-replica router's lag and routing) ---------------------------------

DB_READS = Counter(
    "conveyor_db_reads_total",
    "Read-only units of work, by the database that served them.",
    ["role", "database"],
)
DB_READ_FALLBACKS = Counter(
    "conveyor_db_read_fallbacks_total",
    "Reads sent to the primary although replicas are configured, by why.",
    ["reason"],
)
DB_REPLICA_LAG_BYTES = Gauge(
    "conveyor_db_replica_lag_bytes",
    "WAL bytes the replica has yet to replay, as of its last probe.",
    ["database"],
    multiprocess_mode="max",
)
DB_REPLICA_HEALTHY = Gauge(
    "conveyor_db_replica_healthy",
    "1 while the replica takes reads, 0 while it is quarantined.",
    ["database"],
    multiprocess_mode="min",
)


# -- queue state, read from Redis at scrape ----------------------------------------------


async def queue_families(redis: Redis, settings: Settings) -> list[GaugeMetricFamily]:
    workers = await monitoring.live_workers(redis)
    states = await monitoring.queue_states(redis, settings, workers)
    families = {
        "queued": GaugeMetricFamily(
            "conveyor_queue_depth", "Jobs queued: due and waiting for a worker", labels=["queue"]
        ),
        "scheduled": GaugeMetricFamily(
            "conveyor_queue_scheduled", "Jobs due later (send_at, retry backoff)", labels=["queue"]
        ),
        "oldest_age": GaugeMetricFamily(
            "conveyor_queue_oldest_age_seconds", "Age of the oldest queued job", labels=["queue"]
        ),
    }
    for state in states:
        for field, family in families.items():
            family.add_metric([state.name], getattr(state, field))
    alive = GaugeMetricFamily("conveyor_workers_alive", "Workers with a fresh heartbeat")
    alive.add_metric([], len(workers))
    return [*families.values(), alive]


class _Families:
    """A collector of metric families read beforehand (collectors cannot await)."""

    def __init__(self, families: Iterable) -> None:
        self.families = list(families)

    def collect(self):
        return iter(self.families)


# -- exposition ----------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's on the host in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


async def exposition(redis: Redis, settings: Settings) -> bytes:
    """The text /metrics answers: counted metrics plus queue state read now. Redis being
    down leaves the queue state out rather than failing the scrape."""
    try:
        live = CollectorRegistry(auto_describe=False)
        live.register(_Families(await queue_families(redis, settings)))
        queues = generate_latest(live)
    except (RedisError, OSError) as exc:
        log.warning("queue state left out of the scrape", error=type(exc).__name__)
        queues = b""
    return generate_latest(process_registry()) + queues


def serve_worker_metrics(port: int):
    """The worker's own /metrics on `port`. With several workers on a host in multiprocess
    mode only the first binds it, and serves them all."""
    try:
        server, thread = start_http_server(port, registry=process_registry())
    except OSError as exc:
        log.warning("worker metrics port unavailable", port=port, error=str(exc))
        return None
    return server, thread
