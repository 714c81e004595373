"""`conveyor jobs purge`: delete old finished jobs and their files now, rather than at
the nightly retention sweep (an operator command: straight to the database and storage)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli import targets
from service.cli.options import data_dir_option, database_url_option, json_option, storage_url_option
from service.cli.output import CliError, emit_json, guarded

if TYPE_CHECKING:
    from service.config import Settings
    from service.databases.database import Database
    from service.storage import Storage

EXAMPLES = """Examples:

  conveyor jobs purge --dry-run

  conveyor jobs purge --older-than 7 --tenant acme

  conveyor jobs purge --older-than 90 --yes --json

Finished jobs go (succeeded, failed, cancelled) with their stages and files;
queued and running jobs are never touched."""


@contextlib.asynccontextmanager
async def _ledger_and_files(settings: Settings) -> AsyncIterator[tuple[Database, Storage]]:
    from service.databases.database import Database
    from service.storage import open_storage

    db = Database(settings)
    storage = open_storage(settings.storage_url, settings.s3_endpoint_url)
    await db.open()
    try:
        await storage.open()
        try:
            yield db, storage
        finally:
            await storage.close()
    finally:
        await db.close()


async def _tenant_id(db: Database, name: str | None) -> uuid.UUID | None:
    from service.ledger import tenants

    if name is None:
        return None
    async with db.read() as conn:
        tenant = await tenants.find_tenant(conn, name)
    if tenant is None:
        raise CliError(f"no tenant named {name!r}")
    return tenant.id


async def _count(settings: Settings, tenant: str | None, days: int) -> dict[str, int]:
    from pipelines.maintenance.cleanup import count_old_jobs

    async with _ledger_and_files(settings) as (db, _):
        return await count_old_jobs(db, days, await _tenant_id(db, tenant))


async def _delete(settings: Settings, tenant: str | None, days: int) -> int:
    from pipelines.maintenance.cleanup import delete_finished_jobs

    async with _ledger_and_files(settings) as (db, storage):
        return await delete_finished_jobs(
            db,
            storage,
            older_than_days=days,
            tenant_id=await _tenant_id(db, tenant),
            batch_size=settings.cleanup_batch_size,
        )


def _jobs(count: int) -> str:
    return f"{count} job{'s' if count != 1 else ''}"


def _describe(counts: dict[str, int]) -> str:
    """ "3 jobs (2 failed, 1 succeeded)"."""
    by_status = ", ".join(f"{count} {status}" for status, count in counts.items())
    return _jobs(sum(counts.values())) + (f" ({by_status})" if by_status else "")


@click.command("purge", epilog=EXAMPLES)
@click.option(
    "--older-than",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Jobs finished more than DAYS days ago (default: JOB_RETENTION_DAYS).",
)
@click.option("--tenant", "-t", help="Only this tenant's jobs (default: every tenant's).")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@database_url_option
@storage_url_option
@data_dir_option
@json_option
@guarded
def purge(
    older_than: int | None,
    tenant: str | None,
    dry_run: bool,
    yes: bool,
    database_url: str | None,
    storage_url: str | None,
    data_dir: Path,
    json_output: bool,
) -> None:
    """Delete finished jobs older than --older-than days, with their files."""
    import asyncio

    from service.config import load_settings

    with targets.database_url(database_url, data_dir) as db_url, targets.storage_url(storage_url, data_dir) as files:
        settings = load_settings(database_url=db_url, storage_url=files)
        days = older_than or settings.job_retention_days
        scope = f"of tenant {tenant!r}" if tenant else "of every tenant"
        counts = asyncio.run(_count(settings, tenant, days))
        deleted = 0
        report = {"older_than_days": days, "tenant": tenant, "dry_run": dry_run, "matched": counts, "deleted": deleted}
        which = f"{scope} finished more than {days} days ago"
        if counts and not dry_run:
            if not yes:
                click.confirm(f"Delete {_describe(counts)} {which}, with their files?", abort=True, err=True)
            deleted = report["deleted"] = asyncio.run(_delete(settings, tenant, days))
    if json_output:
        emit_json(report)
    elif dry_run:
        click.echo(f"would delete {_describe(counts)} {which}")
    else:
        click.echo(f"deleted {_jobs(deleted)} {which}")
