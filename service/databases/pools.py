"""asyncpg pools and read-only sessions on them, the same for the primary and every replica."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from service.config import PoolSettings
from service.databases import pgurl

CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection's protocol state broken by the server going away
)
# A server that answers but refuses us (bad password, missing database, starting up)
# cannot serve a unit of work either.
UNUSABLE = (*CONNECTION_ERRORS, asyncpg.PostgresError)
WARM_CONNECTIONS = 2  # opened at start; the rest on demand, so a process starts fast
# A host that cannot serve now: the next one in the URL is tried.
NEXT_HOST = (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TargetServerAttributeNotMatched)


async def connect_primary(dsn: str | None = None, *, timeout: float = 60.0, **options: Any) -> asyncpg.Connection:
    """A connection to the host of `dsn` that takes writes now (`pgurl.primary_session`).

    With several hosts each is tried in turn with its share of `timeout`: asyncpg's own
    timeout spans them all, so a host that accepts and never answers (a primary frozen or
    cut off) would use it up, and the promoted standby after it would never be tried.
    """
    assert dsn is not None, "the primary is named by its URL"  # optional only as asyncpg's pools call it
    options["target_session_attrs"] = pgurl.primary_session(dsn)
    addresses = pgurl.addresses(dsn)
    if len(addresses) == 1:  # one host, or a socket directory in the query: asyncpg reads it
        return await asyncpg.connect(dsn, timeout=timeout, **options)
    failure: BaseException | None = None
    for host, port in addresses:
        try:
            return await asyncpg.connect(dsn, host=host, port=port, timeout=timeout / len(addresses), **options)
        except NEXT_HOST as exc:
            failure = exc
    assert failure is not None
    raise failure


def _encode_jsonb(value: object) -> bytes:
    return b"\x01" + json.dumps(value).encode()  # jsonb's binary format: version 1, then the text


def _decode_jsonb(data: bytes) -> object:
    return json.loads(data[1:])


def as_connection(proxy: PoolConnectionProxy) -> asyncpg.Connection:
    """A pooled connection as the Connection it stands for: the proxy forwards every method
    to it, and asyncpg's own isinstance checks take it for one."""
    return cast(asyncpg.Connection, proxy)


async def _init_connection(conn: asyncpg.Connection) -> None:
    """JSON in and out as Python values; jsonb in binary format so COPY can write it too."""
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo on release: Conveyor keeps no session state (no LISTEN, no session
    advisory locks or settings; `SET LOCAL` ends with its transaction), so asyncpg's default
    reset (four statements, one more round trip per unit of work) is skipped. asyncpg still
    rolls back a transaction left open."""


async def create_pool(url: str, settings: PoolSettings, *, primary: bool = False) -> asyncpg.Pool:
    """A pool growing to `size + overflow` connections, recycled when idle; on the primary
    (`primary`) each new connection goes to the host that takes writes then.

    Every query is bounded twice: by the server (`statement_timeout`) and by the client
    (`command_timeout`), which still fires when the server is frozen and cannot answer.
    """
    return await asyncpg.create_pool(
        url,
        min_size=min(settings.size, WARM_CONNECTIONS),
        max_size=settings.size + settings.overflow,
        max_inactive_connection_lifetime=settings.recycle,
        timeout=settings.connect_timeout,
        command_timeout=settings.statement_timeout,
        init=_init_connection,
        reset=_keep_session,
        connect=connect_primary if primary else None,
        server_settings={
            "application_name": "conveyor",
            "statement_timeout": str(int(settings.statement_timeout * 1000)),
        },
    )


async def close_pool(pool: asyncpg.Pool, timeout: float) -> None:
    """Close gracefully, or cut the connections if the server does not answer in time."""
    try:
        async with asyncio.timeout(timeout):
            await pool.close()
    except (TimeoutError, *CONNECTION_ERRORS):
        pool.terminate()


class SessionUnavailable(Exception):
    """The pool gave no usable connection (refused, timed out, or it broke at BEGIN)."""


@asynccontextmanager
async def read_only_session(pool: asyncpg.Pool, acquire_timeout: float) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a READ ONLY, REPEATABLE READ transaction (one snapshot for the unit).

    Raises `SessionUnavailable` before yielding if no connection could start one, so the
    caller can go elsewhere; a connection that breaks is terminated, never pooled again.
    Read-only makes PostgreSQL refuse writes and `SELECT … FOR UPDATE` here, on the
    primary too, so a unit of work that mislabels itself fails loudly in every test.

    BEGIN and ROLLBACK are shielded from cancellation (each is one bounded round trip):
    Starlette's task groups cancel again at every await, so a unit cancelled half-way (a
    client hanging up on an event stream) would cut them short, leaving the transaction
    to asyncpg's release, which logs "Resetting connection with an active transaction".
    """
    try:
        conn = await pool.acquire(timeout=acquire_timeout)
    except UNUSABLE as exc:
        raise SessionUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        try:
            with anyio.CancelScope(shield=True):
                await transaction.start()
        except UNUSABLE as exc:
            conn.terminate()
            raise SessionUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            yield as_connection(conn)
        except CONNECTION_ERRORS:
            conn.terminate()
            raise
        finally:
            if not conn.is_closed():
                with anyio.CancelScope(shield=True):
                    try:
                        await transaction.rollback()  # nothing to keep: it was read-only
                    except CONNECTION_ERRORS:
                        conn.terminate()
    finally:
        await pool.release(conn)
