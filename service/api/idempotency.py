"""Idempotency-Key: the same key and request give the same job, never a second one.

A key is claimed before the request body is read, so a concurrent duplicate sees the
claim and gets 409 while the first is still being accepted. The fingerprint of the
request (fields and file content) is only known once the body has been read; a replay
with another fingerprint is a 422. A claim whose request died is released, and one left
behind by a crashed process is taken over after `STALE_SECONDS`.

POSTs that create no job (analytics events, reminders) keep their answer with the key
instead (`answer_once`), written in the transaction that does the work, so a retried
request is applied once and answered the same.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.api.problems import Problem
from service.databases.database import Database

MAX_KEY_LENGTH = 255
PRIOR = "SELECT request_hash, job_id, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"
STALE_SECONDS = 600


@dataclass(frozen=True)
class PriorRequest:
    fingerprint: str
    job_id: uuid.UUID | None
    response: dict | None = None  # the answer to a POST that created no job


#: What a POST that creates no job answers: status, JSON body, headers.
Answer = tuple[int, dict, dict[str, str]]


def fingerprint(route: str, normalised: object) -> str:
    """Same route and same (normalised) request → same fingerprint."""
    canonical = json.dumps([route, normalised], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters", type="bad-request")


async def claim(db: Database, tenant_id: uuid.UUID, key: str) -> PriorRequest | None:
    """None if this request now owns the key; the earlier request's outcome otherwise."""
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO idempotency_keys AS k (tenant_id, key) VALUES ($1, $2)
            ON CONFLICT (tenant_id, key) DO UPDATE SET created_at = now()
                WHERE k.request_hash IS NULL AND k.created_at < now() - make_interval(secs => $3)
            RETURNING 1
            """,
            tenant_id,
            key,
            STALE_SECONDS,
        )
        if row is not None:
            return None
        prior = await conn.fetchrow(PRIOR, tenant_id, key)
    if prior is None or prior["request_hash"] is None:
        raise Problem(
            409,
            "a request with this Idempotency-Key is still being accepted",
            type="idempotency-in-flight",
            headers={"Retry-After": "1"},
        )
    return PriorRequest(prior["request_hash"], prior["job_id"], prior["response"])


async def release(db: Database, tenant_id: uuid.UUID, key: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND request_hash IS NULL", tenant_id, key
        )


async def record(conn, tenant_id: uuid.UUID, key: str, fingerprint: str, job_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET request_hash = $3, job_id = $4 WHERE tenant_id = $1 AND key = $2",
        tenant_id,
        key,
        fingerprint,
        job_id,
    )


def check_replay(prior: PriorRequest, fingerprint: str) -> None:
    if prior.fingerprint != fingerprint:
        raise Problem(
            422, "this Idempotency-Key was already used with a different request", type="idempotency-mismatch"
        )


async def answer_once(
    request: Request,
    tenant_id: uuid.UUID,
    fingerprint: str,
    act: Callable[[asyncpg.Connection], Awaitable[Answer]],
    *,
    track: Sequence[str] = (),
) -> JSONResponse:
    """`act(conn)` in a transaction, at most once per Idempotency-Key: the answer is kept
    with the key in that transaction, and a replay gets it again (`Idempotent-Replayed`)."""
    db: Database = request.app.state.db
    key = request.headers.get("idempotency-key")
    if key is None:
        async with db.transaction(track=track) as conn:
            status, body, headers = await act(conn)
        return JSONResponse(body, status_code=status, headers=headers)
    validate_key(key)
    prior = await claim(db, tenant_id, key)
    if prior is not None:
        check_replay(prior, fingerprint)
        if prior.response is None:  # the key created a job: this route never does
            raise Problem(
                422, "this Idempotency-Key was already used with a different request", type="idempotency-mismatch"
            )
        answer = prior.response
        return JSONResponse(
            answer["body"], status_code=answer["status"], headers={**answer["headers"], "Idempotent-Replayed": "true"}
        )
    try:
        async with db.transaction(track=track) as conn:
            status, body, headers = await act(conn)
            await conn.execute(
                "UPDATE idempotency_keys SET request_hash = $3, response = $4 WHERE tenant_id = $1 AND key = $2",
                tenant_id,
                key,
                fingerprint,
                {"status": status, "body": body, "headers": headers},
            )
    except BaseException:
        await release(db, tenant_id, key)
        raise
    return JSONResponse(body, status_code=status, headers=headers)
