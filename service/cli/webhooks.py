"""`conveyor webhooks …`: what a tenant needs to verify Conveyor's signed deliveries."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli import targets
from service.cli.options import CommandGroup, data_dir_option, database_url_option, tenant_option
from service.cli.output import guarded

app = CommandGroup(
    name="webhooks",
    help="Webhook signing secrets.",
    epilog="Example:\n\n  conveyor webhooks secret --tenant acme",
)


@app.command()
@tenant_option
@database_url_option
@data_dir_option
@guarded
def secret(tenant: str, database_url: str | None, data_dir: Path) -> None:
    """Print TENANT's webhook signing secret (whsec_…), creating it (and the tenant) if none.

    Verify deliveries with it per Standard Webhooks (webhook-id, webhook-timestamp,
    webhook-signature headers).
    """

    import asyncio

    async def run(url: str) -> str:
        from service.ledger import tenants

        async with targets.transaction(url) as conn:
            found = await tenants.ensure_tenant(conn, tenant)
            return (await tenants.webhook_secrets(conn, found.id))[0]

    with targets.database_url(database_url, data_dir) as url:
        click.echo(asyncio.run(run(url)))
