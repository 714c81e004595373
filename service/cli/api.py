"""How the commands that go through the HTTP API reach it: with `conveyor.client`, the
same client apps use (one client, not two), plus what only a person at a terminal needs:
naming a job by the start of its id.

The client is imported when a command connects, never when the CLI loads (it starts fast).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from service.cli.output import CliError

if TYPE_CHECKING:
    from conveyor.client import Client

CANDIDATES_SHOWN = 10  # jobs listed when an id prefix names several


def connect(url: str, key: str | None) -> Client:
    """A client of the API at `url`; its error answers reach the user as one line
    (output.EXPECTED knows ApiError)."""
    if not key:
        raise CliError("no API key: pass --key or set CONVEYOR_API_KEY (`conveyor up` prints one)")
    from conveyor.client import Client

    return Client(url, key)


def job_id_of(api: Client, given: str) -> str:
    """The id of the job `given` names: a whole id, or the start of one (as tables show
    it) that exactly one of the tenant's jobs has, found by the API (`id_prefix`)."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        pass
    page = api.jobs(id_prefix=given, limit=CANDIDATES_SHOWN)
    found = page.items
    if not found:
        raise CliError(f"no job found whose id starts with {given!r}")
    if len(found) > 1:
        count = f"{len(found)}{' or more' if page.next_cursor else ''}"
        rows = (job.to_dict() for job in found)
        listed = "".join(f"\n  {row['id']}  {row['kind']}  {row['status']}  {row['created_at']}" for row in rows)
        raise CliError(f"{count} jobs have ids starting with {given!r}; give more of the id:{listed}")
    return found[0].id
