"""Which PostgreSQL, Redis and file storage an admin command talks to.

The rule: an explicit URL (`--database-url`/`--redis-url`/`--storage-url`, or `DATABASE_URL`/
`REDIS_URL`/`STORAGE_URL`) wins; otherwise the embedded ones of `--data-dir`, provided
`conveyor up` created them there. Servers are shared with a running `conveyor up`, or
started for the command alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.output import CliError

if TYPE_CHECKING:
    import asyncpg

    from service.cli.embedded import EmbeddedServers

CONNECT_TIMEOUT = 10.0


@contextlib.contextmanager
def _located(
    url: str | None, data_dir: Path, variable: str, embedded: Callable[[EmbeddedServers], str]
) -> Iterator[str]:
    if url:
        yield url
        return
    from service.cli.embedded import EmbeddedServers, has_database

    if not has_database(data_dir.expanduser()):
        option = "--" + variable.lower().replace("_", "-")
        raise CliError(
            f"{variable} is not set and there is no embedded server in {data_dir}:"
            f" set it (or {option}), pass --data-dir, or run `conveyor up` first"
        )
    with EmbeddedServers(data_dir) as servers:
        yield embedded(servers)


def database_url(url: str | None, data_dir: Path) -> contextlib.AbstractContextManager[str]:
    return _located(url, data_dir, "DATABASE_URL", lambda servers: servers.database_url())


def redis_url(url: str | None, data_dir: Path) -> contextlib.AbstractContextManager[str]:
    return _located(url, data_dir, "REDIS_URL", lambda servers: servers.redis_url())


def storage_url(url: str | None, data_dir: Path) -> contextlib.AbstractContextManager[str]:
    return _located(url, data_dir, "STORAGE_URL", lambda servers: servers.storage_url())


@contextlib.asynccontextmanager
async def transaction(url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection in one transaction: an admin command is one unit of work."""
    import asyncpg

    from service.databases.pools import connect_primary

    try:
        conn = await connect_primary(url, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InternalClientError) as exc:
        raise CliError(f"cannot connect to the database: {exc}") from exc
    try:
        async with conn.transaction():
            yield conn
    finally:
        await conn.close()
