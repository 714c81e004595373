"""`conveyor dashboard …`: the dashboard's sessions."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli import targets
from service.cli.options import CommandGroup, data_dir_option, database_url_option
from service.cli.output import guarded

app = CommandGroup(
    name="dashboard",
    help="Dashboard sessions.",
    epilog="Example:\n\n  conveyor dashboard logout-everywhere",
)


@app.command("logout-everywhere")
@database_url_option
@data_dir_option
@guarded
def logout_everywhere(database_url: str | None, data_dir: Path) -> None:
    """End every dashboard session: each browser must log in again with the admin key."""

    import asyncio

    async def run(url: str) -> int:
        from service.ledger import admin_sessions

        async with targets.transaction(url) as conn:
            return await admin_sessions.end_all(conn)

    with targets.database_url(database_url, data_dir) as url:
        ended = asyncio.run(run(url))
    click.echo(f"{ended} dashboard session(s) ended")
