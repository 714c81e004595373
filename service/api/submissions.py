"""Accepting work: the one path every POST that creates a job goes through.

Order matters for the contract's guarantee that a 202 is never lost: the input is stored
durably first, then the job is recorded in the ledger, then it is handed to arq. If Redis
is down at that point the job is still accepted: the reconciler enqueues it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from service import ledger, queue
from service.api import idempotency
from service.api.auth import authenticate
from service.api.problems import Problem
from service.api.uploads import receive_upload
from service.api.validation import parse_callback_url, parse_metadata
from service.config import Settings
from service.jobs import KindSpec, new_job
from service.ledger.job_inserts import JobInserts, tracked
from service.ledger.tenants import Tenant
from service.ledger.views import job_location, job_view
from service.queue.backlog import Backlog
from service.storage import job_prefix
from service.telemetry import tracing


@dataclass
class JobSpec:
    """What a route decided the job is, once it has read and validated the request."""

    fingerprint: str
    payload: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    callback_url: str | None = None
    run_at: datetime | None = None
    priority: int = queue.PRIORITIES["normal"]
    discard: Callable[[], Awaitable[None]] | None = None  # undo stored input if not accepted
    kind: KindSpec | None = None  # when the request names its kind (POST /v1/jobs)
    max_tries: int | None = None  # the job's own, over its kind's
    timeout: float | None = None
    concurrency_key: str | None = None


Reader = Callable[[uuid.UUID], Awaitable[JobSpec]]
FieldParser = Callable[[dict[str, str]], dict]
#: Judges where a `callback_url` points (the SSRF check, which lives with the routes): 422 if refused.
CallbackCheck = Callable[[str, list[str]], Awaitable[None]]


def accepted(row, *, replayed: bool = False) -> JSONResponse:
    headers = {"Location": job_location(row["id"]), "Retry-After": "1"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job_view(row), status_code=202, headers=headers)


def kind_spec(request: Request, name: str) -> KindSpec:
    """The declared rules of kind `name` (tries, timeout, queue), as the API was started with them."""
    return request.app.state.kinds[name]


async def submit(request: Request, tenant: Tenant, read: Reader, *, kind: KindSpec | None = None) -> JSONResponse:
    """Accept a job of `kind` (or of the kind the request names, `JobSpec.kind`): read the
    request (`read`), record the job, hand it to arq."""
    state = request.app.state
    key = request.headers.get("idempotency-key")
    prior = None
    if key is not None:
        idempotency.validate_key(key)
        prior = await idempotency.claim(state.db, tenant.id, key)
    job_id = ledger.new_job_id()
    spec: JobSpec | None = None
    created = None
    try:
        spec = await read(job_id)
        if prior is not None:
            idempotency.check_replay(prior, spec.fingerprint)
            async with state.db.read(follow=(f"job:{prior.job_id}",)) as conn:
                created = await ledger.get_job(conn, tenant.id, prior.job_id) if prior.job_id else None
            if created is None:
                raise Problem(422, "the job this Idempotency-Key created no longer exists", type="idempotency-mismatch")
            return accepted(created, replayed=True)
        kind = spec.kind or kind
        assert kind is not None, "a job's kind comes from the route or the request"
        created, queued_before = await record_job(
            state.inserts,
            state.backlog,
            state.settings,
            tenant.id,
            job_id,
            spec,
            kind=kind,
            traceparent=tracing.traceparent_for_job(request.headers.get("traceparent")),
            idempotency_key=key,
        )
    finally:
        if prior is not None or created is None:
            if spec is not None and spec.discard is not None:
                await spec.discard()
        if key is not None and prior is None and created is None:
            await idempotency.release(state.db, tenant.id, key)
    with tracing.span("enqueue", attributes={"conveyor.queue": created["queue"], "conveyor.kind": created["kind"]}):
        await hand_off(state.enqueuer, created, backlog=queued_before)
    return accepted(created)


async def record_job(
    inserts: JobInserts,
    backlog: Backlog,
    settings: Settings,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    spec: JobSpec,
    *,
    kind: KindSpec,
    traceparent: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[asyncpg.Record, int]:
    """Record an accepted job in the ledger, within its tenant's quota of queued jobs (429
    past it), with its Idempotency-Key in the same transaction (without one, in an INSERT
    shared with concurrent requests). Returns the job and how many of the tenant's jobs
    were queued before it (for fair ordering in the queue).

    Shared by the API and the queue benchmark, so the benchmark measures the real path.
    """
    quota = settings.tenant_max_queued_jobs
    queued_before = await backlog.admit(tenant_id, quota)
    if queued_before is None:
        raise over_quota(quota)
    job = spec_job(spec, kind, tenant_id, job_id=job_id, traceparent=traceparent)
    try:
        if idempotency_key is None:
            created = await inserts.insert(job)
        else:
            async with inserts.db.transaction(track=tracked(job)) as conn:
                created = (await ledger.create_jobs(conn, [job]))[job_id]
                await idempotency.record(conn, tenant_id, idempotency_key, spec.fingerprint, job_id)
    except BaseException:
        await backlog.withdraw(tenant_id)
        raise
    return created, queued_before


def over_quota(quota: int) -> Problem:
    return Problem(
        429,
        f"this tenant already has {quota} queued jobs; retry when some have run",
        type="quota-exceeded",
        headers={"Retry-After": "30"},
    )


def spec_job(
    spec: JobSpec,
    kind: KindSpec,
    tenant_id: uuid.UUID,
    *,
    job_id: uuid.UUID | None = None,
    traceparent: str | None = None,
) -> ledger.NewJob:
    """The ledger job a route's `spec` describes."""
    return new_job(
        kind,
        tenant_id,
        job_id=job_id,
        priority=spec.priority,
        payload=spec.payload,
        metadata=spec.metadata,
        callback_url=spec.callback_url,
        run_at=spec.run_at,
        traceparent=traceparent,
        max_tries=spec.max_tries,
        timeout=spec.timeout,
        concurrency_key=spec.concurrency_key,
    )


