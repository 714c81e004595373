"""`conveyor dashboard …`: the dashboard's sessions."""

from __future__ import annotations

import asyncio

import typer

from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, command_group
from service.cli.output import guarded

app = command_group(
    help="Dashboard sessions.",
    epilog="Example:\n\n  conveyor dashboard logout-everywhere",
)


@app.command("logout-everywhere")
@guarded
def logout_everywhere(database_url: DatabaseUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """End every dashboard session: each browser must log in again with the admin key."""

    async def run(url: str) -> int:
        from service import admin_sessions

        async with targets.transaction(url) as conn:
            return await admin_sessions.end_all(conn)

    with targets.database_url(database_url, data_dir) as url:
        ended = asyncio.run(run(url))
    typer.echo(f"{ended} dashboard session(s) ended")
