"""Everything a worker does on a clock, in one place: the built-in schedules.

| schedule         | default (UTC)  | setting                      | what its job does                              |
|------------------|----------------|------------------------------|------------------------------------------------|
| reminders        | every 5 min    | SCHEDULE_REMINDERS           | due reminders → notification jobs              |
| memberships      | daily 08:00    | SCHEDULE_MEMBERSHIPS         | membership_expiry emails, MEMBERSHIP_NOTICE_DAYS ahead |
| aggregate_hourly | hourly at :05  | SCHEDULE_AGGREGATE_HOURLY    | event counts of today and yesterday            |
| aggregate_daily  | daily 00:20    | SCHEDULE_AGGREGATE_DAILY     | event counts of the last AGGREGATE_RECENT_DAYS |
| cleanup          | daily 03:30    | SCHEDULE_CLEANUP             | jobs past JOB_RETENTION_DAYS with their files, events past EVENT_RETENTION_DAYS, idempotency keys past IDEMPOTENCY_KEY_TTL_HOURS |
| prune_workers    | hourly at :00  | SCHEDULE_PRUNE_WORKERS       | forget workers unseen for a day (killed ones never say goodbye) |

Each is a row of the ledger's `schedules` table like the users' own (`builtin: true`,
owned by the system tenant), fired by the same clock (pipelines/maintenance/schedules.py):
each tick makes one job of the schedule's kind (`conveyor.<schedule>`, declared here and
registered with the other built-in kinds) once across all workers, decided in the ledger.
The job is an ordinary one, with `metadata.schedule_id`; the admin key reads it
(`GET /v1/jobs`) and sees and adjusts the schedules (`/v1/schedules`, `conveyor
schedules`). These kinds are not published, so no tenant creates their jobs.

Every worker that runs these kinds records the schedules at start from their settings
(service/ledger/schedules.py `seed`): a setting gives the first cadence, a changed setting is
applied at the next start, and otherwise the admin's changes stand. A cadence is `every
Ns`, `every Nm`, `hourly :MM`, `daily HH:MM` or `off` (service/config.py
`cadence_fields`); `off` pauses the schedule, or never makes it. Each job is also safe if
two runs overlap (SKIP LOCKED, idempotent upserts).

Not schedules: the worker heartbeat and the reconciler. Each worker refreshes its own
liveness key every WORKER_HEARTBEAT_SECONDS in a background task
(pipelines/maintenance/liveness.py), because it must happen in every worker. The
reconciler (pipelines/maintenance/reconciler.py) runs every 2 s beside the jobs, one
worker per tick under a Redis lock: as a job it would wait in the queue behind the very
jobs (a backlog, or jobs held by dead workers) it must free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from conveyor.kinds import Pipeline, job
from pipelines.analytics.aggregate import aggregate_recent
from pipelines.maintenance.cleanup import cleanup
from pipelines.maintenance.liveness import prune_workers
from pipelines.resources import Resources
from pipelines.scheduled.memberships import notify_expiring_memberships
from pipelines.scheduled.reminders import send_due_reminders
from service.ledger import schedules

if TYPE_CHECKING:
    from pipelines.job_run import JobRun

KIND_PREFIX = "conveyor."  # apart from the apps' own kinds
HOURLY_DAYS = 2  # the hourly aggregation: today and yesterday

Work = Callable[[Resources], Awaitable[object]]


@dataclass(frozen=True)
class BuiltIn:
    """A built-in schedule: its name, the setting of its cadence, and the kind of its jobs."""

    name: str
    setting: str
    kind: Pipeline


def _kind(name: str, work: Work, timeout: timedelta, description: str) -> Pipeline:
    """A one-stage kind doing `work` once a tick (no retry: the next tick is the retry)."""

    async def run(ctx: JobRun, _input: dict) -> object:
        return await work(ctx.resources)

    run.__name__ = run.__qualname__ = name
    return job(f"{KIND_PREFIX}{name}", tries=1, timeout=timeout.total_seconds(), description=description)(run)


async def aggregate_hourly(resources: Resources) -> dict[str, int]:
    return await aggregate_recent(resources.db, HOURLY_DAYS)


async def aggregate_daily(resources: Resources) -> dict[str, int]:
    return await aggregate_recent(resources.db, resources.settings.aggregate_recent_days)


BUILT_INS = (
    BuiltIn(
        "reminders",
        "schedule_reminders",
        _kind("reminders", send_due_reminders, timedelta(minutes=4), "Due reminders become notification jobs."),
    ),
    BuiltIn(
        "memberships",
        "schedule_memberships",
        _kind(
            "memberships",
            notify_expiring_memberships,
            timedelta(minutes=30),
            "Memberships about to expire are emailed.",
        ),
    ),
    BuiltIn(
        "aggregate_hourly",
        "schedule_aggregate_hourly",
        _kind("aggregate_hourly", aggregate_hourly, timedelta(minutes=30), "Events of today and yesterday counted."),
    ),
    BuiltIn(
        "aggregate_daily",
        "schedule_aggregate_daily",
        _kind("aggregate_daily", aggregate_daily, timedelta(hours=1), "Events of the recent days counted."),
    ),
    BuiltIn(
        "cleanup",
        "schedule_cleanup",
        _kind("cleanup", cleanup, timedelta(hours=2), "Old jobs, events and idempotency keys deleted."),
    ),
    BuiltIn(
        "prune_workers",
        "schedule_prune_workers",
        _kind("prune_workers", prune_workers, timedelta(seconds=30), "Workers unseen for a day forgotten."),
    ),
)
KINDS = tuple(builtin.kind for builtin in BUILT_INS)
#: The schedules that count events (`GET /v1/stats` says when they next run).
AGGREGATIONS = tuple(builtin for builtin in BUILT_INS if builtin.name.startswith("aggregate_"))
KIND_NAMES = frozenset(kind.name for kind in KINDS)


async def seed(resources: Resources, kinds: Collection[str]) -> None:
    """Record the built-in schedules whose kinds are among `kinds` (those this worker runs)
    as their settings say; every starting worker does, the ledger keeps one row each."""
    run_here = [builtin for builtin in BUILT_INS if builtin.kind.name in kinds]
    if not run_here:
        return
    now = datetime.now(UTC)
    async with resources.db.transaction() as conn:
        tenant = await schedules.system_tenant(conn)
        for builtin in run_here:
            setting = getattr(resources.settings, builtin.setting)
            await schedules.seed(conn, tenant.id, builtin.name, builtin.kind.name, setting, now)
