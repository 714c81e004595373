"""Everything a worker does on a clock, in one place.

| cron job           | default (UTC)  | setting                      | what it does                                   |
|--------------------|----------------|------------------------------|------------------------------------------------|
| reminders          | every 5 min    | SCHEDULE_REMINDERS           | due reminders → notification jobs              |
| memberships        | daily 08:00    | SCHEDULE_MEMBERSHIPS         | membership_expiry emails, MEMBERSHIP_NOTICE_DAYS ahead |
| aggregate_hourly   | hourly at :05  | SCHEDULE_AGGREGATE_HOURLY    | event counts of today and yesterday            |
| aggregate_daily    | daily 00:20    | SCHEDULE_AGGREGATE_DAILY     | event counts of the last AGGREGATE_RECENT_DAYS |
| cleanup            | daily 03:30    | SCHEDULE_CLEANUP             | jobs past JOB_RETENTION_DAYS with their files, events past EVENT_RETENTION_DAYS, idempotency keys past IDEMPOTENCY_KEY_TTL_HOURS |
| prune_workers      | hourly at :00  | SCHEDULE_PRUNE_WORKERS       | forget workers unseen for a day (killed ones never say goodbye) |

A cadence is `every Ns`, `every Nm`, `hourly :MM`, `daily HH:MM` or `off`
(service.config.cron_fields). Every worker carries the whole schedule, yet each tick runs
once across all of them: arq gives a cron run the id `<name>:<tick in ms>`, only one
worker's enqueue of that id succeeds, and the result is kept `KEEP_RESULT` seconds so a
worker whose clock lags cannot enqueue the same tick again after it finished. Workers
evaluate the schedule in UTC (worker.py), so hosts in different time zones agree on
the ticks. Each job is also safe if two runs overlap (SKIP LOCKED, idempotent upserts).

Not cron jobs: the worker heartbeat and the reconciler. Each worker refreshes its own
liveness key every WORKER_HEARTBEAT_SECONDS in a background task
(pipelines/maintenance/liveness.py), because it must happen in every worker. The
reconciler (pipelines/maintenance/reconciler.py) runs every 2 s beside the jobs, one
worker per tick under a Redis lock: as a cron job it would wait in the queue behind the
very jobs (a backlog, or jobs held by dead workers) it must free.

The users' own schedules (`/v1/schedules`) are rows of the ledger's `schedules` table,
fired by another background task (pipelines/maintenance/schedules.py); the six above are
not among them yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from arq import cron
from arq.cron import CronJob

from pipelines.analytics.aggregate import aggregate_recent
from pipelines.maintenance.cleanup import cleanup
from pipelines.maintenance.liveness import prune_workers
from pipelines.resources import Resources
from pipelines.scheduled.memberships import notify_expiring_memberships
from pipelines.scheduled.reminders import send_due_reminders
from service.config import Settings, cron_fields

KEEP_RESULT = 60  # seconds; longer than any two workers' clocks disagree
HOURLY_DAYS = 2  # the hourly aggregation: today and yesterday

Task = Callable[[Resources], Awaitable[object]]


def tasks(settings: Settings) -> list[tuple[str, str, Task, timedelta]]:
    """(name, cadence, what to run, timeout) of every scheduled job."""

    async def aggregate_hourly(resources: Resources) -> dict[str, int]:
        return await aggregate_recent(resources.db, HOURLY_DAYS)

    async def aggregate_daily(resources: Resources) -> dict[str, int]:
        return await aggregate_recent(resources.db, settings.aggregate_recent_days)

    return [
        ("reminders", settings.schedule_reminders, send_due_reminders, timedelta(minutes=4)),
        ("memberships", settings.schedule_memberships, notify_expiring_memberships, timedelta(minutes=30)),
        ("aggregate_hourly", settings.schedule_aggregate_hourly, aggregate_hourly, timedelta(minutes=30)),
        ("aggregate_daily", settings.schedule_aggregate_daily, aggregate_daily, timedelta(hours=1)),
        ("cleanup", settings.schedule_cleanup, cleanup, timedelta(hours=2)),
        ("prune_workers", settings.schedule_prune_workers, prune_workers, timedelta(seconds=30)),
    ]


def _cron_job(name: str, fields: dict, run: Task, timeout: timedelta) -> CronJob:
    async def scheduled(ctx: dict) -> object:
        return await run(ctx["resources"])

    scheduled.__qualname__ = f"scheduled_{name}"
    return cron(scheduled, name=name, **fields, keep_result=KEEP_RESULT, timeout=timeout, max_tries=1)


def cron_jobs(settings: Settings) -> list[CronJob]:
    """arq cron jobs for the schedule; those set to `off` are left out."""
    jobs = []
    for name, cadence, run, timeout in tasks(settings):
        fields = cron_fields(cadence)
        if fields is not None:
            jobs.append(_cron_job(name, fields, run, timeout))
    return jobs
