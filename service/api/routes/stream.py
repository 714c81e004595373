"""A job's live events over Server-Sent Events, and the tokens browsers use to open them.

Workers write status, stage and progress changes to a Redis stream per job
(`service.queue.events`); this endpoint relays it with `XREAD BLOCK`, so each change reaches
the client as it happens. Event ids are the stream's ids: they increase, and a reconnect
with `Last-Event-ID` resumes right after the last one seen. The stream ends with the
job's final status event.

The ledger is read at connect (404, and whether the job has already ended), when a
final status arrives (it might be an earlier run of a job retried since), and once per
idle `IDLE_CHECK_SECONDS` as a safety net: events are best effort, so an ending lost
while Redis was away must still end the stream.

A quiet job's stream stays open: each `XREAD` blocks for less than the Redis client's
socket timeout (a longer block reads as a dead connection and ended the stream), and a
`: ping` comment goes out every EVENT_STREAM_KEEPALIVE_SECONDS so proxies keep it too.

`EventSource` cannot send `Authorization`; `POST …/events/token` gives a short-lived
token for one job, accepted as `?token=` on this endpoint only.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse

from service import ledger, queue
from service.api.auth import authenticate
from service.api.openapi import COMMON_ERRORS, JOB_ID, problem
from service.api.problems import Problem
from service.api.routes.jobs import follow, not_found, path_job_id
from service.ledger.signing import InvalidToken, Signer
from service.queue import events

TOKEN_TTL_SECONDS = 300
IDLE_CHECK_SECONDS = 15.0
READ_BLOCK_MS = int(queue.SOCKET_TIMEOUT_SECONDS * 1000 / 2)
READ_COUNT = 100
EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


async def token_signer(request: Request) -> Signer:
    return await request.app.state.signing_keys.signer("job-events-token")


async def create_token(request: Request) -> JSONResponse:
    tenant = await authenticate(request)
    job_id = path_job_id(request)
    await _job(request, tenant.id, job_id)
    token, expires = (await token_signer(request)).sign(str(job_id), str(tenant.id), ttl=TOKEN_TTL_SECONDS)
    expires_at = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    return JSONResponse(
        {"token": token, "expires_at": expires_at}, status_code=201, headers={"Cache-Control": "no-store"}
    )


async def _job(request: Request, tenant_id: uuid.UUID, job_id: uuid.UUID):
    async with request.app.state.db.read(follow=follow(tenant_id, job_id)) as conn:
        row = await ledger.get_job(conn, tenant_id, job_id)
    if row is None:
        raise not_found()
    return row


async def _caller(request: Request, job_id: uuid.UUID) -> uuid.UUID:
    """The tenant the stream is for: from the API key, else from a token for this job."""
    token = request.query_params.get("token")
    if token is None or request.headers.get("authorization"):
        return (await authenticate(request)).id
    try:
        token_job, tenant_id = (await token_signer(request)).verify(token)
    except InvalidToken as exc:
        raise Problem(401, exc.message, type=exc.type) from None
    if token_job != str(job_id):
        raise Problem(403, "this token is for another job", type="token-wrong-job")
    return uuid.UUID(tenant_id)


def last_event_id(request: Request) -> str | None:
    value = request.headers.get("last-event-id", "").strip()
    if not value:
        return None
    if not EVENT_ID.match(value):
        raise Problem(
            400, "Last-Event-ID must be an id this stream sent (like 1712345678901-0)", type="bad-last-event-id"
        )
    return value


async def job_events(request: Request) -> EventSourceResponse:
    job_id = path_job_id(request)
    tenant_id = await _caller(request, job_id)
    last_id = last_event_id(request)
    row = await _job(request, tenant_id, job_id)
    relay = EventRelay(request.app.state, tenant_id, row, last_id)
    ping = request.app.state.settings.event_stream_keepalive_seconds
    return EventSourceResponse(
        relay.events(), ping=ping, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _final(event: dict) -> bool:
    return event.get("type") == "status" and event.get("status") in ledger.FINISHED


def _snapshot(row) -> ServerSentEvent:
    """The job as the ledger has it, for a client with no history to replay (no id:
    it is not a stream entry, so it does not move the client's Last-Event-ID)."""
    data = {
        "type": "status",
        "job_id": str(row["id"]),
        "status": row["status"],
        "stage": row["stage"],
        "progress": round(float(row["progress"]), 4),
    }
    if row["error"]:
        data["error"] = row["error"]
    return ServerSentEvent(data=json.dumps(data), event="status")


class EventRelay:
    """One stream's events relayed (a job's; a subclass reads another ledger row)."""

    def __init__(self, state, tenant_id: uuid.UUID, row, last_id: str | None) -> None:
        self.state = state
        self.tenant_id = tenant_id
        self.row = row
        self.job_id: uuid.UUID = row["id"]
        self.key = events.stream_key(self.job_id)
        self.cursor = last_id or "0-0"
        self.resuming = last_id is not None
        self.floor: float | None = None  # the snapshot's progress, while older events may follow it

    async def _ledger_row(self):
        async with self.state.db.read(follow=follow(self.tenant_id, self.job_id)) as conn:
            return await ledger.get_job(conn, self.tenant_id, self.job_id)

    def _snapshot(self, row) -> ServerSentEvent:
        return _snapshot(row)

    async def _read(self, block_ms: int | None) -> list[tuple[str, dict]]:
        answer = await self.state.redis.xread({self.key: self.cursor}, count=READ_COUNT, block=block_ms)
        entries = []
        for entry_id, fields in answer[0][1] if answer else ():
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            entries.append((entry_id, json.loads(fields[b"data"])))
        return entries

    async def _backlog(self) -> AsyncIterator[tuple[str, dict]]:
        while entries := await self._read(None):
            for entry in entries:
                self.cursor = entry[0]
                yield entry

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in self._relay():
                yield event
        except RedisError:
            return  # the client reconnects with Last-Event-ID and resumes

    def _not_behind(self, event: dict) -> dict:
        """A worker writes the ledger first and its events a moment later, so a snapshot
        may be newer than the events that follow it: their progress is raised to the
        snapshot's, and a client never sees it go back. A status other than `running`
        (a retry rightly lowers the progress; an ending) lifts that floor."""
        if self.floor is None:
            return event
        if event.get("type") == "status" and event.get("status") != "running":
            self.floor = None
            return event
        progress = event.get("progress")
        if isinstance(progress, int | float) and progress < self.floor:
            return {**event, "progress": round(float(self.floor), 4)}
        return event

    async def _relay(self) -> AsyncIterator[ServerSentEvent]:
        ended = self.row["status"] in ledger.FINISHED
        replayed_final = False
        sent_any = False
        async for entry_id, event in self._backlog():
            sent_any = True
            replayed_final = _final(event)
            yield ServerSentEvent(data=json.dumps(event), event=event.get("type"), id=entry_id)
        if ended:
            if not replayed_final:
                yield self._snapshot(self.row)
            return
        if not sent_any and not self.resuming:
            yield self._snapshot(self.row)
            self.floor = self.row.get("progress")
        clock = asyncio.get_running_loop().time
        checked_at = clock()
        while True:
            entries = await self._read(READ_BLOCK_MS)
            if not entries:
                if clock() - checked_at < IDLE_CHECK_SECONDS:
                    continue
                checked_at = clock()
                row = await self._ledger_row()
                if row is None or row["status"] in ledger.FINISHED:
                    async for entry_id, event in self._backlog():
                        yield ServerSentEvent(data=json.dumps(event), event=event.get("type"), id=entry_id)
                    if row is not None:
                        yield self._snapshot(row)
                    return
                continue
            for entry_id, event in entries:
                self.cursor = entry_id
                event = self._not_behind(event)
                yield ServerSentEvent(data=json.dumps(event), event=event.get("type"), id=entry_id)
                if _final(event):
                    row = await self._ledger_row()
                    if row is None or row["status"] in ledger.FINISHED:
                        return


_RESPONSES = {"404": problem("Unknown job, or another tenant's"), **COMMON_ERRORS}
OPENAPI_PATHS = {
    "/v1/jobs/{job_id}/events": {
        "get": {
            "summary": "The job's status, stage and progress changes as Server-Sent Events, ending with the job",
            "description": "Authenticate with the API key, or with `?token=` from POST …/events/token (browsers). "
            "Send Last-Event-ID to resume after the last event seen.",
            "parameters": [
                JOB_ID,
                {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "An event stream (events `status`, `stage`, `progress`; JSON data)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "403": problem("The token is for another job"),
                **_RESPONSES,
            },
        }
    },
    "/v1/jobs/{job_id}/events/token": {
        "post": {
            "summary": "A short-lived token that opens this job's event stream (for EventSource)",
            "parameters": [JOB_ID],
            "responses": {
                "201": {
                    "description": "The token",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["token", "expires_at"],
                                "properties": {
                                    "token": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                },
                            }
                        }
                    },
                },
                **_RESPONSES,
            },
        }
    },
}
