"""`conveyor secrets …`: the service's own signing secret, kept in the ledger."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli import targets
from service.cli.options import CommandGroup, data_dir_option, database_url_option
from service.cli.output import guarded

app = CommandGroup(
    name="secrets",
    help="The secret event-stream tokens are signed with.",
    epilog="Example:\n\n  conveyor secrets rotate",
)


@app.command()
@database_url_option
@data_dir_option
@guarded
def rotate(database_url: str | None, data_dir: Path) -> None:
    """Make a new signing secret; the previous one stays valid for tokens already given out.

    Every API process signs with the new secret within seconds. Rotate twice to refuse
    every token signed before (they expire within minutes anyway).
    """

    import asyncio

    async def run(url: str) -> None:
        from service.ledger import signing

        async with targets.transaction(url) as conn:
            await signing.rotate_secret(conn)

    with targets.database_url(database_url, data_dir) as url:
        asyncio.run(run(url))
    click.echo("rotated: new tokens are signed with a new secret; the previous one still verifies")
