"""The listener: jobs created inside an app's own transaction (`conveyor_enqueue`, migration
0009) handed to arq the moment that transaction commits.

The function `pg_notify`s `CHANNEL` with the job's id, and PostgreSQL delivers it only
once the transaction commits. Every worker listens on a dedicated connection to the
primary and hands each notified job that is still queued to arq
(`service.jobs.enqueue_many`); ids that arrive while a hand-off is in flight go together
in the next one. Every worker hears every notification, and that is safe: arq's job id is
the ledger id, so handing over a job arq already holds does nothing, and a job that has
already ended is never claimed again.

A lost connection (the server restarted, a failover, `pg_terminate_backend`, a silent
partition noticed by a ping) is made again, with backoff, on whichever host is primary
then. Notifications sent while nobody listened are lost; the reconciler finds those jobs
(queued, unknown to Redis) once they are `RECONCILE_AFTER_SECONDS` old.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import asyncpg
import structlog

from pipelines.resources import Resources
from service import jobs, ledger
from service.batching import MAX_BATCH
from service.databases.pools import CONNECTION_ERRORS
from service.errors import DependencyUnavailable

log = structlog.get_logger("conveyor.listener")

CHANNEL = "conveyor_jobs"  # what conveyor_enqueue notifies
PING_SECONDS = 5.0  # how soon a connection gone silent (no FIN: a partition) is noticed
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 5.0
QUEUED = """
SELECT id, kind, queue, priority, run_at FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'queued'
"""


class Listener:
    """One worker's LISTEN on `CHANNEL`, and the hand-off of what it hears."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._heard: dict[str, None] = {}  # ids not handed over yet, in the order heard
        self._wake = asyncio.Event()  # something heard, or the connection lost

    async def listen_forever(self) -> None:
        retry = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._listen()
                log.warning("listener connection lost; listening again")
                retry = FIRST_RETRY_SECONDS
            except (DependencyUnavailable, asyncpg.PostgresError, *CONNECTION_ERRORS) as exc:
                log.warning("listener cannot listen now", error=type(exc).__name__, retry_in=retry)
                await asyncio.sleep(random.uniform(retry / 2, retry))
                retry = min(retry * 2, LONGEST_RETRY_SECONDS)

    async def _listen(self) -> None:
        """Until the connection is lost: hand over every job heard of."""
        conn = await self.resources.db.dedicated("conveyor-listener")
        try:
            conn.add_termination_listener(lambda _: self._wake.set())
            await conn.add_listener(CHANNEL, self._heard_of)
            while not conn.is_closed():
                try:
                    async with asyncio.timeout(PING_SECONDS):  # not wait_for: on 3.11 it can swallow a cancel
                        await self._wake.wait()
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=PING_SECONDS)
                    continue
                self._wake.clear()
                while self._heard and not conn.is_closed():
                    await self._hand_off(conn)
        finally:
            conn.terminate()

    def _heard_of(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if not isinstance(payload, str) or ledger.parse_job_id(payload) is None:
            log.warning("ignored a notification that is not a job id", payload=str(payload)[:100])
            return
        self._heard[payload] = None
        self._wake.set()

    async def _hand_off(self, conn: asyncpg.Connection) -> None:
        """The oldest ids heard (up to a batch), still queued, to arq in one round trip.
        If the connection breaks first they stay, for the next connection."""
        ids = list(itertools.islice(self._heard, MAX_BATCH))
        rows = await conn.fetch(QUEUED, ids)
        if not await jobs.enqueue_many(self.resources.redis, rows):
            log.warning("notified jobs left to the reconciler: redis unavailable", jobs=len(rows))
        for job_id in ids:
            del self._heard[job_id]
