"""`conveyor watch`: queues, workers and recent jobs across tenants, live in the terminal.

It reads what the dashboard reads (service.api.dashboard.data.overview, over Redis and the
ledger), and draws it with `render`, a pure function of that data, so one frame can be
printed (`--once`) or tested as text.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli import targets
from service.cli.jobs import jobs_table, short_id
from service.cli.ops import queues_table
from service.cli.options import data_dir_option, database_url_option, redis_url_option
from service.cli.output import ago, emit_json, guarded, new_table, stdout

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from service.config import Settings
    from service.databases.database import Database

RECENT_SHOWN = 15

EXAMPLES = """Examples:

  conveyor watch

  conveyor watch --interval 5 --tenant acme

  conveyor watch --once

  conveyor watch --json | jq '.queues'

Queues are QUEUE_NAME, the KIND_QUEUES targets and the queues live workers use.
Ctrl-C stops it."""


@dataclass
class Sources:
    """What `overview` reads, shaped as the API's app state."""

    settings: Settings
    redis: Redis
    db: Database


@contextlib.asynccontextmanager
async def open_sources(settings: Settings) -> AsyncIterator[Sources]:
    from service import queue
    from service.databases.database import Database

    redis = queue.connect(settings.redis_url)
    db = Database(settings)
    try:
        await db.open()
        yield Sources(settings, redis, db)
    finally:
        await db.close()
        await redis.aclose()


async def snapshot(sources: Sources, tenant: str | None) -> dict:
    from service.api.dashboard.data import overview

    return await overview(sources, status=None, kind=None, tenant=tenant)


def _workers(workers: list[dict]) -> Table:
    table = new_table(
        "worker",
        "queue",
        "running",
        "up for",
        "last beat",
        title=f"Workers: {len(workers)} alive",
        title_justify="left",
    )
    for worker in workers:
        jobs = worker["jobs"]
        table.add_row(
            worker["id"],
            worker["queue"] or "-",
            ", ".join(short_id(job) for job in jobs) if jobs else "idle",
            ago(worker["up_seconds"]),
            ago(worker["heartbeat_age"]) + " ago",
        )
    return table


def _hour(hour: dict) -> Text:
    from rich.text import Text

    return Text(
        f"Last hour: {hour['finished']} finished, {hour['failed']} failed ({hour['failure_rate']:.0%}),"
        f" {hour['cancelled']} cancelled, {hour['per_minute']}/min"
    )


def render(view: dict, *, recent: int = RECENT_SHOWN) -> RenderableType:
    """One frame of the view, from `overview`'s data."""
    from rich.console import Group

    tenant = view["filters"].get("tenant")
    title = f"Recent jobs of {tenant}" if tenant else "Recent jobs, all tenants"
    return Group(
        queues_table(view["queues"], title="Queues"),
        _workers(view["workers"]),
        _hour(view["hour"]),
        jobs_table(view["recent"][:recent], tenants=True, title=title),
    )


async def _once(settings: Settings, tenant: str | None) -> dict:
    async with open_sources(settings) as sources:
        return await snapshot(sources, tenant)


async def _live(settings: Settings, tenant: str | None, interval: float) -> None:
    import asyncio

    from rich.live import Live

    async with open_sources(settings) as sources:
        with Live(render(await snapshot(sources, tenant)), console=stdout(), auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval)
                live.update(render(await snapshot(sources, tenant)), refresh=True)


@click.command(epilog=EXAMPLES)
@click.option("--interval", type=click.FloatRange(min=0.5), default=2.0, help="Seconds between refreshes.")
@click.option("--tenant", "-t", help="Only this tenant's recent jobs (default: every tenant's).")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@database_url_option
@redis_url_option
@data_dir_option
@click.option("--json", "json_output", is_flag=True, help="Print one snapshot as JSON and exit.")
@guarded
def watch(
    interval: float,
    tenant: str | None,
    once: bool,
    database_url: str | None,
    redis_url: str | None,
    data_dir: Path,
    json_output: bool,
) -> None:
    """Watch queues, live workers and recent jobs, refreshing until Ctrl-C.

    Queues in the words of `conveyor queues` and the dashboard (queued, running,
    scheduled, oldest queued), workers with the jobs they run, jobs by their short ids.
    """
    import asyncio

    from service.config import load_settings

    with targets.database_url(database_url, data_dir) as db_url, targets.redis_url(redis_url, data_dir) as r_url:
        settings = load_settings(database_url=db_url, redis_url=r_url)
        if once or json_output:
            view = asyncio.run(_once(settings, tenant))
            emit_json(view) if json_output else stdout().print(render(view))
            return
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_live(settings, tenant, interval))
