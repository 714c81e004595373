"""`conveyor webhooks …`: what a tenant needs to verify Conveyor's signed deliveries."""

from __future__ import annotations

import asyncio

import typer

from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, Tenant, command_group
from service.cli.output import guarded

app = command_group(
    help="Webhook signing secrets.",
    epilog="Example:\n\n  conveyor webhooks secret --tenant acme",
)


@app.command()
@guarded
def secret(tenant: Tenant, database_url: DatabaseUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print TENANT's webhook signing secret (whsec_…), creating it (and the tenant) if none.

    Verify deliveries with it per Standard Webhooks (webhook-id, webhook-timestamp,
    webhook-signature headers).
    """

    async def run(url: str) -> str:
        from service import tenants

        async with targets.transaction(url) as conn:
            found = await tenants.ensure_tenant(conn, tenant)
            return (await tenants.webhook_secrets(conn, found.id))[0]

    with targets.database_url(database_url, data_dir) as url:
        typer.echo(asyncio.run(run(url)))
