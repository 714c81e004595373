"""The schedules' clock: the users' schedules (`POST /v1/schedules`) and the built-in
ones (pipelines/schedule.py) turned into jobs when their ticks come, by a background
task of every worker that runs the scheduler.

No poll per schedule: one query finds every due tick of the kinds this worker runs, each
is fired in its own transaction (`service.ledger.schedules.fire`: one job per tick across all
workers, decided in the ledger), and the loop sleeps until the earliest next tick, at most
`LONGEST_SLEEP` seconds so a schedule created or changed meanwhile is seen soon. Jobs
reach Redis after their transaction commits; if Redis is down the reconciler hands them
over later. A worker fires only the kinds it runs: a schedule of a kind no worker runs
waits, and fires once (its missed ticks together) when such a worker starts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from pipelines.resources import Resources
from service import jobs
from service.databases.pools import CONNECTION_ERRORS
from service.errors import DependencyUnavailable
from service.ledger import schedule_times, schedules

log = structlog.get_logger("conveyor.schedules")

LONGEST_SLEEP = 1.0  # seconds
BATCH = 100  # due ticks read at once


async def fire_forever(resources: Resources, kinds: jobs.Kinds) -> None:
    """Fire the schedules of `kinds` (those this worker runs, with their specs) forever."""
    while True:
        try:
            wait = await fire_due(resources, kinds)
        except (DependencyUnavailable, asyncpg.PostgresError, *CONNECTION_ERRORS) as exc:
            log.warning("schedules cannot fire now", error=type(exc).__name__)
            wait = LONGEST_SLEEP
        await asyncio.sleep(wait)


async def fire_due(resources: Resources, kinds: jobs.Kinds) -> float:
    """Fire every tick of `kinds` due now; the seconds to sleep before looking again."""
    names = sorted(kinds)
    now = datetime.now(UTC)
    async with resources.db.write() as conn:
        due = await schedules.due(conn, names, now, BATCH)
    created = []
    for schedule in due:
        following = schedule_times.following(schedules.cadence(schedule), schedule["next_run_at"], now)
        async with resources.db.transaction() as conn:
            job = await schedules.fire(conn, schedule, following, kinds)
        if job is not None:
            created.append(job)
    if created and not await jobs.enqueue_many(resources.redis, created):
        log.warning("scheduled jobs left to the reconciler: redis unavailable", jobs=len(created))
    if len(due) == BATCH:
        return 0.0
    async with resources.db.write() as conn:
        earliest = await schedules.earliest(conn, names)
    if earliest is None:
        return LONGEST_SLEEP
    return min(max((earliest - datetime.now(UTC)).total_seconds(), 0.0), LONGEST_SLEEP)
