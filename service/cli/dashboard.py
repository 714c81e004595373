"""`conveyor dashboard …`: the dashboard's sessions."""

from __future__ import annotations

import asyncio

import typer

from service import admin_sessions
from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DatabaseUrl, DataDir
from service.cli.output import guarded

app = typer.Typer(
    help="Dashboard sessions.",
    epilog="Example:\n\n  conveyor dashboard logout-everywhere",
    no_args_is_help=True,
)


@app.command("logout-everywhere")
@guarded
def logout_everywhere(database_url: DatabaseUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """End every dashboard session: each browser must log in again with the admin key."""

    async def run(url: str) -> int:
        async with targets.transaction(url) as conn:
            return await admin_sessions.end_all(conn)

    with targets.database_url(database_url, data_dir) as url:
        ended = asyncio.run(run(url))
    typer.echo(f"{ended} dashboard session(s) ended")
