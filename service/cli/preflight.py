"""Before `conveyor up` says it is up: PostgreSQL, Redis and storage answer, or it stops
within seconds naming the one that does not (by its variable when the environment set it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service import queue
from service.cli.output import CliError
from service.config import Settings, mask
from service.databases.pools import connect_primary
from service.storage import open_storage

CHECK_TIMEOUT = 5.0


async def _database(settings: Settings) -> None:
    conn = await connect_primary(settings.database_url, timeout=CHECK_TIMEOUT)
    await conn.close()


async def _redis(settings: Settings) -> None:
    client = queue.connect(settings.redis_url)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _storage(settings: Settings) -> None:
    storage = open_storage(settings.storage_url, settings.s3_endpoint_url)
    await storage.open()
    try:
        await storage.check()
    finally:
        await storage.close()


CHECKS: dict[str, tuple[str, str, Callable[[Settings], Awaitable[None]]]] = {
    # setting: (variable, what it is when embedded, check)
    "database_url": ("DATABASE_URL", "the embedded PostgreSQL", _database),
    "redis_url": ("REDIS_URL", "the embedded Redis", _redis),
    "storage_url": ("STORAGE_URL", "the embedded storage", _storage),
}


async def _answer(check: Callable[[Settings], Awaitable[None]], settings: Settings) -> BaseException | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check(settings)
    except TimeoutError:
        return TimeoutError(f"no answer within {CHECK_TIMEOUT:g}s")
    except Exception as exc:  # whatever it is, the message says it
        return exc
    return None


async def check_dependencies(settings: Settings, given: set[str]) -> None:
    """Raise CliError naming every dependency that does not answer; `given` are the
    settings the environment named (the others are embedded)."""
    failures = await asyncio.gather(*(_answer(check, settings) for _, _, check in CHECKS.values()))
    problems = []
    for (name, (variable, embedded, _)), failure in zip(CHECKS.items(), failures, strict=True):
        if failure is not None:
            what = f"{variable} ({mask(getattr(settings, name))})" if name in given else embedded
            problems.append(f"{what} cannot be reached: {failure or type(failure).__name__}")
    if problems:
        raise CliError("; ".join(problems))
