"""Workflows in the ledger: steps of ordinary jobs, each started when the steps it comes
after have succeeded, decided in PostgreSQL in the transaction that ends a job.

Every transaction that changes a workflow locks its row first (after the job rows it
ends, which the ending statement locks): the workflow's steps change one transaction at
a time, so a step whose parents end together on different workers starts once, and the
workflow's status, computed last from its steps, is never computed from a stale view.
A finishing job triggers its dependents; nothing polls. What a change makes (jobs to
hand to arq, events, callback deliveries) is collected in an `Advance` for the caller
to act on once the transaction committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import asyncpg

from service import jobs, ledger, queue
from service.ledger import callbacks, workflow_rows
from service.ledger.workflow_refs import FROM, Unresolved, fanout_error, refs, resolve
from service.queue import events

WORKFLOW_COLUMNS = workflow_rows.WORKFLOW_COLUMNS
UNFINISHED_STEPS = ("waiting", "running")


@dataclass(frozen=True)
class NewStep:
    """A step as the API judged it: its kind's spec decides its jobs' queue and tries."""

    name: str
    kind: jobs.KindSpec
    input: dict
    after: Sequence[str] = ()
    for_each: dict | None = None


class Cancelled(Exception):
    """A job of a cancelled workflow was to run again: the workflow stays cancelled."""

    def __init__(self, workflow_id: uuid.UUID) -> None:
        super().__init__(f"workflow {workflow_id} was cancelled")
        self.workflow_id = workflow_id


@dataclass
class Advance:
    """What a transaction did to workflows, to act on after it commits."""

    jobs: list[asyncpg.Record] = field(default_factory=list)
    events: list[tuple[uuid.UUID, dict]] = field(default_factory=list)
    callbacks: list[asyncpg.Record] = field(default_factory=list)

    async def publish(self, redis) -> None:
        """Hand the new jobs to arq, their callbacks too, and say what changed (best effort:
        the reconciler hands over what Redis missed)."""
        if self.jobs or self.callbacks:
            await jobs.enqueue_many(redis, [*self.jobs, *self.callbacks])
        if self.events:
            await events.publish_many(redis, self.events)


async def _row(conn: asyncpg.Connection, query: str, *args) -> asyncpg.Record:
    """The row a statement that always returns one returns."""
    row = await conn.fetchrow(query, *args)
    assert row is not None, query
    return row


def step_event(step: asyncpg.Record, status: str | None = None) -> dict:
    return {
        "type": "step",
        "step": step["name"],
        "status": status or step["status"],
        "jobs": [str(job_id) for job_id in step["job_ids"]],
    }


async def create(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    steps: Sequence[NewStep],
    *,
    metadata: dict | None,
    callback_url: str | None,
    kinds: jobs.Kinds,
    max_fanout: int,
) -> tuple[asyncpg.Record, Advance]:
    """Record a workflow and its steps, and start the steps that come after none (a
    for_each step makes at most `max_fanout` jobs: past it, it fails)."""
    workflow = await _row(
        conn,
        f"""
        INSERT INTO workflows (id, tenant_id, status, metadata, callback_url) VALUES ($1, $2, 'running', $3, $4)
        RETURNING {WORKFLOW_COLUMNS}
        """,
        uuid.uuid4(),
        tenant_id,
        metadata or {},
        callback_url,
    )
    await conn.executemany(
        """
        INSERT INTO workflow_steps (workflow_id, name, position, kind, spec, input, after, for_each, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'waiting')
        """,
        [
            (
                workflow["id"],
                step.name,
                position,
                step.kind.name,
                asdict(step.kind),
                step.input,
                list(step.after),
                step.for_each,
            )
            for position, step in enumerate(steps)
        ],
    )
    advance = Advance()
    for step in steps:
        if not step.after:
            await _start(conn, workflow, await _step(conn, workflow["id"], step.name), advance, max_fanout)
    return await _settle(conn, workflow, kinds, advance), advance


async def jobs_ended(
    conn: asyncpg.Connection, rows: Iterable[asyncpg.Record], kinds: jobs.Kinds, *, max_fanout: int
) -> Advance:
    """Count ended jobs (rows just ended in `conn`'s transaction; others are passed over) against their steps: a
    step whose last job ended ends, and the steps after it start or are cancelled."""
    advance = Advance()
    for workflow_id, ended in _by_workflow(row for row in rows if row["status"] in ledger.FINISHED):
        workflow = await _lock(conn, workflow_id)
        changes = len(advance.events)
        for row in ended:
            remaining = await conn.fetchval(  # not the whole row: a fan-out's job ids are many
                """
                UPDATE workflow_steps SET remaining = remaining - 1, failed = failed + $3::int
                WHERE workflow_id = $1 AND name = $2 AND status = 'running' AND remaining > 0
                RETURNING remaining
                """,
                workflow_id,
                row["workflow_step"],
                int(row["status"] == "failed"),
            )
            if remaining == 0:
                step = await _step(conn, workflow_id, row["workflow_step"])
                await _end(conn, workflow, step, advance, max_fanout)
        if len(advance.events) > changes:  # a step changed (each change is an event)
            await _settle(conn, workflow, kinds, advance)
    return advance


async def jobs_retried(conn: asyncpg.Connection, rows: Iterable[asyncpg.Record], kinds: jobs.Kinds) -> Advance:
    """Jobs queued again (a failed step's, through the jobs API): their steps run again,
    counted afresh from their jobs, and the steps their failure cancelled wait again.
    `Cancelled` if one of their workflows was cancelled: it stays so (roll back)."""
    advance = Advance()
    for workflow_id, retried in _by_workflow(rows):
        workflow = await _lock(conn, workflow_id)
        if workflow["cancel_requested"]:
            raise Cancelled(workflow_id)
        for name in sorted({row["workflow_step"] for row in retried}):
            step = await _row(
                conn,
                """
                UPDATE workflow_steps s SET status = 'running', cascaded = false, error = NULL,
                    remaining = (SELECT count(*) FROM jobs j WHERE j.id = ANY(s.job_ids) AND j.status IN ('queued', 'running')),
                    failed = (SELECT count(*) FROM jobs j WHERE j.id = ANY(s.job_ids) AND j.status = 'failed')
                WHERE workflow_id = $1 AND name = $2 RETURNING *
                """,
                workflow_id,
                name,
            )
            advance.events.append((workflow_id, step_event(step)))
            for revived in await conn.fetch(
                f"""
                WITH RECURSIVE {_DESCENDANTS}
                UPDATE workflow_steps SET status = 'waiting', cascaded = false
                WHERE workflow_id = $1 AND name IN (SELECT name FROM d) AND cascaded RETURNING *
                """,
                workflow_id,
                name,
            ):
                advance.events.append((workflow_id, step_event(revived)))
        await _settle(conn, workflow, kinds, advance)
    return advance


async def request_cancel(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, workflow_id: uuid.UUID, kinds: jobs.Kinds
) -> tuple[asyncpg.Record | None, list[uuid.UUID], Advance]:
    """Start no more steps of the workflow and cancel those waiting; the ids of its jobs
    still to cancel (the caller cancels them after this commits, each ending its step)."""
    advance = Advance()
    workflow = await conn.fetchrow(
        f"""
        UPDATE workflows SET cancel_requested = true, updated_at = now() WHERE id = $1 AND tenant_id = $2
        RETURNING {WORKFLOW_COLUMNS}
        """,
        workflow_id,
        tenant_id,
    )
    if workflow is None:
        return None, [], advance
    for step in await conn.fetch(
        "UPDATE workflow_steps SET status = 'cancelled' WHERE workflow_id = $1 AND status = 'waiting' RETURNING *",
        workflow_id,
    ):
        advance.events.append((workflow_id, step_event(step)))
    unfinished = await conn.fetch(
        "SELECT id FROM jobs WHERE workflow_id = $1 AND status IN ('queued', 'running')", workflow_id
    )
    return await _settle(conn, workflow, kinds, advance), [row["id"] for row in unfinished], advance


def _by_workflow(rows: Iterable[asyncpg.Record]) -> list[tuple[uuid.UUID, list[asyncpg.Record]]]:
    """Workflow jobs grouped by workflow, the workflows in id order (the order they are locked in)."""
    grouped: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for row in rows:
        if row["workflow_id"] is not None:
            grouped.setdefault(row["workflow_id"], []).append(row)
    return sorted(grouped.items())


async def _lock(conn: asyncpg.Connection, workflow_id: uuid.UUID) -> asyncpg.Record:
    return await _row(conn, f"SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1 FOR NO KEY UPDATE", workflow_id)


async def _step(conn: asyncpg.Connection, workflow_id: uuid.UUID, name: str) -> asyncpg.Record:
    return await _row(
        conn, "SELECT * FROM workflow_steps WHERE workflow_id = $1 AND name = $2 FOR UPDATE", workflow_id, name
    )


# The steps after step $2 of workflow $1, directly or not, as the relation `d`.
_DESCENDANTS = """
    d(name) AS (
        SELECT name FROM workflow_steps WHERE workflow_id = $1 AND $2 = ANY(after)
        UNION SELECT s.name FROM workflow_steps s JOIN d ON d.name = ANY(s.after) WHERE s.workflow_id = $1
    )
"""


async def _end(
    conn: asyncpg.Connection, workflow, step: asyncpg.Record, advance: Advance, max_fanout: int, error=None
) -> None:
    """A step's last job ended (or it could not start, `error`): it ends, and so do or start the steps after it."""
    workflow_id, name = workflow["id"], step["name"]
    cancelled = await conn.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'cancelled'", step["job_ids"]
    )
    if error is not None or (step["failed"] and not workflow["cancel_requested"]):
        status = "failed"
    elif step["failed"] or cancelled:
        status = "cancelled"
    else:
        status = "succeeded"
    ended = await _row(
        conn,
        "UPDATE workflow_steps SET status = $3, error = $4 WHERE workflow_id = $1 AND name = $2 RETURNING *",
        workflow_id,
        name,
        status,
        error,
    )
    advance.events.append((workflow_id, step_event(ended)))
    if status != "succeeded":
        for descendant in await conn.fetch(
            f"""
            WITH RECURSIVE {_DESCENDANTS}
            UPDATE workflow_steps SET status = 'cancelled', cascaded = true
            WHERE workflow_id = $1 AND name IN (SELECT name FROM d) AND status = 'waiting' RETURNING *
            """,
            workflow_id,
            name,
        ):
            advance.events.append((workflow_id, step_event(descendant)))
        return
    if workflow["cancel_requested"]:
        return
    for child in await conn.fetch(
        """
        SELECT * FROM workflow_steps WHERE workflow_id = $1 AND $2 = ANY(after) AND status = 'waiting'
        ORDER BY name FOR UPDATE
        """,
        workflow_id,
        name,
    ):
        ready = await conn.fetchval(
            "SELECT bool_and(status = 'succeeded') FROM workflow_steps WHERE workflow_id = $1 AND name = ANY($2::text[])",
            workflow_id,
            child["after"],
        )
        if ready:
            await _start(conn, workflow, child, advance, max_fanout)


async def _start(conn: asyncpg.Connection, workflow, step: asyncpg.Record, advance: Advance, max_fanout: int) -> None:
    """Create a waiting step's jobs from its input, REFs resolved (one job per element of
    its `for_each`, at most `max_fanout`); a step with nothing to do ends at once."""
    named = {ref[FROM] for _, ref in refs([step["input"], step["for_each"]])}
    results = {name: await workflow_rows.step_result(conn, workflow["id"], name) for name in sorted(named)}
    try:
        payload = resolve(step["input"], results)
        items = resolve(step["for_each"], results) if step["for_each"] is not None else None
    except Unresolved as exc:
        await _end(conn, workflow, step, advance, max_fanout, {"type": "unresolved_ref", "message": str(exc)})
        return
    if error := fanout_error(items, max_fanout):
        await _end(conn, workflow, step, advance, max_fanout, error)
        return
    payloads = [payload] if items is None else [{**payload, "item": item} for item in items]
    spec = jobs.KindSpec(**step["spec"])
    new = [
        jobs.new_job(spec, workflow["tenant_id"], payload=body, workflow=(workflow["id"], step["name"]))
        for body in payloads
    ]
    created = await ledger.create_jobs(conn, new)
    advance.jobs.extend(created[job.job_id] for job in new)
    started = await _row(
        conn,
        """
        UPDATE workflow_steps SET status = 'running', remaining = $3, failed = 0, job_ids = $4
        WHERE workflow_id = $1 AND name = $2 RETURNING *
        """,
        workflow["id"],
        step["name"],
        len(new),
        [job.job_id for job in new],
    )
    advance.events.append((workflow["id"], step_event(started)))
    if not new:
        await _end(conn, workflow, started, advance, max_fanout)


async def _settle(conn: asyncpg.Connection, workflow, kinds: jobs.Kinds, advance: Advance) -> asyncpg.Record:
    """The workflow's status from its steps' (in this transaction, which holds its row):
    running while a step waits or runs, else failed, cancelled or succeeded. A status that
    changed is an event, and an ending is delivered to its callback_url."""
    settled = await _row(
        conn,
        f"""
        WITH s AS (
            SELECT CASE WHEN bool_or(status IN ('waiting', 'running')) THEN 'running'
                        WHEN bool_or(status = 'failed') THEN 'failed'
                        WHEN bool_or(status = 'cancelled') THEN 'cancelled'
                        ELSE 'succeeded' END AS status
            FROM workflow_steps WHERE workflow_id = $1
        )
        UPDATE workflows w SET status = s.status, updated_at = now(),
            finished_at = CASE WHEN s.status = 'running' THEN NULL ELSE coalesce(w.finished_at, now()) END
        FROM s WHERE w.id = $1 RETURNING {", ".join(f"w.{column.strip()}" for column in WORKFLOW_COLUMNS.split(","))}
        """,
        workflow["id"],
    )
    if settled["status"] != workflow["status"]:
        advance.events.append(
            (workflow["id"], {"type": "status", "status": settled["status"], "workflow_id": str(workflow["id"])})
        )
        if settled["callback_url"] and settled["status"] in ledger.FINISHED:
            advance.callbacks.append(await _record_callback(conn, settled, kinds))
    return settled


async def _record_callback(conn: asyncpg.Connection, workflow, kinds: jobs.Kinds) -> asyncpg.Record:
    """The workflow's ending as a callback delivery, shaped as a job's (`data.kind` is `workflow`)."""
    payload = {
        "job_id": str(workflow["id"]),
        "kind": "workflow",
        "status": workflow["status"],
        "type": f"workflow.{workflow['status']}",
    }
    delivery = jobs.new_job(
        kinds[callbacks.KIND],
        workflow["tenant_id"],
        payload=payload,
        callback_url=workflow["callback_url"],
        priority=queue.PRIORITIES["high"],
    )
    row = await jobs.create(conn, delivery)
    assert row is not None  # a new id is always recorded
    return row
