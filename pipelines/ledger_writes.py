"""The runner's hot ledger writes, combined across a worker's concurrent jobs.

Every job writes the same four things: its claim, its stage starting, the stage ending and
the job ending. Run one by one, each is a round trip and a commit, and the commits cap a
worker at a few hundred jobs a second; combined (`service.batching`), the jobs that reach
the same write together share one statement and one commit (each write is one statement,
committed by itself: no BEGIN and COMMIT round trips). Fencing is unchanged: each
job's row is only written while its attempt still owns the job, and a job left out of a
batch's answer gets `Fenced`, exactly as the one-job statements raise it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from service import ledger
from service.batching import ON_THE_WAY_IN_FLIGHT, Batcher
from service.databases.database import Database
from service.jobs import Kinds
from service.ledger import callbacks, workflows

#: Errors that sink a whole batch because of one of its items (or another worker): retried one by one.
SPLIT_ON = (asyncpg.PostgresError,)


def _job(write: ledger.StageStart | ledger.StageEnd | ledger.JobEnd) -> uuid.UUID:
    return write.job_id


def _tracked(job_ids: Sequence[uuid.UUID]) -> tuple[str, ...]:
    """What readers of these jobs follow, so a replica serves them only once it has these writes."""
    return tuple(f"job:{job_id}" for job_id in job_ids)


#: A workflow job's end: its row, its callback delivery's, and what it did to workflows.
WorkflowJobEnd = tuple[asyncpg.Record, asyncpg.Record | None, workflows.Advance]


class LedgerWrites:
    def __init__(self, db: Database, worker_id: str) -> None:
        self.db = db
        self.worker_id = worker_id
        self._claims: dict[
            tuple[tuple[str, ...], int | None], Batcher[uuid.UUID, asyncpg.Record | ledger.Waiting | None]
        ] = {}
        self._stage_starts = Batcher(self._start_stages, key=_job, split_on=SPLIT_ON)
        self._stage_ends = Batcher(self._finish_stages, key=_job, split_on=SPLIT_ON)
        self._job_ends = Batcher(self._finish_jobs, key=_job, split_on=SPLIT_ON)
        self._workflow_ends: Batcher[tuple[ledger.JobEnd, Kinds, int], WorkflowJobEnd] = Batcher(
            self._finish_workflow_jobs, key=lambda item: item[0].job_id, split_on=SPLIT_ON
        )

    async def claim(
        self, job_id: uuid.UUID, stage_names: tuple[str, ...], limit: int | None = None
    ) -> asyncpg.Record | ledger.Waiting | None:
        """`ledger.claim` for this worker; None when there is nothing to run. For a kind with
        a concurrency `limit`, a job whose key has no free place is `ledger.Waiting`."""
        batcher = self._claims.get((stage_names, limit))
        if batcher is None:
            batcher = self._claims[(stage_names, limit)] = Batcher(
                functools.partial(self._claim_many, stage_names, limit),
                key=lambda job_id: job_id,
                split_on=SPLIT_ON,
                in_flight=ON_THE_WAY_IN_FLIGHT,
            )
        return await batcher.submit(job_id)

    async def _claim_many(
        self, stage_names: tuple[str, ...], limit: int | None, job_ids: Sequence[uuid.UUID]
    ) -> list[asyncpg.Record | ledger.Waiting | None]:
        async with self.db.write(track=_tracked(job_ids)) as conn:
            rows: Mapping[uuid.UUID, asyncpg.Record | ledger.Waiting]
            if limit is None:
                rows = await ledger.claim_many(conn, job_ids, self.worker_id, stage_names)
            else:
                rows = await ledger.claim_within_limit(conn, job_ids, self.worker_id, stage_names, limit)
        return [rows.get(job_id) for job_id in job_ids]

    async def start_stage(self, start: ledger.StageStart) -> None:
        await self._stage_starts.submit(start)

    async def finish_stage(self, end: ledger.StageEnd) -> None:
        await self._stage_ends.submit(end)

    async def finish_job(self, end: ledger.JobEnd) -> asyncpg.Record:
        """The job's row as it ended; a job with a callback must use `ledger.finish_job` in the
        transaction that records the callback instead."""
        return await self._job_ends.submit(end)

    async def finish_workflow_job(self, end: ledger.JobEnd, kinds: Kinds, max_fanout: int) -> WorkflowJobEnd:
        """`finish_job` for a job of a workflow: ended with others in one transaction that
        records their callbacks and advances their workflows (service/ledger/workflows.py), so a
        fan-out's ends share commits as other jobs' do. The job's row, its callback's, and
        what the batch did to workflows: handed to one of its jobs only, to act on once."""
        return await self._workflow_ends.submit((end, kinds, max_fanout))

    async def _finish_workflow_jobs(
        self, items: Sequence[tuple[ledger.JobEnd, Kinds, int]]
    ) -> list[WorkflowJobEnd | ledger.Fenced]:
        ends, (_, kinds, max_fanout) = [item[0] for item in items], items[0]
        async with self.db.transaction(track=_tracked([end.job_id for end in ends])) as conn:
            rows = await ledger.finish_jobs(conn, ends)
            recorded = {job_id: await callbacks.record(conn, row, kinds) for job_id, row in rows.items()}
            advance = await workflows.jobs_ended(conn, rows.values(), kinds, max_fanout=max_fanout)
        answers: list[WorkflowJobEnd | ledger.Fenced] = []
        for end in ends:
            row = rows.get(end.job_id)
            if row is None:
                answers.append(ledger.fenced(end))
                continue
            answers.append((row, recorded[end.job_id], advance))
            advance = workflows.Advance()
        return answers

    async def _start_stages(self, starts: Sequence[ledger.StageStart]) -> list[ledger.Fenced | None]:
        async with self.db.write() as conn:
            owned = await ledger.start_stages(conn, starts)
        return [_fence(owned, start) for start in starts]

    async def _finish_stages(self, ends: Sequence[ledger.StageEnd]) -> list[ledger.Fenced | None]:
        async with self.db.write() as conn:
            owned = await ledger.finish_stages(conn, ends)
        return [_fence(owned, end) for end in ends]

    async def _finish_jobs(self, ends: Sequence[ledger.JobEnd]) -> list[asyncpg.Record | ledger.Fenced]:
        async with self.db.write(track=_tracked([end.job_id for end in ends])) as conn:
            rows = await ledger.finish_jobs(conn, ends)
        return [rows.get(end.job_id) or ledger.fenced(end) for end in ends]


def _fence(owned: set[uuid.UUID], write: ledger.StageStart | ledger.StageEnd) -> ledger.Fenced | None:
    return None if write.job_id in owned else ledger.fenced(write)