async def submit_many(request: Request, tenant: Tenant, specs: Sequence[JobSpec], fingerprint: str) -> JSONResponse:
    """Accept jobs submitted together, all or nothing: one admission to the tenant's quota,
    one INSERT, one hand-off to arq; `202 {items: [Job…]}` in their order. An
    Idempotency-Key keeps the answer, so a replay gets the same jobs and creates none."""
    state = request.app.state
    quota = state.settings.tenant_max_queued_jobs
    queued_before = await state.backlog.admit_batch(tenant.id, quota, len(specs))
    if queued_before is None:
        raise over_quota(quota)
    traceparent = tracing.traceparent_for_job(request.headers.get("traceparent"))
    jobs = []
    for spec in specs:
        assert spec.kind is not None, "a batch's jobs name their kinds"
        jobs.append(spec_job(spec, spec.kind, tenant.id, traceparent=traceparent))
    created: list[asyncpg.Record] = []

    async def record(conn: asyncpg.Connection) -> idempotency.Answer:
        rows = await ledger.create_jobs(conn, jobs)
        created.extend(rows[job.job_id] for job in jobs)
        return 202, {"items": [job_view(row) for row in created]}, {}

    try:
        response = await idempotency.answer_once(
            request, tenant.id, fingerprint, record, track=(f"tenant:{tenant.id}",)
        )
    finally:
        if not created:  # refused, failed, or a replay: none of them counts as queued
            await state.backlog.withdraw(tenant.id, len(specs))
    with tracing.span("enqueue", attributes={"conveyor.jobs": len(created)}):
        await state.enqueuer.enqueue_many(
            [handoff_args(row, backlog=queued_before + index) for index, row in enumerate(created)]
        )
    return response


def handoff_args(job: asyncpg.Record, *, backlog: int = 0) -> dict:
    """`service.queue.handoff`'s arguments for a recorded job."""
    return {
        "job_id": str(job["id"]),
        "kind": job["kind"],
        "queue": job["queue"],
        "priority": job["priority"],
        "run_at": job["run_at"],
        "backlog": backlog,
    }


async def hand_off(enqueuer: queue.Enqueuer, job: asyncpg.Record, *, backlog: int = 0) -> bool:
    """Give a recorded job to arq (behind `backlog` queued jobs of its tenant, for fairness);
    if Redis is down the reconciler does it later."""
    return await enqueuer.enqueue(**handoff_args(job, backlog=backlog))


def input_key(tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """Generated, inside the tenant's prefix; the client's file name never becomes a path."""
    return job_prefix(tenant_id, job_id) + "original"


async def submit_upload(
    request: Request,
    *,
    kind: KindSpec,
    accept: frozenset[str],
    check_callback: CallbackCheck,
    parse_fields: FieldParser | None = None,
) -> JSONResponse:
    """A route that takes one file for a job of `kind`: stream it to storage (judged from
    its bytes), check the form fields (`parse_fields` adds the kind's own to the payload;
    `check_callback` judges where a `callback_url` points), then `submit`."""
    tenant = await authenticate(request)
    storage = request.app.state.storage
    limit = request.app.state.settings.upload_limit(kind.name)

    async def read(job_id: uuid.UUID) -> JobSpec:
        key = input_key(tenant.id, job_id)
        upload = await receive_upload(request, storage, key=key, limit=limit, accept=accept)
        try:
            fields = upload.fields
            spec = JobSpec(
                fingerprint=upload.fingerprint(kind.name),
                metadata=parse_metadata(fields.get("metadata")),
                callback_url=parse_callback_url(fields.get("callback_url")),
                discard=lambda: storage.delete(key),
            )
            spec.payload = {
                "input": {
                    "key": key,
                    "size": upload.size,
                    "sha256": upload.sha256,
                    "content_type": upload.content_type,
                    "filename": upload.filename,
                },
                **(parse_fields(fields) if parse_fields else {}),
            }
            if spec.callback_url:
                await check_callback(spec.callback_url, request.app.state.settings.callback_allowed_hosts)
        except BaseException:
            await storage.delete(key)  # refused fields: the stored file must not linger
            raise
        return spec

    return await submit(request, tenant, read, kind=kind)
