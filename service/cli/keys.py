"""`conveyor keys …`: a tenant's API keys, straight in the database (keys are stored hashed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli import targets
from service.cli.options import CommandGroup, data_dir_option, database_url_option, json_option, tenant_option
from service.cli.output import CliError, emit_json, guarded, new_table, stdout

if TYPE_CHECKING:
    import asyncpg

    from service.ledger.tenants import Tenant as TenantRow

app = CommandGroup(
    name="keys",
    help="Create, list and revoke API keys.",
    epilog="Examples:\n\n  conveyor keys create --tenant acme\n\n  conveyor keys list --tenant acme --json\n\n"
    "  conveyor keys revoke --tenant acme cvk_AbCdEfGh",
)


async def create_key(conn: asyncpg.Connection, tenant_name: str) -> str:
    """A fresh key for the tenant, created if new."""
    from service.ledger import tenants

    return await tenants.create_api_key(conn, await tenants.ensure_tenant(conn, tenant_name))


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, to the second: 2026-05-04T12:34:56Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _existing_tenant(conn: asyncpg.Connection, name: str) -> TenantRow:
    from service.ledger import tenants

    tenant = await tenants.find_tenant(conn, name)
    if tenant is None:
        raise CliError(f"no tenant named {name!r}")
    return tenant


@app.command()
@tenant_option
@database_url_option
@data_dir_option
@guarded
def create(tenant: str, database_url: str | None, data_dir: Path) -> None:
    """Create a new API key for TENANT (creating the tenant if new).

    The key is shown once, alone on the last line of stdout: only its hash is stored.
    """

    import asyncio

    async def run(url: str) -> str:
        async with targets.transaction(url) as conn:
            return await create_key(conn, tenant)

    with targets.database_url(database_url, data_dir) as url:
        key = asyncio.run(run(url))
    click.echo(key)


@app.command("list")
@tenant_option
@database_url_option
@data_dir_option
@json_option
@guarded
def list_keys(tenant: str, database_url: str | None, data_dir: Path, json_output: bool) -> None:
    """List TENANT's keys by prefix (the keys themselves are never stored)."""

    import asyncio

    async def run(url: str) -> list[dict]:
        from service.ledger import tenants

        async with targets.transaction(url) as conn:
            rows = await tenants.list_api_keys(conn, await _existing_tenant(conn, tenant))
        return [
            {name: _iso(value) if isinstance(value, datetime) else value for name, value in row.items()} for row in rows
        ]

    with targets.database_url(database_url, data_dir) as url:
        keys = asyncio.run(run(url))
    if json_output:
        emit_json(keys)
        return
    table = new_table("prefix", "created_at", "last_used_at", "revoked_at", box=None)
    for key in keys:
        table.add_row(key["prefix"], *(key[name] or "-" for name in ("created_at", "last_used_at", "revoked_at")))
    stdout().print(table)


@app.command()
@tenant_option
@click.argument("prefix", help="The key's prefix as `keys list` shows it.")
@database_url_option
@data_dir_option
@guarded
def revoke(tenant: str, prefix: str, database_url: str | None, data_dir: Path) -> None:
    """Revoke TENANT's key with PREFIX: requests with it get 401 from now on."""

    import asyncio

    async def run(url: str) -> int:
        from service.ledger import tenants

        async with targets.transaction(url) as conn:
            return await tenants.revoke_api_key(conn, await _existing_tenant(conn, tenant), prefix)

    with targets.database_url(database_url, data_dir) as url:
        revoked = asyncio.run(run(url))
    if not revoked:
        raise CliError(f"tenant {tenant!r} has no active key with prefix {prefix[:12]!r}")
    click.echo(f"revoked {prefix[:12]}")
