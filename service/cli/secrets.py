"""`conveyor secrets …`: the service's own signing secret, kept in the ledger."""

from __future__ import annotations

import asyncio

import typer

from service.cli import targets
from service.cli.options import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, command_group
from service.cli.output import guarded

app = command_group(
    help="The secret event-stream tokens are signed with.",
    epilog="Example:\n\n  conveyor secrets rotate",
)


@app.command()
@guarded
def rotate(database_url: DatabaseUrl = None, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Make a new signing secret; the previous one stays valid for tokens already given out.

    Every API process signs with the new secret within seconds. Rotate twice to refuse
    every token signed before (they expire within minutes anyway).
    """

    async def run(url: str) -> None:
        from service import signing

        async with targets.transaction(url) as conn:
            await signing.rotate_secret(conn)

    with targets.database_url(database_url, data_dir) as url:
        asyncio.run(run(url))
    typer.echo("rotated: new tokens are signed with a new secret; the previous one still verifies")
