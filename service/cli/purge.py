"""`conveyor jobs purge`: delete old finished jobs and their files now, rather than at
the nightly retention sweep (an operator command: straight to the database and storage)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, Json, StorageUrl
from service.cli.output import CliError, emit_json, guarded

if TYPE_CHECKING:
    from service.config import Settings
    from service.database import Database
    from service.storage import Storage

EXAMPLES = """Examples:

  conveyor jobs purge --dry-run

  conveyor jobs purge --older-than 7 --tenant acme

  conveyor jobs purge --older-than 90 --yes --json

Finished jobs go (succeeded, failed, cancelled) with their stages and files;
queued and running jobs are never touched."""


@contextlib.asynccontextmanager
async def _ledger_and_files(settings: Settings) -> AsyncIterator[tuple[Database, Storage]]:
    from service.database import Database
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
    from service import tenants

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


def purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            min=1,
            metavar="DAYS",
            show_default=False,
            help="Jobs finished more than DAYS days ago (default: JOB_RETENTION_DAYS).",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            show_default=False,
            help="Only this tenant's jobs (default: every tenant's).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    database_url: DatabaseUrl = None,
    storage_url: StorageUrl = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    json_output: Json = False,
) -> None:
    """Delete finished jobs older than --older-than days, with their files."""
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
                typer.confirm(f"Delete {_describe(counts)} {which}, with their files?", abort=True, err=True)
            deleted = report["deleted"] = asyncio.run(_delete(settings, tenant, days))
    if json_output:
        emit_json(report)
    elif dry_run:
        typer.echo(f"would delete {_describe(counts)} {which}")
    else:
        typer.echo(f"deleted {_jobs(deleted)} {which}")


command = guarded(purge)
